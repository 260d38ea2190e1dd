"""Recording what a command did, per module, into this machine's event log. Recording never
fails the command: a log that cannot be written is one warning."""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from bsr_team_cache.errors import BSRTeamCacheError
from bsr_team_cache.usage.events import (
    BUNDLE,
    TEAM,
    EventError,
    UsageEvent,
    build_id,
    check_commit,
    check_module,
    check_time,
    host_name,
    new_id,
)
from bsr_team_cache.usage.log import EventLog, open_event_log


class Served(NamedTuple):
    """One module a command asked for: which tier served it, its size and time."""

    module: str
    commit: str
    tier: str  # local, team or bsr (team with a bundle becomes the bundle tier)
    bytes: int
    seconds: float
    bundle: str = ""


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
    count the command's errors by kind. ``warnings`` gets a line if the log cannot be used."""
    env = os.environ if env is None else env
    if store_root is None or env.get(RECORD_VARIABLE, "1").lower() in ("0", "false", "no", "off"):
        return
    fetch = new_id()
    wall = max(0.0, time.time() - started)
    host = host_name(env)
    build = build_id(env, fallback=fetch)
    events = [
        UsageEvent(
            time=started,
            member=member or "unknown",
            build=build,
            module=s.module,
            commit=s.commit,
            tier=BUNDLE if s.tier == TEAM and s.bundle else s.tier,
            bytes=max(0, s.bytes),
            seconds=max(0.0, s.seconds),
            team=team,
            host=host,
            fetch=fetch,
            project=project,
            bundle=s.bundle,
            fetch_seconds=wall,
            operation=operation,
        )
        for s in served
    ]
    errors = Counter(f"errors:{error_kind(w)}" for w in warnings or ())
    if failed is not None:
        errors[f"errors:{_failure_kind(failed)}"] += 1
    try:
        with open_event_log(store_root) as log:
            log.add(events)
            if errors:
                log.bump(dict(errors))
    except (BSRTeamCacheError, sqlite3.Error, OSError) as exc:
        if warnings is not None:
            warnings.append(f"usage not recorded: {exc}")


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


def adopt_store_usage(log: EventLog, store: object, *, team: str, member: str) -> None:
    """Once: the usage rows older versions kept in the local store's index become events of
    the first team that opens the log on this machine (they named no team or member)."""
    key = "adopted-store-usage"
    if log.get_state(key) is not None:
        return
    try:
        rows = store.usage_events(0.0)  # type: ignore[attr-defined]
    except (BSRTeamCacheError, sqlite3.Error):
        rows = []
    host = host_name()
    events = []
    for row in rows:
        try:
            events.append(
                UsageEvent(
                    time=check_time(row.time),
                    member=member or "unknown",
                    build=row.fetch_id,
                    module=check_module(row.module),
                    commit=check_commit(row.commit),
                    tier=BUNDLE if row.tier == TEAM and row.bundle else row.tier,
                    bytes=max(0, int(row.bytes)),
                    seconds=max(0.0, float(row.seconds)),
                    team=team,
                    host=host,
                    fetch=row.fetch_id,
                    project=row.project,
                    bundle=row.bundle,
                )
            )
        except (EventError, TypeError, ValueError):
            continue  # a row no version could have written
    log.add(events)
    log.set_state(key, str(len(events)))
