"""Small JSON documents kept as OCI artifacts (team configuration, label indexes, bundles'
metadata): an empty config, one JSON layer, embedded in the manifest so a read is one request.

  manifest (artifactType <the document's type>)
    config: the OCI empty descriptor ``{}``
    layer:  the canonical JSON document (mediaType ``<artifactType>+json``), also as ``data``
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from typing import Any

from bsr_team_cache.errors import ConflictError, RegistryError
from bsr_team_cache.oci.base import (
    OCI_MANIFEST,
    RegistryBackend,
    descriptor_bytes,
    read_typed_manifest,
    sha256_digest,
)

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def document_manifest(
    artifact_type: str, payload: bytes, annotations: dict[str, str] | None = None
) -> bytes:
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": sha256_digest(EMPTY_CONFIG),
            "size": len(EMPTY_CONFIG),
        },
        "layers": [
            {
                "mediaType": artifact_type + "+json",
                "digest": sha256_digest(payload),
                "size": len(payload),
                "data": base64.b64encode(payload).decode(),
            }
        ],
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    return canonical_json(manifest)


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


def read_versioned_document(
    registry: RegistryBackend, repo: str, tag: str, artifact_type: str
) -> tuple[Any, dict[str, str], str] | None:
    """(document, manifest annotations, manifest digest), or None when the tag is absent."""
    found = read_typed_manifest(registry, repo, tag, artifact_type)
    if found is None:
        return None
    manifest, where, digest = found
    try:
        payload = descriptor_bytes(registry, repo, manifest["layers"][0], where)
        return json.loads(payload), dict(manifest.get("annotations") or {}), digest
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: malformed document ({exc})") from None


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
    annotations: dict[str, str] | None = None,
    attempts: int = 12,
) -> Any:
    """Read-modify-write of a shared document. ``change(current or None)`` must be idempotent
    (return ``current`` itself when its change is already there). It is applied again on what
    another writer left whenever the tag moved between our read and our write; and after our
    write, once more on what is then current: registries have no conditional PUT, so a writer
    that checked just before our write can overwrite it, and this second look puts our change
    back. Returns the document that holds our change."""
    wrote = False
    for attempt in range(attempts):
        found = read_versioned_document(registry, repo, tag, artifact_type)
        current, digest = (found[0], found[2]) if found else (None, None)
        new = change(current)
        if found is not None and canonical_json(new) == canonical_json(current):
            return current  # our change is there (already, or written by us and still current)
        if wrote and attempt + 1 == attempts:
            break
        started = time.monotonic()
        try:
            push_document(registry, repo, tag, artifact_type, new, annotations, expected=digest)
        except ConflictError:
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
            continue
        wrote = True
        # A writer that checked the tag while our PUT was in flight lands within about as long.
        time.sleep(min(1.0, time.monotonic() - started) + random.uniform(0.0, 0.01))
    raise ConflictError(
        f"{registry.describe()}/{repo}:{tag} kept changing under {attempts} attempts; try again"
    )
