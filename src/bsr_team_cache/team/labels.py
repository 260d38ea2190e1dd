"""The team's label index: label -> commit as last resolved by the BSR, with when.

Labels are mutable, so the index is only a fallback: it answers when the BSR cannot, within a
time-to-live, and a buf.lock always wins over it. One small artifact per module repository,
tag ``labels`` (commits are 32 hex characters, so the tag cannot clash):

  a JSON document (oci/documents.py), artifactType application/vnd.buf.module.labels.v1:
  {"labels": {"<label>": {"commit": "...", "resolved_at": <unix seconds>}}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bsr_team_cache.domain.moduleref import is_commit_id, is_label
from bsr_team_cache.errors import InvalidContentError
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.documents import read_document, update_document

LABEL_INDEX_TAG = "labels"
LABELS_ARTIFACT_TYPE = "application/vnd.buf.module.labels.v1"
DEFAULT_LABEL = ""  # what the BSR resolves a ref without ":label" to (the module's default)


@dataclass(frozen=True)
class LabelRecord:
    commit: str
    resolved_at: float


def read_label_index(registry: RegistryBackend, repo: str) -> dict[str, LabelRecord]:
    found = read_document(registry, repo, LABEL_INDEX_TAG, LABELS_ARTIFACT_TYPE)
    if found is None:
        return {}
    return _records(found[0], f"{registry.describe()}/{repo}:{LABEL_INDEX_TAG}")


def _records(document: Any, where: str) -> dict[str, LabelRecord]:
    """The index's records, each checked: a label name, a commit id, a finite time."""
    labels = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(labels, dict):
        raise InvalidContentError(f"{where}: malformed label index (no labels object)")
    records = {}
    for label, value in labels.items():
        commit = value.get("commit") if isinstance(value, dict) else None
        when = value.get("resolved_at") if isinstance(value, dict) else None
        if not (label == DEFAULT_LABEL or is_label(label)) or not is_commit_id(commit):
            raise InvalidContentError(
                f"{where}: malformed label index entry {label!r}: {commit!r} is not a commit id"
            )
        if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
            raise InvalidContentError(f"{where}: label index entry {label!r} has no valid time")
        records[label] = LabelRecord(commit, float(when))
    return records


def update_label_index(
    registry: RegistryBackend,
    repo: str,
    updates: dict[str, LabelRecord],
    *,
    refresh_after: float = 0.0,
) -> bool:
    """Merge ``updates``; a label is rewritten when its commit changed or its record is older
    than ``refresh_after`` seconds (so that steady fetches do not push on every run). Labels
    other members wrote meanwhile are kept. Returns whether anything was pushed."""
    where = f"{registry.describe()}/{repo}:{LABEL_INDEX_TAG}"
    pushed = False

    def merge(current: Any) -> Any:
        nonlocal pushed
        records = {} if current is None else _records(current, where)
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
        pushed = pushed or changed
        if not changed:
            return current
        return {
            "labels": {
                label: {"commit": r.commit, "resolved_at": round(r.resolved_at, 3)}
                for label, r in sorted(records.items())
            }
        }

    update_document(registry, repo, LABEL_INDEX_TAG, LABELS_ARTIFACT_TYPE, merge)
    return pushed
