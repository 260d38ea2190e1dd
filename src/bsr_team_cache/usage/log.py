"""The event log of one machine: its own events (recorded or imported) and the team's (merged
from the registry's chunks), in ``events.db`` beside the local store's index.

Strings are interned (``strings``) and tiers and operations are small codes, so a year of a
team's events stays a compact table that SQL can aggregate without Python objects per event.
Events are keyed by ``UsageEvent.event_id``: merging the same event twice counts it once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import operator
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from bsr_team_cache.errors import ConfigError, StoreError, UsageError
from bsr_team_cache.store.index import schema_in_turn
from bsr_team_cache.usage import journal, rollups
from bsr_team_cache.usage.events import (
    OPERATIONS,
    TIERS,
    EventError,
    UsageEvent,
    event_id,
    parse_event,
)

FILE_NAME = "events.db"
SCHEMA_VERSION = 3  # 2: the aggregates of rollups.py; 3: chunks seen per machine tag
OWN, MERGED = 0, 1  # source: recorded or imported here; merged from the team's chunks
TIER_CODE = {t: i for i, t in enumerate(TIERS)}
OPERATION_CODE = {o: i for i, o in enumerate(OPERATIONS)}
# Interned columns, in the order events are stored.
TEXT_COLUMNS = ("team", "member", "host", "build", "fetch", "project", "module", "commit", "bundle")
MAX_IMPORT_LINE = 64 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS strings (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    eid INTEGER NOT NULL UNIQUE,
    time REAL NOT NULL,
    team INTEGER NOT NULL,
    member INTEGER NOT NULL,
    host INTEGER NOT NULL,
    build INTEGER NOT NULL,
    fetch INTEGER NOT NULL,
    project INTEGER NOT NULL,
    module INTEGER NOT NULL,
    commit_id INTEGER NOT NULL,
    bundle INTEGER NOT NULL,
    tier INTEGER NOT NULL,
    operation INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    seconds REAL NOT NULL,
    fetch_seconds REAL NOT NULL,
    source INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS chunks (
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (tag, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""

_SELECT = (
    "SELECT e.time, m.text, b.text, mo.text, c.text, e.tier, e.bytes, e.seconds, t.text,"
    " h.text, f.text, p.text, bu.text, e.fetch_seconds, e.operation FROM events e"
    " JOIN strings t ON t.id = e.team JOIN strings m ON m.id = e.member"
    " JOIN strings h ON h.id = e.host JOIN strings b ON b.id = e.build"
    " JOIN strings f ON f.id = e.fetch JOIN strings p ON p.id = e.project"
    " JOIN strings mo ON mo.id = e.module JOIN strings c ON c.id = e.commit_id"
    " JOIN strings bu ON bu.id = e.bundle"
)


class EventColumns:
    """Events as columns: the bulk form of the log's inserts, of its reads for shipping, and of
    chunks. ``text[k]`` holds, for ``TEXT_COLUMNS[k]``, indexes into ``strings``. (A plain
    class: it is defined on every fetch's path, where a dataclass costs its compile time.)"""

    __slots__ = (
        "bytes",
        "fetch_seconds",
        "operation",
        "seconds",
        "strings",
        "text",
        "tier",
        "time",
    )  # fmt: skip

    def __init__(
        self,
        strings: list[str],
        text: list[list[int]],
        time: list[float],
        tier: list[int],  # index into TIERS
        operation: list[int],  # index into OPERATIONS
        bytes: list[int],
        seconds: list[float],
        fetch_seconds: list[float],
    ) -> None:
        self.strings = strings
        self.text = text
        self.time = time
        self.tier = tier
        self.operation = operation
        self.bytes = bytes
        self.seconds = seconds
        self.fetch_seconds = fetch_seconds

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def from_events(cls, events: Iterable[UsageEvent]) -> EventColumns:
        rows = list(map(_EVENT_ROW, events))
        if not rows:
            return cls([], [[] for _ in TEXT_COLUMNS], [], [], [], [], [], [])
        columns = list(zip(*rows, strict=True))
        texts = columns[: len(TEXT_COLUMNS)]
        index = {t: i for i, t in enumerate(dict.fromkeys(itertools.chain(*texts)))}
        times, tiers, ops, sizes, seconds, fetch_seconds = columns[len(TEXT_COLUMNS) :]
        return cls(
            list(index),
            [list(map(index.__getitem__, column)) for column in texts],
            list(times),
            list(map(TIER_CODE.__getitem__, tiers)),
            list(map(OPERATION_CODE.__getitem__, ops)),
            list(sizes),
            list(seconds),
            list(fetch_seconds),
        )

    def _rows(self) -> Iterator[tuple]:
        return zip(
            self.time, *self.text, self.tier, self.operation, self.bytes, self.seconds,
            self.fetch_seconds, strict=True,
        )  # fmt: skip

    def events(self) -> list[UsageEvent]:
        s = self.strings
        out = []
        for row in self._rows():
            t, team, member, host, build, fetch, project, module, commit, bundle = row[:10]
            tier, op, size, seconds, fetch_seconds = row[10:]
            event = UsageEvent(
                t, s[member], s[build], s[module], s[commit], TIERS[tier], size, seconds,
                s[team], s[host], s[fetch], s[project], s[bundle], fetch_seconds, OPERATIONS[op],
            )  # fmt: skip
            out.append(event)
        return out

    def event_ids(self) -> list[int]:
        s = self.strings
        out = []
        for row in self._rows():
            t, _, member, host, build, fetch, _, module, commit, _, tier, op = row[:12]
            eid = event_id(
                t, s[member], s[host], s[build], s[fetch], s[module], s[commit], TIERS[tier],
                OPERATIONS[op],
            )  # fmt: skip
            out.append(eid)
        return out

    def select(self, keep: list[int]) -> EventColumns:
        """The events at positions ``keep``, in that order."""
        pick = operator.itemgetter(*keep) if len(keep) > 1 else None

        def take(column: list) -> list:
            if not keep:
                return []
            return list(pick(column)) if pick else [column[keep[0]]]

        return EventColumns(
            self.strings,
            [take(c) for c in self.text],
            take(self.time),
            take(self.tier),
            take(self.operation),
            take(self.bytes),
            take(self.seconds),
            take(self.fetch_seconds),
        )


_EVENT_ROW = operator.attrgetter(
    *TEXT_COLUMNS[:7], "commit", "bundle", "time", "tier", "operation", "bytes", "seconds",
    "fetch_seconds",
)  # fmt: skip


class EventLog:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._ids: dict[str, int] = {}
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA synchronous=NORMAL")
            lock = self.path.with_name(self.path.name + ".lock")
            schema_in_turn(self.db, lock, SCHEMA_VERSION, self._create)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"usage log {self.path}: cannot use it ({exc}); remove it to start a new one"
                " (the team's events come back at the next sync)"
            ) from None

    def _create(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"usage log {self.path}: schema {version} is newer than this version understands"
                f" ({SCHEMA_VERSION}); upgrade bsr-team-cache"
            )
        with self.transaction():
            if version in (1, 2):
                # Chunks were remembered by digest alone: forget them, merge them again (the
                # events are keyed, so nothing counts twice).
                self.db.execute("DROP TABLE chunks")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self.db.execute(statement)
            if version < 2:
                rollups.create(self.db)  # from the events there are
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- strings ---------------------------------------------------------------------------
    def intern(self, texts: Iterable[str]) -> dict[str, int]:
        """Ids of ``texts``, adding those not seen yet (inside the caller's transaction)."""
        wanted = set(texts) - self._ids.keys()
        if wanted:
            rows = [(t,) for t in wanted]
            self.db.executemany("INSERT OR IGNORE INTO strings (text) VALUES (?)", rows)
            for start in range(0, len(rows), 500):
                part = [t for (t,) in rows[start : start + 500]]
                marks = ",".join("?" * len(part))
                self._ids.update(
                    self.db.execute(
                        f"SELECT text, id FROM strings WHERE text IN ({marks})", part
                    ).fetchall()
                )
        return self._ids

    def string_id(self, text: str) -> int | None:
        """The id of ``text`` if any event names it (for filters), else None."""
        if text in self._ids:
            return self._ids[text]
        row = self.db.execute("SELECT id FROM strings WHERE text = ?", (text,)).fetchone()
        return None if row is None else row[0]

    def strings(self, ids: Iterable[int]) -> dict[int, str]:
        wanted = list(set(ids))
        out: dict[int, str] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            out.update(self.db.execute(f"SELECT id, text FROM strings WHERE id IN ({marks})", part))
        return out

    # -- events ----------------------------------------------------------------------------
    def add(self, events: Iterable[UsageEvent], source: int = OWN) -> int:
        """Add events (validated already); those the log has are skipped. Returns how many
        were new."""
        return self.add_columns(EventColumns.from_events(events), source)

    def add_columns(self, columns: EventColumns, source: int = OWN) -> int:
        if not len(columns):
            return 0
        eids = columns.event_ids()
        with self.transaction():
            ids = self.intern(columns.strings)
            local = [ids[text] for text in columns.strings]
            (last_seq,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO events (eid, time, team, member, host, build, fetch,"
                " project, module, commit_id, bundle, tier, operation, bytes, seconds,"
                " fetch_seconds, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                zip(
                    eids,
                    columns.time,
                    *(map(local.__getitem__, column) for column in columns.text),
                    columns.tier,
                    columns.operation,
                    columns.bytes,
                    columns.seconds,
                    columns.fetch_seconds,
                    itertools.repeat(source),
                ),
            )
            added = self.db.total_changes - before
            if added:
                rollups.update(self.db, last_seq)
            return added

    def module_names(self, *, team: str | None = None) -> set[str]:
        """Every module the selected events name."""
        where, params = self.where(team=team)
        ids = [
            row[0] for row in self.db.execute(f"SELECT DISTINCT module FROM events{where}", params)
        ]
        return set(self.strings(ids).values())

    def where(
        self,
        *,
        team: str | None = None,
        member: str | None = None,
        since: float | None = None,
        until: float | None = None,
        source: int | None = None,
        alias: str = "",
    ) -> tuple[str, list]:
        """A WHERE clause (with its parameters) selecting events, for the queries of metrics
        and analysis. A team or member no event names selects nothing."""
        col = f"{alias}." if alias else ""
        clauses: list[str] = []
        params: list = []
        for name, value in (("team", team), ("member", member)):
            if value is not None:
                clauses.append(f"{col}{name} = ?")
                params.append(self.string_id(value) or -1)
        if since is not None:
            clauses.append(f"{col}time >= ?")
            params.append(since)
        if until is not None:
            clauses.append(f"{col}time < ?")
            params.append(until)
        if source is not None:
            clauses.append(f"{col}source = ?")
            params.append(source)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def events(self, **filters) -> Iterator[UsageEvent]:
        """Events in time order (``where``'s filters), as objects: for export and small logs;
        metrics and analysis aggregate in SQL instead."""
        where, params = self.where(alias="e", **filters)
        cursor = self.db.execute(f"{_SELECT}{where} ORDER BY e.time, e.seq", params)
        return map(_row_event, cursor)

    def count(self, **filters) -> int:
        where, params = self.where(**filters)
        return self.db.execute(f"SELECT COUNT(*) FROM events{where}", params).fetchone()[0]

    def own_after(self, seq: int, limit: int, *, team: str) -> tuple[EventColumns, int]:
        """This machine's events of ``team`` (recorded or imported) after ``seq``, at most
        ``limit``, and the last seq among them (to ship them in order, resuming where a sync
        stopped)."""
        rows = self.db.execute(
            "SELECT seq, time, team, member, host, build, fetch, project, module, commit_id,"
            " bundle, tier, operation, bytes, seconds, fetch_seconds FROM events"
            " WHERE source = ? AND team = ? AND seq > ? ORDER BY seq LIMIT ?",
            (OWN, self.string_id(team), seq, limit),
        ).fetchall()
        if not rows:
            return EventColumns.from_events([]), seq
        columns = list(zip(*rows, strict=True))
        texts = columns[2:11]
        used = sorted(set(itertools.chain(*texts)))
        names = self.strings(used)
        index = {string_id: i for i, string_id in enumerate(used)}
        return EventColumns(
            [names[i] for i in used],
            [list(map(index.__getitem__, column)) for column in texts],
            *(list(column) for column in columns[1:2]),
            *(list(column) for column in columns[11:]),
        ), rows[-1][0]

    # -- state: watermarks, chunks seen --------------------------------------------------
    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_state(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))

    def bump(self, counts: dict[str, int]) -> None:
        """Add to this machine's counters (evictions, errors by kind): totals since the log
        began, for Prometheus counters."""
        with self.transaction():
            for name, n in counts.items():
                self.db.execute(
                    "INSERT INTO state VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                    " value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)",
                    (f"counter:{name}", str(n)),
                )

    def counters(self) -> dict[str, int]:
        rows = self.db.execute("SELECT key, value FROM state WHERE key LIKE 'counter:%'")
        return {key[len("counter:") :]: int(value) for key, value in rows}

    def seen_chunks(self) -> set[tuple[str, str]]:
        """(machine tag, chunk digest) of every chunk merged (or found bad) so far."""
        return {(tag, digest) for tag, digest in self.db.execute("SELECT tag, digest FROM chunks")}

    def mark_chunks(self, tag: str, chunks: Iterable[tuple[str, int]]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO chunks VALUES (?, ?, ?)", [(tag, d, n) for d, n in chunks]
        )


