"""This machine's store of module artifacts (the first tier of every lookup)."""

from bsr_team_cache.store.local import (
    LocalStore,
    StoreEntry,
    StoreStats,
    UsageEvent,
    default_store_dir,
)

__all__ = [
    "LocalStore",
    "StoreEntry",
    "StoreStats",
    "UsageEvent",
    "default_store_dir",
]
