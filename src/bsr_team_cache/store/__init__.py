"""This machine's store of module artifacts (the first tier of every lookup).

Names are loaded on first use: a fetch finding every module in place reads the index alone
(index.py) and never imports the artifact store."""

from __future__ import annotations

from typing import Any

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
