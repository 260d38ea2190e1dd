"""This machine's store of module artifacts (the first tier of every lookup).

Names are loaded on first use: a fetch finding every module in place reads the index alone
(index.py) and never imports the artifact store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The SQLite index (index.py), named here so that a caller can tell there is no store without
# loading sqlite3 (a new machine's fetch sends its first request before it needs it).
INDEX_FILE = "store.db"


def default_store_dir(env: dict[str, str] | None = None) -> Path:
    """``$BSR_TEAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/bsr-team-cache``, else ~/.cache/…"""
    env = dict(os.environ) if env is None else env
    if env.get("BSR_TEAM_CACHE_DIR"):
        return Path(env["BSR_TEAM_CACHE_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bsr-team-cache"


__all__ = [
    "LocalStore",
    "StoreEntry",
    "StoreStats",
    "UsageEvent",
    "default_store_dir",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bsr_team_cache.store import local

        return getattr(local, name)
    raise AttributeError(name)
