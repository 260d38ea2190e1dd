"""Small JSON documents kept as OCI artifacts (team configuration, label indexes, bundles'
metadata): an empty config, one JSON layer, embedded in the manifest so a read is one request.

  manifest (artifactType <the document's type>)
    config: the OCI empty descriptor ``{}``
    layer:  the canonical JSON document (mediaType ``<artifactType>+json``), also as ``data``
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from bsr_team_cache._records import record
from bsr_team_cache.errors import ConflictError, InvalidContentError
from bsr_team_cache.oci.base import (
    OCI_MANIFEST,
    RegistryBackend,
    descriptor_bytes,
    document_limit,
    manifest_annotations,
    parse_descriptor,
    parse_json,
    read_typed_manifest,
    sha256_digest,
)

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def artifact_manifest(
    artifact_type: str, layers: list[dict], annotations: dict[str, str] | None = None
) -> bytes:
    """The canonical bytes of an OCI 1.1 artifact manifest: the empty config, ``layers``."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": sha256_digest(EMPTY_CONFIG),
            "size": len(EMPTY_CONFIG),
        },
        "layers": layers,
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    return canonical_json(manifest)


def document_manifest(
    artifact_type: str, payload: bytes, annotations: dict[str, str] | None = None
) -> bytes:
    return artifact_manifest(
        artifact_type,
        [
            {
                "mediaType": artifact_type + "+json",
                "digest": sha256_digest(payload),
                "size": len(payload),
                "data": base64.b64encode(payload).decode(),
            }
        ],
        annotations,
    )


_ANY = object()  # push_document without a check of what the tag held


def push_document(
    registry: RegistryBackend,
    repo: str,
    tag: str,
    artifact_type: str,
    document: object,
    annotations: dict[str, str] | None = None,
    *,
    expected: object = _ANY,
) -> str:
    """Push a JSON document under ``tag``; returns the manifest digest. With ``expected`` (a
    manifest digest, or None for "absent"), raise ConflictError if the tag moved meanwhile."""
    payload = canonical_json(document)
    for data in (EMPTY_CONFIG, payload):
        if not registry.blob_exists(repo, sha256_digest(data)):
            registry.push_blob(repo, data, sha256_digest(data))
    manifest = document_manifest(artifact_type, payload, annotations)
    if expected is _ANY:
        return registry.push_manifest(repo, tag, manifest, OCI_MANIFEST)
    assert expected is None or isinstance(expected, str)
    return registry.replace_manifest(repo, tag, manifest, OCI_MANIFEST, expected)


@record(frozen=True)
class DocumentRead:
    """A document as read: parsed, with the exact payload bytes (what a signature covers), the
    manifest's annotations and digest."""

    document: Any
    payload: bytes
    annotations: dict[str, str]
    digest: str


def read_document_at(
    registry: RegistryBackend, repo: str, reference: str, artifact_type: str
) -> DocumentRead | None:
    """The document under ``reference`` (a tag or a manifest digest), or None when absent. A
    document that is not what it should be is an InvalidContentError."""
    found = read_typed_manifest(registry, repo, reference, artifact_type)
    if found is None:
        return None
    manifest, where, digest = found
    if len(manifest["layers"]) != 1:
        raise InvalidContentError(f"{where}: expected one document layer")
    layer = parse_descriptor(
        manifest["layers"][0],
        where,
        media_types=(artifact_type + "+json",),
        max_size=document_limit(),
    )
    payload = descriptor_bytes(registry, repo, layer, where)
    document = parse_json(payload, where, "document")
    return DocumentRead(document, payload, manifest_annotations(manifest, where), digest)


def read_versioned_document(
    registry: RegistryBackend, repo: str, tag: str, artifact_type: str
) -> tuple[Any, dict[str, str], str] | None:
    """(document, manifest annotations, manifest digest), or None when the tag is absent.
    A document that is not what it should be is an InvalidContentError."""
    found = read_document_at(registry, repo, tag, artifact_type)
    return None if found is None else (found.document, found.annotations, found.digest)


# What update_document builds on: given what the tag holds (None: nothing, or malformed),
# the document to apply the change to (e.g. None for a document whose signature fails).
Vet = Callable[[DocumentRead | None], Any]
# The manifest annotations of a new payload, given the digest of the manifest it replaces
# (e.g. a signature over the payload).
Annotate = Callable[[bytes, str | None], dict[str, str]]


def _as_read(found: DocumentRead | None) -> Any:
    return None if found is None else found.document


def _current(
    registry: RegistryBackend, repo: str, tag: str, artifact_type: str, vet: Vet
) -> tuple[Any, str | None]:
    """(document or None, digest of what the tag holds or None). A malformed document reads
    as None with its digest, so that the next write replaces it (and checks it is still it)."""
    try:
        found = read_document_at(registry, repo, tag, artifact_type)
    except InvalidContentError:
        raw = registry.read_manifest(repo, tag)
        return vet(None), sha256_digest(raw[0]) if raw else None
    return vet(found), found.digest if found else None


def read_document(
    registry: RegistryBackend, repo: str, tag: str, artifact_type: str
) -> tuple[Any, dict[str, str]] | None:
    """(document, manifest annotations), or None when the tag does not exist."""
    found = read_versioned_document(registry, repo, tag, artifact_type)
    return None if found is None else (found[0], found[1])


def update_document(
    registry: RegistryBackend,
    repo: str,
    tag: str,
    artifact_type: str,
    change: Callable[[Any], Any],
    annotations: dict[str, str] | Annotate | None = None,
    attempts: int = 12,
    *,
    vet: Vet | None = None,
) -> Any:
    """Read-modify-write of a shared document. ``change(current or None)`` must be idempotent
    (return ``current`` itself when its change is already there). It is applied again on what
    another writer left whenever the tag moved between our read and our write; and after our
    write, once more on what is then current: registries have no conditional PUT, so a writer
    that checked just before our write can overwrite it, and this second look puts our change
    back. Returns the document that holds our change. ``vet`` chooses what the change builds
    on (a signed document: only what verifies); ``annotations`` may be computed per payload."""
    import random  # for the jitter of retries: not loaded by the readers of documents

    wrote = False
    for attempt in range(attempts):
        current, digest = _current(registry, repo, tag, artifact_type, vet or _as_read)
        try:
            new = change(current)
        except InvalidContentError:
            current, new = None, change(None)  # a malformed document is replaced, not kept
        if current is not None and canonical_json(new) == canonical_json(current):
            return current  # our change is there (already, or written by us and still current)
        if wrote and attempt + 1 == attempts:
            break
        started = time.monotonic()
        extra = annotations(canonical_json(new), digest) if callable(annotations) else annotations
        try:
            push_document(registry, repo, tag, artifact_type, new, extra, expected=digest)
        except ConflictError:
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
            continue
        wrote = True
        # A writer that checked the tag while our PUT was in flight lands within about as long.
        time.sleep(min(1.0, time.monotonic() - started) + random.uniform(0.0, 0.01))
    raise ConflictError(
        f"{registry.describe()}/{repo}:{tag} kept changing under {attempts} attempts; try again"
    )
