"""The design document's BSR client: ``from bsr_client import BSRClient, BSRDependency``.

A thin re-export of ``bsr_team_cache.seed_api`` (run with the project's environment active and
``tools/`` on ``sys.path``, e.g. ``PYTHONPATH=tools``, or from this directory).
"""

from bsr_team_cache.seed_api import BSRClient, BSRDependency

__all__ = ["BSRClient", "BSRDependency"]
