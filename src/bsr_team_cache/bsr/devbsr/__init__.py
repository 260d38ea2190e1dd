"""A BSR-compatible server (the subset buf and bsr-team-cache call), for tests and demos."""

from bsr_team_cache.bsr.devbsr.repository import ModuleRepository
from bsr_team_cache.bsr.devbsr.server import DevBSR, DevBSRServer, ServerOptions
from bsr_team_cache.bsr.devbsr.tls import ensure_tls_files

__all__ = ["DevBSR", "DevBSRServer", "ModuleRepository", "ServerOptions", "ensure_tls_files"]
