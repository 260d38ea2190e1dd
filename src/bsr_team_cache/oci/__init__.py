"""OCI registry adapters behind one interface: an on-disk image layout (the embedded default)
and an HTTP client for any distribution-spec registry."""

from __future__ import annotations

from pathlib import Path

from bsr_team_cache.errors import UsageError
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.layout import OCILayoutRegistry


def open_registry(url: str, *, insecure: bool = False) -> RegistryBackend:
    """``oci-layout:PATH`` (or a plain path) is on disk; ``https://HOST[:PORT][/NS]``,
    ``oci://HOST/NS`` (https) and ``http://`` (loopback or ``insecure`` only) are HTTP."""
    if url.startswith("oci-layout:"):
        return OCILayoutRegistry(Path(url.removeprefix("oci-layout:")).expanduser())
    if url.startswith(("https://", "http://", "oci://")):
        return HTTPRegistry(url, insecure=insecure)
    if "://" in url:
        raise UsageError(
            f"registry {url!r}: unknown scheme (expected oci-layout:PATH, https://HOST/NAMESPACE"
            " or oci://HOST/NAMESPACE)"
        )
    return OCILayoutRegistry(Path(url).expanduser())


__all__ = ["HTTPRegistry", "OCILayoutRegistry", "RegistryBackend", "open_registry"]
