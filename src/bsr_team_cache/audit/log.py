"""Writing and reading audit records. Writing never fails the operation it records (a log
that cannot be written is a warning); reading validates every line (a damaged line is skipped
and counted)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from bsr_team_cache._fs import append_lines
from bsr_team_cache.usage.events import (
    EventError,
    check_text,
    format_time,
    host_name,
    parse_time,
)

FILE_NAME = "audit.jsonl"  # this machine's records
TEAM_FILE = "audit-team.jsonl"  # the other machines', merged from the team registry
OPERATIONS = (
    "fetch",
    "publish",
    "warm",
    "bundle-create",
    "bundle-pull",
    "share",
    "setup",
    "sync",
    "clear",
    "evict",
    # lock packs deleted from the team registry (admins only)
    "prune-packs",
    # membership, recorded by setup (admins only)
    "member-add",
    "member-remove",
    "role-change",
    # encryption at rest: a layer's keys wrapped again for the current recipients
    "rewrap",
    # the auth server: a token request answered with (some of) what was asked, or refused
    "grant",
    "refuse",
    # the registry's own view, from its notifications (any client, skopeo included)
    "registry-push",
    "registry-pull",
)
MAX_REFS = 10_000
MAX_RESULT = 1000
MAX_LINE = 4 << 20


def record(
    store_root: Path | None,
    *,
    team: str,
    member: str,
    operation: str,
    refs: Iterable[str] = (),
    result: str = "ok",
    warnings: list[str] | None = None,
    when: float | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Append one record: ``refs`` name what the operation touched (``module:commit``,
    ``module:commit@b5:…``, a bundle ``name:version``, a member); ``result`` is ``ok`` or
    ``error: …``."""
    if store_root is None:
        return
    assert operation in OPERATIONS, operation
    line = {
        "time": format_time(time.time() if when is None else when),
        "team": team,
        "member": member or "unknown",
        "host": host_name(env),
        "operation": operation,
        "refs": list(refs)[:MAX_REFS],
        "result": _one_line(result)[:MAX_RESULT],
    }
    lines = [json.dumps(line, separators=(",", ":"))]
    try:
        try:
            append_lines(Path(store_root) / FILE_NAME, lines)
        except FileNotFoundError:
            # A machine's first command may be one that opens no store (prune-packs): the
            # log's directory is made as the store would make it.
            Path(store_root).mkdir(mode=0o700, parents=True, exist_ok=True)
            append_lines(Path(store_root) / FILE_NAME, lines)
    except OSError as exc:
        if warnings is not None:
            warnings.append(f"audit record not written: {exc.strerror or exc}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class AuditQuery:
    """Which records to read, and then what was read. (A plain class: every fetch imports this
    module to record, and a dataclass would compile its methods and import inspect.)"""

    def __init__(
        self,
        since: float | None = None,
        team: str | None = None,
        member: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.since = since
        self.team = team
        self.member = member
        self.operation = operation
        self.skipped = 0  # damaged lines
        self.records: list[dict] = []


def read(store_root: Path, query: AuditQuery) -> AuditQuery:
    """The records of this machine's audit log and of the team's merged one that ``query``
    selects, oldest first; a record found twice (shipped twice) is listed once."""
    found: dict[str, tuple[float, dict]] = {}
    for name in (FILE_NAME, TEAM_FILE):
        path = Path(store_root) / name
        if not path.exists():
            continue
        with open(path, "rb") as f:
            for raw in f:
                if len(raw) > MAX_LINE or not raw.endswith(b"\n"):
                    query.skipped += 1
                    continue
                try:
                    entry, when = parse_record(json.loads(raw))
                except (ValueError, RecursionError, EventError):
                    query.skipped += 1
                    continue
                if _selected(entry, when, query):
                    found.setdefault(json.dumps(entry, sort_keys=True), (when, entry))
    query.records = [entry for _, entry in sorted(found.values(), key=lambda p: p[0])]
    return query


def _selected(entry: dict, when: float, query: AuditQuery) -> bool:
    return (
        (query.since is None or when >= query.since)
        and (query.team is None or entry["team"] == query.team)
        and (query.member is None or entry["member"] == query.member)
        and (query.operation is None or entry["operation"] == query.operation)
    )


def parse_record(obj: object) -> tuple[dict, float]:
    """A record and its time, checked field by field (EventError names the field)."""
    if not isinstance(obj, dict) or set(obj) != {
        "time", "team", "member", "host", "operation", "refs", "result",
    }:  # fmt: skip
        raise EventError("record", "expected the fields of an audit record")
    when = parse_time(obj["time"])
    for name in ("team", "member", "host"):
        check_text(obj[name], name)
    if obj["operation"] not in OPERATIONS:
        raise EventError("operation", f"expected one of {', '.join(OPERATIONS)}")
    refs = obj["refs"]
    if not isinstance(refs, list) or len(refs) > MAX_REFS:
        raise EventError("refs", f"expected a list of at most {MAX_REFS} strings")
    for ref in refs:
        check_text(ref, "refs", limit=1024)
    check_text(obj["result"], "result", limit=MAX_RESULT)
    return obj, when
