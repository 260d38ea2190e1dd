"""Usage rows of older versions, which kept them in the local store's index."""

from __future__ import annotations

import sqlite3

from bsr_team_cache.errors import BSRTeamCacheError
from bsr_team_cache.usage.events import (
    BUNDLE,
    TEAM,
    EventError,
    UsageEvent,
    check_commit,
    check_module,
    check_time,
    host_name,
)
from bsr_team_cache.usage.log import EventLog


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