def _row_event(r: tuple) -> UsageEvent:
    """An event from a row of ``_SELECT``."""
    return UsageEvent(
        r[0], r[1], r[2], r[3], r[4], TIERS[r[5]], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
        r[13], OPERATIONS[r[14]],
    )  # fmt: skip


def open_event_log(store_root: Path | str) -> EventLog:
    """The log of the store at ``store_root``, with what commands recorded since its last
    reader moved in."""
    log = EventLog(Path(store_root) / FILE_NAME)
    try:
        ingest_journal(log, Path(store_root))
    except OSError as exc:
        log.close()
        raise StoreError(f"usage journal in {store_root}: {exc.strerror or exc}") from None
    return log


INGEST_BATCH = 50_000
_COUNTER = re.compile(r"[a-z_]{1,32}(:[a-z_]{1,32})?")


def ingest_journal(log: EventLog, root: Path) -> int:
    """Move the journal's events and counters into the log; returns how many events were new.
    A line that is not a valid event or counter (a damaged file) is counted as
    ``errors:journal`` and skipped."""
    added, bad = 0, 0
    counters: dict[str, int] = {}
    with journal.draining(root) as claimed:
        batch: list[UsageEvent] = []
        for path in claimed:
            for line in journal.lines(path):
                try:
                    obj = json.loads(line)
                    if isinstance(obj, dict) and "counter" in obj:
                        name, n = obj["counter"], obj.get("n")
                        if (
                            not isinstance(name, str)
                            or not _COUNTER.fullmatch(name)
                            or type(n) is not int
                            or not 0 <= n <= 1 << 40
                        ):
                            raise EventError("counter", "expected a name and a count")
                        counters[name] = counters.get(name, 0) + n
                        continue
                    batch.append(parse_event(obj))
                except (ValueError, RecursionError, EventError):
                    bad += 1
                if len(batch) >= INGEST_BATCH:
                    added += log.add(batch)
                    batch = []
        added += log.add(batch)
        if bad:
            counters["errors:journal"] = counters.get("errors:journal", 0) + bad
        if counters:
            log.bump(counters)
    return added


# -- JSON lines ----------------------------------------------------------------------------
def write_jsonl(events: Iterable[UsageEvent], out: IO[str]) -> int:
    n = 0
    for event in events:
        out.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
        n += 1
    return n


def read_jsonl(path: Path) -> list[UsageEvent]:
    """Every event of a JSON-lines file, or a ConfigError naming the first bad line and field
    (then nothing is imported). Blank lines are skipped."""
    events: list[UsageEvent] = []
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                if len(raw) > MAX_IMPORT_LINE:
                    raise ConfigError(path, "line longer than 64 KiB", line=number)
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                    raise ConfigError(path, f"not JSON ({exc})", line=number) from None
                try:
                    events.append(parse_event(obj))
                except EventError as exc:
                    raise ConfigError(
                        path,
                        exc.args[0],
                        line=number,
                        hint="each line is one event of docs/usage-events.md",
                    ) from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a JSON-lines file") from None
    return events
