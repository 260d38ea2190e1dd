"""OCI registry adapters: one interface, an on-disk image layout backend (the embedded default)."""

from __future__ import annotations

from pathlib import Path

from bsr_team_cache.errors import UsageError
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.layout import OCILayoutRegistry


def open_registry(url: str) -> RegistryBackend:
    """``oci-layout:PATH`` (or a plain path) opens the on-disk backend."""
    if url.startswith("oci-layout:"):
        return OCILayoutRegistry(Path(url.removeprefix("oci-layout:")).expanduser())
    if url.startswith(("https://", "http://")):
        raise UsageError(
            f"registry {url!r}: HTTP registries are not supported by this version yet;"
            " use oci-layout:PATH (a directory, also on a shared filesystem)"
        )
    if "://" in url:
        raise UsageError(f"registry {url!r}: unknown scheme (expected oci-layout:PATH)")
    return OCILayoutRegistry(Path(url).expanduser())


__all__ = ["OCILayoutRegistry", "RegistryBackend", "open_registry"]
