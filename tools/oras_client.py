"""The design document's registry client: ``from oras_client import OrasClient``.

A thin re-export of ``bsr_team_cache.seed_api``.
"""

from bsr_team_cache.seed_api import OrasClient

__all__ = ["OrasClient"]
