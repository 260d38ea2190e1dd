"""A BSR client made on first use, for commands that may never reach the BSR."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bsr_team_cache.bsr.client import BSRModuleClient


class OnDemandBSRClient:
    """Stands in for a BSRModuleClient, which it makes (importing the client and, on its first
    call, the HTTP stack) when a method other than those below is first used."""

    def __init__(self) -> None:
        self._client: BSRModuleClient | None = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            from bsr_team_cache._startup import loading

            with loading():  # the BSR client, protobuf and the HTTP stack
                from bsr_team_cache.bsr.client import BSRModuleClient

            self._client = BSRModuleClient()
        return getattr(self._client, name)

    def server_warnings(self) -> list[str]:
        return [] if self._client is None else self._client.server_warnings()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> OnDemandBSRClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
