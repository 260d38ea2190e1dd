"""Recording what a command did, per module, into this machine's event log. Recording never
fails the command: a log that cannot be written is one warning."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from bsr_team_cache.usage.events import (
    BSR,
    BUNDLE,
    LOCAL,
    TEAM,
    UsageEvent,
    build_id,
    host_name,
    new_id,
)
from bsr_team_cache.usage.journal import append


class Served(NamedTuple):
    """One module a command asked for: which tier served it, its size and time."""

    module: str
    commit: str
    tier: str  # local, team or bsr (team with a bundle becomes the bundle tier)
    bytes: int
    seconds: float
    bundle: str = ""


# The fields each module's event has of its own (the others are the command's).
_PER_MODULE = ("module", "commit", "tier", "bytes", "seconds", "bundle")
# Set to 0 to record nothing (a machine whose usage the team should not see).
RECORD_VARIABLE = "BSR_TEAM_CACHE_RECORD_USAGE"

# Where a warning's text says it came from -> the kind of error it counts as.
_KINDS = (
    ("team registry", "registry"),
    ("BSR:", "bsr_warning"),
    ("the BSR", "bsr"),
    ("local store", "store"),
    ("digest", "integrity"),
    ("buf cache", "buf_cache"),
)


def error_kind(text: str) -> str:
    for marker, kind in _KINDS:
        if marker in text:
            return kind
    return "other"


def record(
    store_root: Path | None,
    served: Iterable[Served],
    *,
    team: str,
    member: str,
    operation: str,
    started: float,
    project: str = "",
    warnings: list[str] | None = None,
    failed: BaseException | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Append one event per module (all with this command's build, fetch id and wall time) and
    count the command's errors by kind, in the journal (moved into the log by its next
    reader). ``warnings`` gets a line if the journal cannot be written."""
    env = os.environ if env is None else env
    if store_root is None or env.get(RECORD_VARIABLE, "1").lower() in ("0", "false", "no", "off"):
        return
    fetch = new_id()
    wall = max(0.0, time.time() - started)
    host = host_name(env)
    build = build_id(env, fallback=fetch)
    # What every event of this command shares, encoded once (this runs on every fetch).
    common = UsageEvent(
        started, member or "unknown", build, "", "", "", 0, 0.0, team, host, fetch, project,
        "", wall, operation,
    ).to_json()  # fmt: skip
    shared = json.dumps(
        {k: v for k, v in common.items() if k not in _PER_MODULE}, separators=(",", ":")
    )[1:]
    lines = []
    for s in served:
        tier = BUNDLE if s.tier == TEAM and s.bundle else s.tier
        own = {
            "module": s.module,
            "commit": s.commit,
            "tier": tier,
            "bytes": max(0, s.bytes),
            "seconds": round(max(0.0, s.seconds), 6),
        }
        if s.bundle:
            own["bundle"] = s.bundle
        lines.append(json.dumps(own, separators=(",", ":"))[:-1] + "," + shared)
    errors = Counter(f"errors:{error_kind(w)}" for w in warnings or ())
    if failed is not None:
        errors[f"errors:{_failure_kind(failed)}"] += 1
    lines += [json.dumps({"counter": name, "n": n}) for name, n in sorted(errors.items())]
    try:
        append(Path(store_root), lines)
    except OSError as exc:
        if warnings is not None:
            warnings.append(f"usage not recorded: {exc.strerror or exc}")


# The tiers a fetch reports, in its summary's order (a bundle is the team tier there).
FETCH_TIERS = (LOCAL, TEAM, BSR)


class ModuleResult(NamedTuple):
    """A module a command obtained, as its report lists it. (A NamedTuple: every fetch makes
    them, and one that finds every module in place, placed.py, loads no dataclass.)"""

    name: str
    commit: str
    tier: str
    bytes: int
    seconds: float
    published: bool = False
    bundle: str = ""  # "<name>:<version>" when the module came in a bundle
    digest: str = ""  # the digest buf.lock pins (b5, or b4 for v1 locks)


# A command's usage operation -> its audit operation (sync records itself as a whole).
_AUDITED = {"fetch": "fetch", "warm": "warm", "bundle": "bundle-pull"}


def record_modules(
    store_root: Path,
    modules: list[ModuleResult],
    warnings: list[str],
    started: float,
    *,
    team: str,
    member: str,
    operation: str,
    project: str = "",
    failed: BaseException | None = None,
) -> None:
    """Usage events of what each module came from, and the audit records of the command (and
    of the BSR downloads it published); never fails the command (``warnings`` gets a line)."""
    from bsr_team_cache.audit.log import record as audit

    record(
        store_root,
        [Served(m.name, m.commit, m.tier, m.bytes, m.seconds, m.bundle) for m in modules],
        team=team,
        member=member,
        operation=operation,
        started=started,
        project=project,
        warnings=warnings,
        failed=failed,
    )
    if operation not in _AUDITED:
        return
    refs = [f"{m.name}:{m.commit}" + (f"@{m.digest}" if m.digest else "") for m in modules]
    result = "ok" if failed is None else f"error: {failed}"
    audit(store_root, team=team, member=member, operation=_AUDITED[operation], refs=refs,
          result=result, warnings=warnings, when=started)  # fmt: skip
    published = [ref for ref, m in zip(refs, modules, strict=True) if m.published]
    if published:
        audit(store_root, team=team, member=member, operation="publish", refs=published,
              warnings=warnings, when=started)  # fmt: skip


def _failure_kind(exc: BaseException) -> str:
    name = type(exc).__name__
    return {
        "DigestMismatchError": "integrity",
        "InvalidContentError": "integrity",
        "UnavailableError": "bsr",
        "RegistryError": "registry",
        "StoreError": "store",
        "ConfigError": "config",
    }.get(name, "other")
