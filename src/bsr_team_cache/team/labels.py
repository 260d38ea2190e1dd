"""The team's label index: label -> commit as last resolved by the BSR, with when.

Labels are mutable, so the index is only a fallback: it answers when the BSR cannot, within a
time-to-live, and a buf.lock always wins over it. One small artifact per module repository,
tag ``labels`` (commits are 32 hex characters, so the tag cannot clash):

  manifest (artifactType application/vnd.buf.module.labels.v1)
    config: the OCI empty descriptor ``{}``
    layer:  JSON {"labels": {"<label>": {"commit": "...", "resolved_at": <unix seconds>}}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bsr_team_cache.errors import RegistryError
from bsr_team_cache.oci.base import OCI_MANIFEST, RegistryBackend, sha256_digest

LABEL_INDEX_TAG = "labels"
LABELS_ARTIFACT_TYPE = "application/vnd.buf.module.labels.v1"
LABELS_MEDIA_TYPE = "application/vnd.buf.module.labels.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
DEFAULT_LABEL = ""  # what the BSR resolves a ref without ":label" to (the module's default)


@dataclass(frozen=True)
class LabelRecord:
    commit: str
    resolved_at: float


def _encode(records: dict[str, LabelRecord]) -> tuple[bytes, bytes]:
    layer = json.dumps(
        {
            "labels": {
                label: {"commit": r.commit, "resolved_at": round(r.resolved_at, 3)}
                for label, r in sorted(records.items())
            }
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": LABELS_ARTIFACT_TYPE,
            "config": {
                "mediaType": EMPTY_MEDIA_TYPE,
                "digest": sha256_digest(EMPTY_CONFIG),
                "size": len(EMPTY_CONFIG),
            },
            "layers": [
                {"mediaType": LABELS_MEDIA_TYPE, "digest": sha256_digest(layer), "size": len(layer)}
            ],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return manifest, layer


def read_label_index(registry: RegistryBackend, repo: str) -> dict[str, LabelRecord]:
    found = registry.read_manifest(repo, LABEL_INDEX_TAG)
    if found is None:
        return {}
    where = f"{registry.describe()}/{repo}:{LABEL_INDEX_TAG}"
    try:
        manifest = json.loads(found[0])
        if manifest.get("artifactType") != LABELS_ARTIFACT_TYPE:
            raise RegistryError(f"{where}: not a label index")
        payload = json.loads(registry.read_blob(repo, manifest["layers"][0]["digest"]))
        return {
            label: LabelRecord(str(v["commit"]), float(v["resolved_at"]))
            for label, v in payload["labels"].items()
        }
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: malformed label index ({exc})") from None


def update_label_index(
    registry: RegistryBackend,
    repo: str,
    updates: dict[str, LabelRecord],
    *,
    refresh_after: float = 0.0,
) -> bool:
    """Merge ``updates``; a label is rewritten when its commit changed or its record is older
    than ``refresh_after`` seconds (so that steady fetches do not push on every run).
    Concurrent writers: the last one wins, which is fine for a hint that is re-resolved
    whenever the BSR answers. Returns whether anything was pushed."""
    records = read_label_index(registry, repo)
    changed = False
    for label, record in updates.items():
        old = records.get(label)
        if (
            old is None
            or old.commit != record.commit
            or record.resolved_at - old.resolved_at > refresh_after
        ):
            records[label] = record
            changed = True
    if not changed:
        return False
    manifest, layer = _encode(records)
    for data in (EMPTY_CONFIG, layer):
        if not registry.blob_exists(repo, sha256_digest(data)):
            registry.push_blob(repo, data, sha256_digest(data))
    registry.push_manifest(repo, LABEL_INDEX_TAG, manifest, OCI_MANIFEST)
    return True
