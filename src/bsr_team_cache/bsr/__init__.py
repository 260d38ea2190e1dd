"""The Buf Schema Registry adapter: a Connect client and a BSR-compatible server for tests.

Names are loaded when first asked for: the client module (and the HTTP stack behind its
transport) costs a fetch that the local store or the team registry serves a start-up it does
not need."""

from typing import Any

__all__ = ["BSRModuleClient", "CommitInfo", "ConnectTransport", "ModuleContent", "ModuleGraph"]


def __getattr__(name: str) -> Any:
    if name == "ConnectTransport":
        from bsr_team_cache.bsr.connect import ConnectTransport

        return ConnectTransport
    if name in __all__:
        from bsr_team_cache.bsr import client

        return getattr(client, name)
    raise AttributeError(name)
