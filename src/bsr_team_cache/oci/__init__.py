"""OCI registry adapters behind one interface: an on-disk image layout (the embedded default)
and an HTTP client for any distribution-spec registry."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bsr_team_cache.errors import UsageError
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.oci.url import parse_http_registry_url, redact


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
    if url.startswith("oci-layout:"):
        return OCILayoutRegistry(Path(url.removeprefix("oci-layout:")).expanduser())
    if url.startswith(("https://", "http://", "oci://")):
        parse_http_registry_url(url, insecure=insecure)  # bad URLs fail now, not on first use

        def connect() -> RegistryBackend:
            from bsr_team_cache._startup import loading

            with loading():  # the HTTP stack: ~100 modules
                from bsr_team_cache.oci.http import HTTPRegistry

            return HTTPRegistry(url, insecure=insecure)

        return _OnFirstUse(url, connect)  # type: ignore[return-value]
    if "://" in url:
        raise UsageError(
            f"registry {redact(url)!r}: unknown scheme (expected oci-layout:PATH,"
            " https://HOST/NAMESPACE or oci://HOST/NAMESPACE)"
        )
    path = Path(url).expanduser()
    if _HOST_LIKE.fullmatch(url.split("/", 1)[0]) and not path.exists():
        raise UsageError(
            f"registry {url!r} looks like a host, not a directory: write https://{url} (or"
            f" oci-layout:{url} for an on-disk registry in a directory of that name)"
        )
    return OCILayoutRegistry(path)


# ghcr.io, registry.example.com:5000, localhost:5000 (a plain path has no dot or port there)
_HOST_LIKE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?::[0-9]+)?|[A-Za-z0-9-]+:[0-9]+")


def __getattr__(name: str) -> Any:
    if name == "HTTPRegistry":
        from bsr_team_cache.oci.http import HTTPRegistry

        return HTTPRegistry
    raise AttributeError(name)


__all__ = ["HTTPRegistry", "OCILayoutRegistry", "RegistryBackend", "open_registry"]
