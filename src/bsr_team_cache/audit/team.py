"""The team's audit log in the registry: each machine ships its new records with ``sync`` as
immutable, content-addressed chunks (gzip of JSON lines), one manifest per machine as for
usage events, and every reader merges the other machines' chunks into ``audit-team.jsonl``.

  <ns>teams/<team>/audit:<member>.<hash of member and host>
    layers: chunks, oldest first; past ``MERGE_ABOVE`` the machine folds them into one

Chunks come from anyone with push rights: each is bounded (usage.chunks' limits), every record
is checked as a local one is, records of another team are dropped, and a bad chunk is a
warning. Records are compared whole, so one shipped twice is listed once.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from bsr_team_cache._fs import append_lines, atomic_write
from bsr_team_cache.audit.log import FILE_NAME, TEAM_FILE, parse_record
from bsr_team_cache.errors import ConflictError, InvalidContentError
from bsr_team_cache.oci.base import OCI_MANIFEST, RegistryBackend, sha256_digest
from bsr_team_cache.oci.documents import EMPTY_CONFIG
from bsr_team_cache.oci.url import in_namespace
from bsr_team_cache.usage.chunks import (
    MAX_CHUNK_EVENTS,
    Layer,
    inflate,
    machine_manifest,
    read_layers,
    read_machine_log,
    unseen_layers,
)
from bsr_team_cache.usage.events import EventError

ARTIFACT_TYPE = "application/vnd.bsr-team-cache.audit.v1"
CHUNK_MEDIA_TYPE = "application/vnd.bsr-team-cache.audit-chunk.v1+jsonl+gzip"
STATE_FILE = "audit-state.json"
MERGE_ABOVE = 32


def audit_repository(team: str, namespace: str = "") -> str:
    return in_namespace(namespace, f"teams/{team}/audit")


@dataclass
class AuditSync:
    shipped: int = 0
    merged: int = 0
    warnings: list[str] = field(default_factory=list)


def _state(root: Path) -> dict:
    try:
        state = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    shipped = state.get("shipped")
    seen = state.get("seen")
    return {
        "shipped": shipped if isinstance(shipped, dict) else {},
        "seen": [x for x in seen if isinstance(x, str)] if isinstance(seen, list) else [],
    }


def _save(root: Path, state: dict) -> None:
    atomic_write(root / STATE_FILE, json.dumps(state).encode())


def _own_lines(path: Path, offset: int, team: str) -> tuple[list[str], int]:
    """This machine's complete records of ``team`` from byte ``offset`` on, and where the
    last complete line ends."""
    if not path.exists():
        return [], 0
    lines = []
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # being written: the next sync takes it
            offset += len(raw)
            try:
                entry, _ = parse_record(json.loads(raw))
            except (ValueError, RecursionError, EventError):
                continue
            if entry["team"] == team:
                lines.append(json.dumps(entry, sort_keys=True, separators=(",", ":")))
    return lines, offset


def _chunk(lines: list[str]) -> bytes:
    return gzip.compress("".join(line + "\n" for line in lines).encode(), mtime=0)


def _records(data: bytes, where: str, team: str) -> list[str]:
    """The chunk's records of ``team``, each checked (InvalidContentError if any is bad)."""
    text = inflate(data, where).decode("utf-8", errors="strict")
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if number > MAX_CHUNK_EVENTS:
            raise InvalidContentError(f"{where}: more than {MAX_CHUNK_EVENTS} records")
        try:
            entry, _ = parse_record(json.loads(line))
        except (ValueError, RecursionError, EventError) as exc:
            raise InvalidContentError(f"{where}: record {number}: {exc}") from None
        if entry["team"] == team:
            out.append(json.dumps(entry, sort_keys=True, separators=(",", ":")))
    return out


def ship(root: Path, registry: RegistryBackend, repo: str, *, team: str, tag: str) -> int:
    """Push this machine's audit records of ``team`` not shipped yet; returns how many."""
    state = _state(root)
    key = f"{registry.describe()}/{repo}:{tag}"
    lines, offset = _own_lines(root / FILE_NAME, int(state["shipped"].get(key, 0) or 0), team)
    if not lines:
        state["shipped"][key] = offset
        _save(root, state)
        return 0
    data = _chunk(lines)
    digest = sha256_digest(data)
    for blob in (data, EMPTY_CONFIG):
        if not registry.blob_exists(repo, sha256_digest(blob)):
            registry.push_blob(repo, blob, sha256_digest(blob))
    new = Layer(digest, len(data), len(lines), (), CHUNK_MEDIA_TYPE)
    for _attempt in range(8):
        try:
            current = read_machine_log(registry, repo, tag, ARTIFACT_TYPE, CHUNK_MEDIA_TYPE)
        except InvalidContentError:
            current = None  # unreadable (someone else wrote it): started again
        raw = registry.read_manifest(repo, tag)
        expected = sha256_digest(raw[0]) if raw else None
        layers = [*(current.layers if current else []), new]
        if len(layers) > MERGE_ABOVE:
            layers = [_fold(registry, repo, layers, team)]
        try:
            registry.replace_manifest(
                repo, tag, machine_manifest(layers, {}, ARTIFACT_TYPE), OCI_MANIFEST, expected
            )
        except ConflictError:
            continue
        state["shipped"][key] = offset
        _save(root, state)
        return len(lines)
    raise ConflictError(f"{key} kept changing; sync again")


def _fold(registry: RegistryBackend, repo: str, layers: list[Layer], team: str) -> Layer:
    """The machine's chunks as one (records that do not read back are left out)."""
    seen: dict[str, None] = {}
    for layer in layers:
        try:
            data = registry.read_blob(repo, layer.digest, layer.size)
            seen.update(dict.fromkeys(_records(data, f"{repo} chunk {layer.digest}", team)))
        except InvalidContentError:
            continue
    lines = list(seen)[-MAX_CHUNK_EVENTS:]
    data = _chunk(lines)
    if not registry.blob_exists(repo, sha256_digest(data)):
        registry.push_blob(repo, data, sha256_digest(data))
    replaces = tuple(layer.digest for layer in layers)
    return Layer(sha256_digest(data), len(data), len(lines), replaces, CHUNK_MEDIA_TYPE)


def merge(
    root: Path, registry: RegistryBackend, repo: str, *, team: str, own_tag: str
) -> AuditSync:
    """Append the other machines' records not merged yet to ``audit-team.jsonl`` (the chunks
    to read are chosen as for usage events: ``usage.chunks.unseen_layers``)."""
    report = AuditSync()
    state = _state(root)
    seen = {tuple(mark.split(" ", 1)) for mark in state["seen"] if " " in mark}
    where = f"{registry.describe()}/{repo}"
    kind = {"artifact_type": ARTIFACT_TYPE, "media_type": CHUNK_MEDIA_TYPE}
    wanted, _ = unseen_layers(
        registry, repo, own_tag=own_tag, seen=seen, warnings=report.warnings,
        what="team audit", **kind,
    )  # fmt: skip
    for tag, layer, data in read_layers(
        registry, repo, wanted, warnings=report.warnings, what="team audit"
    ):
        seen.add((tag, layer.digest))
        try:
            lines = _records(data, f"{where}:{tag} chunk {layer.digest}", team)
        except (InvalidContentError, UnicodeDecodeError) as exc:
            report.warnings.append(f"team audit: {exc}; skipped")
            continue
        append_lines(root / TEAM_FILE, lines)
        report.merged += len(lines)
    state["seen"] = sorted(f"{tag} {digest}" for tag, digest in seen)
    _save(root, state)
    return report
