"""Writing buf's own module cache, so that ``buf build`` finds every dep without the network.

Names are loaded on first use: a fetch that finds every entry in place imports only layout.py."""

from __future__ import annotations

from typing import Any

__all__ = ["buf_cache_dir", "module_entry_dir", "write_module"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bsr_team_cache.bufcache import v3

        return getattr(v3, name)
    raise AttributeError(name)
