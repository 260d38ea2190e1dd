"""The Buf Schema Registry adapter: a Connect client and a BSR-compatible server for tests."""

from typing import Any

from bsr_team_cache.bsr.client import BSRModuleClient, CommitInfo, ModuleContent, ModuleGraph

__all__ = ["BSRModuleClient", "CommitInfo", "ConnectTransport", "ModuleContent", "ModuleGraph"]


def __getattr__(name: str) -> Any:
    # The transport pulls in the HTTP stack; import it only when somebody asks for it.
    if name == "ConnectTransport":
        from bsr_team_cache.bsr.connect import ConnectTransport

        return ConnectTransport
    raise AttributeError(name)
