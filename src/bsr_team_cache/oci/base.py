"""The one small interface every team registry backend implements (on-disk layout, HTTP)."""

from __future__ import annotations

import hashlib
from typing import Protocol

from bsr_team_cache.errors import DigestMismatchError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_blob(data: bytes, digest: str, where: str) -> bytes:
    """Integrity on every read: content must hash to the digest that names it."""
    actual = sha256_digest(data)
    if actual != digest:
        raise DigestMismatchError(
            f"{where}: blob {digest} is corrupt (its content hashes to {actual})"
        )
    return data


class RegistryBackend(Protocol):
    """Repositories of blobs and manifests, as in the OCI distribution spec."""

    def describe(self) -> str: ...

    def blob_exists(self, repo: str, digest: str) -> bool: ...

    def read_blob(self, repo: str, digest: str) -> bytes:
        """The blob's bytes, verified against ``digest``."""
        ...

    def push_blob(self, repo: str, data: bytes, digest: str) -> None: ...

    def push_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """Store the exact bytes under a tag; return the manifest's digest."""
        ...

    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        """(exact bytes, media type) of a tag or digest, or None if absent."""
        ...

    def list_tags(self, repo: str) -> list[str]: ...
