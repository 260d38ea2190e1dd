"""Writing buf's own module cache, so that ``buf build`` finds every dep without the network."""

from bsr_team_cache.bufcache.v3 import buf_cache_dir, module_entry_dir, write_module

__all__ = ["buf_cache_dir", "module_entry_dir", "write_module"]
