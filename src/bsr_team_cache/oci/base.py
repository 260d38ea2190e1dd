"""The one small interface every team registry backend implements (on-disk layout, HTTP)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Protocol

from bsr_team_cache.errors import DigestMismatchError, RegistryError

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


def embedded_data(descriptor: dict, where: str) -> bytes | None:
    """A descriptor's OCI 1.1 ``data`` (the blob carried inline), verified against its digest;
    None when the descriptor has none."""
    encoded = descriptor.get("data")
    if not isinstance(encoded, str):
        return None
    try:
        data = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise RegistryError(f"{where}: embedded data is not base64") from None
    return verify_blob(data, descriptor["digest"], where)


def descriptor_bytes(registry: RegistryBackend, repo: str, descriptor: dict, where: str) -> bytes:
    """The blob a descriptor names: inline if embedded, else read (and verified)."""
    data = embedded_data(descriptor, where)
    return data if data is not None else registry.read_blob(repo, descriptor["digest"])


def read_typed_manifest(
    registry: RegistryBackend, repo: str, reference: str, artifact_type: str
) -> tuple[dict, str, str] | None:
    """(parsed manifest, a "registry/repo:ref" label for messages, manifest digest), or None
    if absent. Raises if the manifest is not JSON or is another kind of artifact."""
    found = registry.read_manifest(repo, reference)
    if found is None:
        return None
    where = f"{registry.describe()}/{repo}:{reference}"
    try:
        manifest = json.loads(found[0])
    except ValueError as exc:
        raise RegistryError(f"{where}: manifest is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("artifactType") != artifact_type:
        kind = manifest.get("artifactType") if isinstance(manifest, dict) else None
        raise RegistryError(f"{where}: expected a {artifact_type} artifact, found {kind!r}")
    return manifest, where, sha256_digest(found[0])


class RegistryBackend(Protocol):
    """Repositories of blobs and manifests, as in the OCI distribution spec."""

    def describe(self) -> str: ...

    def blob_exists(self, repo: str, digest: str) -> bool: ...

    def read_blob(self, repo: str, digest: str) -> bytes:
        """The blob's bytes, verified against ``digest``."""
        ...

    def read_blob_to(self, repo: str, digest: str, dest: Path) -> int:
        """Stream a blob into ``dest`` (verified, then renamed into place); return its size."""
        ...

    def push_blob(self, repo: str, data: bytes, digest: str) -> None: ...

    def push_blob_file(self, repo: str, path: Path, digest: str) -> None:
        """Upload a blob from disk without holding it in memory."""
        ...

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Make a blob of ``from_repo`` part of ``repo`` without uploading it; False if the
        backend declined (the caller then uploads)."""
        ...

    def push_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """Store the exact bytes under a tag; return the manifest's digest."""
        ...

    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        """(exact bytes, media type) of a tag or digest, or None if absent."""
        ...

    def list_tags(self, repo: str) -> list[str]: ...

    def delete_manifest(self, repo: str, digest: str) -> None: ...

    def replace_manifest(
        self, repo: str, tag: str, data: bytes, media_type: str, expected: str | None
    ) -> str:
        """Move ``tag`` to these bytes only if it still points at ``expected`` (None: absent);
        else raise ConflictError. For read-modify-write of shared documents."""
        ...
