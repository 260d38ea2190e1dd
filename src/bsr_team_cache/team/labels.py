"""The team's label index: label -> commit as last resolved by the BSR, with when.

Labels are mutable, so the index is only a fallback: it answers when the BSR cannot, within a
time-to-live, and a buf.lock always wins over it. One small artifact per module, in its own
repository ``[ns/]teams/<team>/labels/<host>/<owner>/<module>`` tag ``labels`` (apart from the
module artifacts, so that a registry can let only maintainers push it):

  a JSON document (oci/documents.py), artifactType application/vnd.buf.module.labels.v1:
  {"labels": {"<label>": {"commit": "...", "resolved_at": <unix seconds>}}}

In a signed team (trust/policy.py) the index is signed by a maintainer or admin and read only
when it verifies. Older versions kept the index at tag ``labels`` of the module's repository
(``dependencies/...``); readers of an unsigned team still read it there when the new place has
none, and nobody writes it there any more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bsr_team_cache.domain.moduleref import ModuleName, is_commit_id, is_label
from bsr_team_cache.errors import InvalidContentError
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.documents import read_document, read_document_at, update_document
from bsr_team_cache.oci.url import in_namespace

if TYPE_CHECKING:  # trust/ (and cryptography) load only where a team signs its documents
    from bsr_team_cache.team.trust import DocumentSigner, TrustedConfig
    from bsr_team_cache.trust.signatures import SigningContext

LABEL_INDEX_TAG = "labels"
LABELS_ARTIFACT_TYPE = "application/vnd.buf.module.labels.v1"
DEFAULT_LABEL = ""  # what the BSR resolves a ref without ":label" to (the module's default)


@dataclass(frozen=True)
class LabelRecord:
    commit: str
    resolved_at: float


def label_index_repository(team: str, module: ModuleName, namespace: str = "") -> str:
    """``[ns/]teams/<team>/labels/<host>/<owner>/<module>``."""
    from bsr_team_cache.oci.artifact import module_repository  # not loaded by a warm fetch

    parts = module_repository(team, module).split("/")
    parts[2] = "labels"  # teams/<team>/dependencies/... -> teams/<team>/labels/...
    return in_namespace(namespace, "/".join(parts))


def labels_context(team: str, module: ModuleName) -> SigningContext:
    """What a label index's signature binds it to: the team and module (its repository
    without the namespace) and the tag."""
    from bsr_team_cache.trust.signatures import SigningContext

    repo = label_index_repository(team, module)
    return SigningContext(LABELS_ARTIFACT_TYPE, repo, LABEL_INDEX_TAG)


def read_label_index(registry: RegistryBackend, repo: str) -> dict[str, LabelRecord]:
    """The index at ``repo``, unverified (an unsigned team's, or for inspection)."""
    found = read_document(registry, repo, LABEL_INDEX_TAG, LABELS_ARTIFACT_TYPE)
    if found is None:
        return {}
    return _records(found[0], f"{registry.describe()}/{repo}:{LABEL_INDEX_TAG}")


def read_trusted_label_index(
    registry: RegistryBackend,
    team: str,
    module: ModuleName,
    namespace: str,
    trusted: TrustedConfig,
    warnings: list[str],
) -> dict[str, LabelRecord]:
    """The team's index of ``module`` as far as it can be trusted: in a signed team only a
    maintainer's or admin's verified index (else a warning, and none); in an unsigned team the
    index as it is, from the old place when the new one has none."""
    from bsr_team_cache.trust.signatures import SignatureError

    repo = label_index_repository(team, module, namespace)
    where = f"{registry.describe()}/{repo}:{LABEL_INDEX_TAG}"
    found = read_document_at(registry, repo, LABEL_INDEX_TAG, LABELS_ARTIFACT_TYPE)
    if found is None:
        if trusted.signed:
            return {}
        from bsr_team_cache.oci.artifact import module_repository

        return read_label_index(registry, module_repository(team, module, namespace))
    try:
        trusted.check(found.annotations, found.payload, labels_context(team, module))
    except SignatureError as exc:
        warnings.append(f"team label index of {module} ignored ({where}: {exc.reason})")
        return {}
    return _records(found.document, where)


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
    signer: DocumentSigner | None = None,
) -> bool:
    """Merge ``updates``; a label is rewritten when its commit changed or its record is older
    than ``refresh_after`` seconds (so that steady fetches do not push on every run). Labels
    other members wrote meanwhile are kept. Returns whether anything was pushed. With
    ``signer`` (a signed team) the merge builds on the verified index only, and signs."""
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

    update_document(
        registry,
        repo,
        LABEL_INDEX_TAG,
        LABELS_ARTIFACT_TYPE,
        merge,
        None if signer is None else signer.annotate,
        vet=None if signer is None else signer.vet,
    )
    return pushed
