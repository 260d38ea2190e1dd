"""Aggregates of the event log kept as events arrive, so that ``monitor`` reads a row per fetch
and per module commit instead of grouping a million events at every run.

  fetch_rollup    one row per fetch (per build and time for events without a fetch id): its
                  time, member, host, build, operation, requests and bytes per tier, wall time
                  and summed module times. Every event of a fetch has the fetch's start time,
                  so any time window selects whole rows exactly.
  commit_rollup   one row per module commit of a team: who asked for it first, its largest
                  recorded size.
  module_days     demand requests and bytes per module and UTC day (top modules).

The log only grows (events are never changed or removed), so each insert adds the new rows'
aggregates to what is there (``update``, from the first new ``seq`` on).
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS fetch_rollup (
    team INTEGER NOT NULL,
    fetch INTEGER NOT NULL,
    build INTEGER NOT NULL,
    time REAL NOT NULL,
    operation INTEGER NOT NULL,
    member INTEGER NOT NULL,
    host INTEGER NOT NULL,
    r0 INTEGER NOT NULL, r1 INTEGER NOT NULL, r2 INTEGER NOT NULL, r3 INTEGER NOT NULL,
    b0 INTEGER NOT NULL, b1 INTEGER NOT NULL, b2 INTEGER NOT NULL, b3 INTEGER NOT NULL,
    fetch_seconds REAL NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (team, fetch, build, time, operation)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fetch_rollup_time ON fetch_rollup (team, time);
CREATE TABLE IF NOT EXISTS commit_rollup (
    team INTEGER NOT NULL,
    module INTEGER NOT NULL,
    commit_id INTEGER NOT NULL,
    first_time REAL NOT NULL,
    first_member INTEGER NOT NULL,
    max_bytes INTEGER NOT NULL,
    PRIMARY KEY (team, module, commit_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS module_days (
    team INTEGER NOT NULL,
    module INTEGER NOT NULL,
    day INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (team, day, module)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_team_served ON events (team, time)
    WHERE operation = 0 AND tier IN (1, 2)
"""

_TIER_SUMS = ", ".join(
    [f"SUM(tier = {t})" for t in range(4)]
    + [f"TOTAL(CASE WHEN tier = {t} THEN bytes END)" for t in range(4)]
)
_ADD_COUNTS = ", ".join(
    f"{c} = {c} + excluded.{c}" for p in "rb" for c in (f"{p}{t}" for t in range(4))
)
_UPDATES = (
    # fetch_rollup
    "INSERT INTO fetch_rollup SELECT team, fetch, build, time, operation, MIN(member),"
    f" MIN(host), {_TIER_SUMS}, MAX(fetch_seconds), TOTAL(seconds) FROM events"
    " WHERE seq > ? GROUP BY team, fetch, build, time, operation"
    " ON CONFLICT (team, fetch, build, time, operation) DO UPDATE SET"
    f" {_ADD_COUNTS},"
    " fetch_seconds = MAX(fetch_seconds, excluded.fetch_seconds),"
    " seconds = seconds + excluded.seconds",
    # commit_rollup (SQLite: with MIN(), the bare column comes from the row of the minimum)
    "INSERT INTO commit_rollup SELECT team, module, commit_id, MIN(time), member, MAX(bytes)"
    " FROM events WHERE seq > ? GROUP BY team, module, commit_id"
    " ON CONFLICT (team, module, commit_id) DO UPDATE SET"
    " first_member = CASE WHEN excluded.first_time < first_time"
    " THEN excluded.first_member ELSE first_member END,"
    " first_time = MIN(first_time, excluded.first_time),"
    " max_bytes = MAX(max_bytes, excluded.max_bytes)",
    # module_days
    "INSERT INTO module_days SELECT team, module, CAST(time / 86400 AS INTEGER), COUNT(*),"
    " TOTAL(bytes) FROM events WHERE seq > ? AND operation = 0 GROUP BY 1, 2, 3"
    " ON CONFLICT (team, day, module) DO UPDATE SET requests = requests + excluded.requests,"
    " bytes = bytes + excluded.bytes",
)


def update(db: sqlite3.Connection, after_seq: int) -> None:
    """Add the events after ``after_seq`` to the aggregates (inside the caller's
    transaction)."""
    for statement in _UPDATES:
        db.execute(statement, (after_seq,))


def create(db: sqlite3.Connection) -> None:
    """The aggregates' tables, filled from every event (a log of an older schema)."""
    for statement in filter(str.strip, SCHEMA.split(";")):
        db.execute(statement)
    update(db, 0)
