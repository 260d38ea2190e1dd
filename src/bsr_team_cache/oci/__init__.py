"""OCI registry adapters behind one interface: an on-disk image layout (the embedded default)
and an HTTP client for any distribution-spec registry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bsr_team_cache.oci.url import check_registry_url, redact

if TYPE_CHECKING:
    from bsr_team_cache.oci.base import RegistryBackend
    from bsr_team_cache.oci.layout import OCILayoutRegistry


class _OnFirstUse:
    """Builds the HTTP client when first used: a fetch served entirely from the local store
    never pays for importing and setting up the HTTP stack."""

    def __init__(self, url: str, factory: Callable[[], RegistryBackend]) -> None:
        self._url = redact(url)
        self._factory = factory
        self._backend: RegistryBackend | None = None
        self._lock = threading.Lock()  # fetch threads may all touch it at once

    def describe(self) -> str:
        return self._url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend(), name)

    def backend(self) -> RegistryBackend:
        with self._lock:
            if self._backend is None:
                self._backend = self._factory()
        return self._backend


def built(registry: RegistryBackend) -> RegistryBackend:
    """``registry`` with its HTTP client built now, in this thread (not on first use)."""
    return registry.backend() if isinstance(registry, _OnFirstUse) else registry


def open_registry(url: str, *, insecure: bool = False) -> RegistryBackend:
    """``oci-layout:PATH`` (or a plain path) is on disk; ``https://HOST[:PORT][/NS]``,
    ``oci://HOST/NS`` (https) and ``http://`` (loopback or ``insecure`` only) are HTTP."""
    check_registry_url(url, insecure=insecure)  # bad URLs fail now, not on first use
    if url.startswith(("https://", "http://", "oci://")):

        def connect() -> RegistryBackend:
            from bsr_team_cache._startup import loading

            with loading():  # the HTTP stack: ~100 modules
                from bsr_team_cache.oci.http import HTTPRegistry

            return HTTPRegistry(url, insecure=insecure)

        return _OnFirstUse(url, connect)  # type: ignore[return-value]
    from bsr_team_cache.oci.layout import OCILayoutRegistry

    return OCILayoutRegistry(Path(url.removeprefix("oci-layout:")).expanduser())


def __getattr__(name: str) -> Any:
    # The adapters load when asked for: importing oci.url (as a fetch's start does) loads
    # this package, and not them.
    if name == "HTTPRegistry":
        from bsr_team_cache.oci.http import HTTPRegistry

        return HTTPRegistry
    if name == "OCILayoutRegistry":
        from bsr_team_cache.oci.layout import OCILayoutRegistry

        return OCILayoutRegistry
    if name == "RegistryBackend":
        from bsr_team_cache.oci.base import RegistryBackend

        return RegistryBackend
    raise AttributeError(name)


__all__ = ["HTTPRegistry", "OCILayoutRegistry", "RegistryBackend", "open_registry"]
