"""The Buf Schema Registry adapter: a Connect client and a BSR-compatible server for tests."""

from bsr_team_cache.bsr.client import BSRModuleClient, CommitInfo, ModuleContent, ModuleGraph
from bsr_team_cache.bsr.connect import ConnectTransport

__all__ = ["BSRModuleClient", "CommitInfo", "ConnectTransport", "ModuleContent", "ModuleGraph"]
