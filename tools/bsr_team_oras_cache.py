"""The design document's team cache API and CLI:

    from bsr_team_oras_cache import BSRTeamOrasCache
    python3 tools/bsr_team_oras_cache.py --team T [--verbose] {setup,bundle,monitor,recommend,sync}

A thin re-export of ``bsr_team_cache.seed_api``.
"""

import sys

from bsr_team_cache.seed_api import BSRTeamOrasCache, main

__all__ = ["BSRTeamOrasCache", "main"]

if __name__ == "__main__":
    sys.exit(main())
