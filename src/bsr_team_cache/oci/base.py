"""The one small interface every team registry backend implements (on-disk layout, HTTP), and
the checks every byte read from a registry passes: a digest of the right form, content that
hashes to it, descriptors of the expected media type and size, JSON documents within bounds.
Whatever fails is an InvalidContentError: the caller warns and asks the next tier."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from bsr_team_cache.errors import DigestMismatchError, InvalidContentError, remote_text
from bsr_team_cache.limits import limits

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_ACCEPT = ", ".join(
    (
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_oci_digest(digest: object) -> bool:
    return isinstance(digest, str) and _SHA256_RE.fullmatch(digest) is not None


def validate_oci_digest(digest: object, where: str) -> str:
    """``sha256:<64 lowercase hex>``: the only form we read (it also names files on disk)."""
    if not is_oci_digest(digest):
        raise InvalidContentError(f"{where}: invalid digest {digest!r} (expected sha256:<hex>)")
    return digest  # type: ignore[return-value]


def verify_blob(data: bytes, digest: str, where: str) -> bytes:
    """Integrity on every read: content must hash to the digest that names it."""
    actual = sha256_digest(data)
    if actual != digest:
        raise DigestMismatchError(
            # The digest may be what a registry stated (Docker-Content-Digest): shown escaped.
            f"{where}: blob {remote_text(digest, 100)} is corrupt (its content hashes to {actual})"
        )
    return data


def parse_json(data: bytes, where: str, what: str) -> Any:
    """A JSON document from a registry (bounded by its reader); never more than our errors."""
    try:
        return json.loads(data)
    except RecursionError:
        raise InvalidContentError(f"{where}: {what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidContentError(f"{where}: {what} is not JSON ({exc})") from None


class Descriptor:
    """An OCI descriptor whose fields have been checked (``data``: OCI 1.1 embedded data,
    verified). A plain class: start-up need not compile dataclass methods for it."""

    __slots__ = ("annotations", "data", "digest", "media_type", "size")

    def __init__(
        self,
        media_type: str,
        digest: str,
        size: int,
        data: bytes | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        self.media_type = media_type
        self.digest = digest
        self.size = size
        self.data = data
        self.annotations = annotations or {}


def parse_descriptor(
    value: object, where: str, *, media_types: tuple[str, ...], max_size: int
) -> Descriptor:
    """A descriptor of one of ``media_types`` naming at most ``max_size`` bytes; embedded data,
    when present, must be base64 of exactly those bytes."""
    if not isinstance(value, dict):
        raise InvalidContentError(f"{where}: a descriptor is not a JSON object")
    media_type = value.get("mediaType")
    if media_type not in media_types:
        raise InvalidContentError(
            f"{where}: unexpected media type {media_type!r} (expected {', '.join(media_types)})"
        )
    digest = validate_oci_digest(value.get("digest"), where)
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidContentError(f"{where}: descriptor size {size!r} is not a byte count")
    if size > max_size:
        raise InvalidContentError(f"{where}: {media_type} of {size} bytes exceeds {max_size}")
    annotations = value.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidContentError(f"{where}: descriptor annotations are not strings")
    data = None
    encoded = value.get("data")
    if encoded is not None:
        if not isinstance(encoded, str) or len(encoded) > 4 * (size // 3 + 1):
            raise InvalidContentError(f"{where}: embedded data does not match size {size}")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidContentError(f"{where}: embedded data is not base64") from None
        if len(data) != size:
            raise InvalidContentError(f"{where}: embedded data does not match size {size}")
        verify_blob(data, digest, where)
    return Descriptor(media_type, digest, size, data, annotations)


def parse_manifest(data: bytes, where: str, artifact_type: str) -> dict[str, Any]:
    """An OCI image manifest of ``artifact_type`` (a JSON object; its fields checked by the
    caller with ``parse_descriptor``)."""
    manifest = parse_json(data, where, "manifest")
    if not isinstance(manifest, dict):
        raise InvalidContentError(f"{where}: manifest is not a JSON object")
    if manifest.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST:
        raise InvalidContentError(
            f"{where}: expected an OCI image manifest, found {manifest.get('mediaType')!r}"
        )
    if manifest.get("artifactType") != artifact_type:
        raise InvalidContentError(
            f"{where}: expected a {artifact_type} artifact, found {manifest.get('artifactType')!r}"
        )
    if not isinstance(manifest.get("layers"), list):
        raise InvalidContentError(f"{where}: manifest has no list of layers")
    return manifest


def manifest_annotations(manifest: dict[str, Any], where: str) -> dict[str, str]:
    annotations = manifest.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidContentError(f"{where}: manifest annotations are not strings")
    return dict(annotations)


def descriptor_bytes(
    registry: RegistryBackend, repo: str, descriptor: Descriptor, where: str
) -> bytes:
    """The blob a descriptor names: inline if embedded, else read (bounded and verified)."""
    if descriptor.data is not None:
        return descriptor.data
    data = registry.read_blob(repo, descriptor.digest, max_bytes=descriptor.size)
    if len(data) != descriptor.size:
        raise InvalidContentError(f"{where}: blob {descriptor.digest} is not {descriptor.size} B")
    return data


def read_typed_manifest(
    registry: RegistryBackend, repo: str, reference: str, artifact_type: str
) -> tuple[dict, str, str] | None:
    """(checked manifest, a "registry/repo:ref" label for messages, manifest digest), or None
    if absent. Raises InvalidContentError for anything but a manifest of ``artifact_type``."""
    found = registry.read_manifest(repo, reference)
    return typed_manifest(registry, repo, reference, found, artifact_type)


def typed_manifest(
    registry: RegistryBackend,
    repo: str,
    reference: str,
    found: tuple[bytes, str] | None,
    artifact_type: str,
) -> tuple[dict, str, str] | None:
    """read_typed_manifest of the answer ``found`` that ``registry.read_manifest`` gave."""
    if found is None:
        return None
    where = f"{registry.describe()}/{repo}:{reference}"
    return parse_manifest(found[0], where, artifact_type), where, sha256_digest(found[0])


def manifest_answer(
    data: bytes, reference: str, echoed_digest: str, content_type: str, where: str
) -> tuple[bytes, str]:
    """(manifest, media type) from a registry's 200 answer to a manifest GET: the bytes checked
    against the digest asked for, else against the one the registry states
    (Docker-Content-Digest); the media type from Content-Type, else from the document."""
    expected = reference if reference.startswith("sha256:") else None
    if expected is None and echoed_digest.startswith("sha256:"):
        expected = echoed_digest
    if expected is not None:
        verify_blob(data, expected, where)
    media_type = content_type.split(";", 1)[0].strip()
    if not media_type or media_type == "application/octet-stream":
        try:
            media_type = str(json.loads(data).get("mediaType", ""))
        except (ValueError, AttributeError, RecursionError):
            media_type = ""
    return data, media_type


def registry_error_text(status: int, body: bytes) -> str:
    """The registry's error codes and messages (what it sent, made printable and short)."""
    try:
        errors = json.loads(body[: 1 << 20]).get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors[:5]]
        if parts:
            return remote_text("; ".join(parts))
    except (ValueError, AttributeError, TypeError, RecursionError):
        pass
    return f"HTTP {status}"


