"""Small JSON documents kept as OCI artifacts (team configuration, label indexes, bundles'
metadata): an empty config, one JSON layer, embedded in the manifest so a read is one request.

  manifest (artifactType <the document's type>)
    config: the OCI empty descriptor ``{}``
    layer:  the canonical JSON document (mediaType ``<artifactType>+json``), also as ``data``
"""

from __future__ import annotations

import base64
import json
from typing import Any

from bsr_team_cache.errors import RegistryError
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


def push_document(
    registry: RegistryBackend,
    repo: str,
    tag: str,
    artifact_type: str,
    document: object,
    annotations: dict[str, str] | None = None,
) -> str:
    """Push a JSON document under ``tag``; returns the manifest digest."""
    payload = canonical_json(document)
    for data in (EMPTY_CONFIG, payload):
        if not registry.blob_exists(repo, sha256_digest(data)):
            registry.push_blob(repo, data, sha256_digest(data))
    manifest = document_manifest(artifact_type, payload, annotations)
    return registry.push_manifest(repo, tag, manifest, OCI_MANIFEST)


def read_document(
    registry: RegistryBackend, repo: str, tag: str, artifact_type: str
) -> tuple[Any, dict[str, str]] | None:
    """(document, manifest annotations), or None when the tag does not exist."""
    found = read_typed_manifest(registry, repo, tag, artifact_type)
    if found is None:
        return None
    manifest, where = found
    try:
        payload = descriptor_bytes(registry, repo, manifest["layers"][0], where)
        return json.loads(payload), dict(manifest.get("annotations") or {})
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: malformed document ({exc})") from None