def document_limit() -> int:
    return limits().max_document_bytes


def gunzip_within(data: bytes, limit: int, where: str, too_large: str) -> bytes:
    """The content of the gzip stream ``data``, never inflated past ``limit`` bytes: beyond it,
    InvalidContentError ``where: too_large``; as for anything but one whole gzip stream."""
    if limit < 1:  # zlib reads a max_length of 0 as no limit at all
        raise InvalidContentError(f"{where}: {too_large}")
    inflater = zlib.decompressobj(wbits=31)  # gzip only
    try:
        content = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise InvalidContentError(f"{where}: not gzip ({exc})") from None
    if inflater.unconsumed_tail:
        raise InvalidContentError(f"{where}: {too_large}")
    if not inflater.eof or inflater.unused_data:
        raise InvalidContentError(f"{where}: the gzip stream is cut short or has trailing data")
    return content


class RegistryBackend(Protocol):
    """Repositories of blobs and manifests, as in the OCI distribution spec. Reads are bounded:
    manifests by ``Limits.max_document_bytes``, blobs by ``max_bytes``."""

    def describe(self) -> str: ...

    def blob_exists(self, repo: str, digest: str) -> bool: ...

    def read_blob(self, repo: str, digest: str, max_bytes: int | None = None) -> bytes:
        """The blob's bytes, verified against ``digest``; more than ``max_bytes`` (default:
        the module limit) is refused. A blob the repository lacks is a MissingBlobError."""
        ...

    def open_blob(self, repo: str, digest: str, max_bytes: int) -> Iterator[bytes]:
        """The blob's bytes in chunks as they arrive, never more than ``max_bytes`` in all;
        after the last chunk, a DigestMismatchError if they do not hash to ``digest`` (so a
        reader makes nothing of them visible before the iterator is exhausted). A blob the
        repository lacks is a MissingBlobError."""
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
