"""Prometheus metrics of this machine's cache: what its own events say it served (requests and
bytes by tier, fetch durations), its local store, and its eviction and error counters.

Only events recorded or imported here (source ``OWN``) count: the team's merged events are on
every member's machine, so counting them would add each fetch once per machine scraped.

A scrape aggregates in SQL (no object per event) only the events added since the previous
scrape, and adds them to running totals kept in the log's state (``Totals``): the first scrape
of a large log takes seconds, the next ones milliseconds.

``exposition`` gives the text for node_exporter's textfile collector (``bsr-team-cache
metrics``); ``serve`` answers Prometheus' scrapes on ``/metrics`` (``serve-metrics``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import socketserver
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from bsr_team_cache.errors import BSRTeamCacheError, StoreError, UsageError
from bsr_team_cache.store import LocalStore
from bsr_team_cache.usage.events import FETCH, OPERATIONS, TIERS
from bsr_team_cache.usage.log import OPERATION_CODE, OWN, EventLog, open_event_log

PREFIX = "bsr_team_cache"
# Upper bounds of the fetch-duration buckets, in seconds: from a warm fetch served locally
# (tens of milliseconds) to a cold fetch of a large dependency tree (minutes).
FETCH_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
MAX_TEAMS = 50  # teams labelled at most (see _add_tier_rows)
_COMBOS = len(TIERS) * len(OPERATIONS)
# The log's state row that keeps the running totals between scrapes (see Totals).
STATE_KEY = "prometheus:totals"
STATE_VERSION = 1
ERROR_PREFIX = "errors:"
EVICTIONS = "evictions"
# One scrape at a time (the first may read the whole log); a scrape waits this long for its turn.
SCRAPE_WAIT_SECONDS = 60.0


@dataclass
class TeamTotals:
    """One team's running totals. Requests and bytes are indexed by ``tier * 4 + operation``
    (codes of TIERS and OPERATIONS); fetch buckets are cumulative counts at FETCH_BUCKETS."""

    requests: list[int] = field(default_factory=lambda: [0] * _COMBOS)
    bytes: list[float] = field(default_factory=lambda: [0.0] * _COMBOS)
    newest: float = 0.0
    fetch_buckets: list[int] = field(default_factory=lambda: [0] * len(FETCH_BUCKETS))
    fetch_count: int = 0
    fetch_sum: float = 0.0


@dataclass
class Totals:
    """This machine's own events summed through the event ``through`` (a seq of the log).

    Kept in the log's state between scrapes, so that a scrape reads only the events added
    since the last one: a GROUP BY over a million events takes seconds, over the new ones
    milliseconds. ``through_eid`` notices a log rebuilt under the same seqs (then every event
    is summed again)."""

    through: int = 0
    through_eid: int | None = None
    teams: dict[str, TeamTotals] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reports, read from the log and the store."""

    totals: Totals
    store_bytes: int
    store_entries: int
    counters: dict[str, int]


def read_snapshot(store: LocalStore, log: EventLog) -> Snapshot:
    try:
        totals = current_totals(log)
        counters = log.counters()
    except sqlite3.Error as exc:
        raise StoreError(f"usage log {log.path}: cannot read it ({exc})") from None
    stats = store.stats()
    return Snapshot(totals, stats.bytes, stats.entries, counters)


def current_totals(log: EventLog) -> Totals:
    """The totals through the newest event, from the saved ones plus the events after them
    (saved again when that added any)."""
    totals = load_totals(log)
    if add_new_events(log, totals):
        with contextlib.suppress(sqlite3.Error):
            # A log this user cannot write (or a long write lock elsewhere): the numbers are
            # right anyway, the next scrape sums again.
            log.set_state(STATE_KEY, json.dumps(_totals_json(totals), separators=(",", ":")))
    return totals


def load_totals(log: EventLog) -> Totals:
    """The saved totals if they still describe this log, else none (all events are summed)."""
    try:
        totals = _totals_from_json(json.loads(log.get_state(STATE_KEY) or "null"))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        totals = None  # damaged: counted again from the events
    if totals is None or totals.through == 0:
        return Totals()
    return totals if _eid_at(log, totals.through) == totals.through_eid else Totals()


def add_new_events(log: EventLog, totals: Totals) -> bool:
    """Add this machine's events after ``totals.through`` to ``totals``; False if none came.
    Both queries read up to the same last seq, so a fetch recorded meanwhile (one transaction
    of the log, with seqs after it) is counted whole by the next scrape."""
    last = log.db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    if last is None or last <= totals.through:
        return False
    seqs = (totals.through, last)
    _add_fetch_rows(log, totals, seqs, _add_tier_rows(log, totals, seqs))
    totals.through, totals.through_eid = last, _eid_at(log, last)
    return True


def _eid_at(log: EventLog, seq: int) -> int | None:
    row = log.db.execute("SELECT eid FROM events WHERE seq = ?", (seq,)).fetchone()
    return None if row is None else row[0]


def _add_tier_rows(log: EventLog, totals: Totals, seqs: tuple[int, int]) -> dict[int, str]:
    """Requests, bytes and newest time by team, tier and operation of the events in ``seqs``
    (after the first, through the second). Returns the ids of the teams counted -> names.

    At most MAX_TEAMS teams are kept (those seen first): a machine serves one team or a few,
    and an imported log naming thousands must not become thousands of series per scrape."""
    known = {log.string_id(name): name for name in totals.teams}
    counted: dict[int, list[tuple[int, int, float, float]]] = {}
    query = (
        "SELECT team, tier * ? + operation, COUNT(*), TOTAL(bytes), MAX(time) FROM events"
        " WHERE source = ? AND seq > ? AND seq <= ? AND tier >= 0 AND tier < ?"
        " AND operation >= 0 AND operation < ? GROUP BY team, tier, operation"
    )
    args = (len(OPERATIONS), OWN, *seqs, len(TIERS), len(OPERATIONS))
    for team_id, combo, requests, size, newest in log.db.execute(query, args):
        if team_id in known or team_id in counted or len(known) + len(counted) < MAX_TEAMS:
            counted.setdefault(team_id, []).append((combo, requests, size, newest))
    names = {**known, **log.strings(set(counted) - set(known))}
    for team_id, rows in counted.items():
        if team_id not in names:
            continue  # a team id without its string: not a log this version wrote
        team = totals.teams.setdefault(names[team_id], TeamTotals())
        for combo, requests, size, newest in rows:
            team.requests[combo] += requests
            team.bytes[combo] += size
            team.newest = max(team.newest, newest)
    return {team_id: names[team_id] for team_id in counted if team_id in names}


def _add_fetch_rows(
    log: EventLog, totals: Totals, seqs: tuple[int, int], teams: dict[int, str]
) -> None:
    """One observation per demand fetch in ``seqs``: its command's wall time (every event of a
    fetch carries it). Events without a fetch id or with an unknown time (0) are left out."""
    if not teams:
        return
    no_fetch_id = log.string_id("")
    buckets = ", ".join("SUM(s <= ?)" for _ in FETCH_BUCKETS)
    marks = ",".join("?" * len(teams))
    query = (
        f"SELECT team, COUNT(*), TOTAL(s), {buckets} FROM ("
        " SELECT team, MAX(fetch_seconds) AS s FROM events"
        " WHERE source = ? AND seq > ? AND seq <= ? AND operation = ? AND fetch != ?"
        f" AND fetch_seconds > 0 AND team IN ({marks}) GROUP BY team, fetch"
        ") GROUP BY team"
    )
    fetch_id = -1 if no_fetch_id is None else no_fetch_id
    args = (*FETCH_BUCKETS, OWN, *seqs, OPERATION_CODE[FETCH], fetch_id, *teams)
    for team_id, count, seconds, *cumulative in log.db.execute(query, args):
        team = totals.teams[teams[team_id]]
        team.fetch_buckets = [a + b for a, b in zip(team.fetch_buckets, cumulative, strict=True)]
        team.fetch_count += count
        team.fetch_sum += seconds


def _totals_json(totals: Totals) -> dict:
    return {
        "version": STATE_VERSION,
        "buckets": list(FETCH_BUCKETS),
        "through": totals.through,
        "through_eid": totals.through_eid,
        "teams": {name: asdict(team) for name, team in totals.teams.items()},
    }


def _totals_from_json(obj: object) -> Totals | None:
    """Saved totals, or None when they are missing or from another layout (other buckets)."""
    if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION:
        return None
    if obj.get("buckets") != list(FETCH_BUCKETS):
        return None
    teams: dict[str, TeamTotals] = {}
    for name, fields in obj["teams"].items():
        team = TeamTotals(**fields)
        sizes = (len(team.requests), len(team.bytes), len(team.fetch_buckets))
        numbers = [*team.requests, *team.bytes, *team.fetch_buckets, team.newest]
        numbers += [team.fetch_count, team.fetch_sum]
        if sizes != (_COMBOS, _COMBOS, len(FETCH_BUCKETS)) or not all(
            isinstance(n, int | float) and not isinstance(n, bool) for n in numbers
        ):
            return None
        teams[name] = team
    through, through_eid = obj["through"], obj["through_eid"]
    if not isinstance(through, int) or not isinstance(through_eid, int):
        return None
    return Totals(through, through_eid, teams)


# -- the collector -----------------------------------------------------------------------
class CacheCollector:
    """A prometheus_client collector: reads the store and the log at every ``collect``."""

    def __init__(self, store: LocalStore, log: EventLog) -> None:
        self.store = store
        self.log = log

    def collect(self) -> Iterator[Metric]:
        yield from families(read_snapshot(self.store, self.log))


class StoreDirCollector:
    """A collector that opens the store and the log of ``store_root`` at each scrape, in the
    thread that scrapes (SQLite connections stay in the thread that made them), and closes them
    after: a long-running server holds no connection and sees a log that was replaced."""

    def __init__(self, store_root: Path) -> None:
        self.store_root = store_root

    def collect(self) -> Iterator[Metric]:
        with LocalStore(self.store_root) as store, open_event_log(self.store_root) as log:
            snapshot = read_snapshot(store, log)
        yield from families(snapshot)


def families(snapshot: Snapshot) -> Iterator[Metric]:
    teams = sorted(snapshot.totals.teams.items())
    yield from _request_families(teams)
    yield _duration_family(teams)
    yield GaugeMetricFamily(
        f"{PREFIX}_store_bytes",
        "Bytes of module artifacts in this machine's local store.",
        value=snapshot.store_bytes,
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_store_entries",
        "Module commits in this machine's local store.",
        value=snapshot.store_entries,
    )
    yield CounterMetricFamily(
        f"{PREFIX}_evictions",
        "Module commits evicted from this machine's local store to keep it under its size.",
        value=snapshot.counters.get(EVICTIONS, 0),
    )
    errors = CounterMetricFamily(
        f"{PREFIX}_errors", "Errors this machine's commands met, by kind.", labels=["kind"]
    )
    for name, count in sorted(snapshot.counters.items()):
        if name.startswith(ERROR_PREFIX):
            errors.add_metric([name[len(ERROR_PREFIX) :]], count)
    yield errors
    last = GaugeMetricFamily(
        f"{PREFIX}_last_event_timestamp_seconds",
        "Unix time of this machine's newest usage event, by team.",
        labels=["team"],
    )
    for name, team in teams:
        last.add_metric([name], team.newest)
    yield last


def _request_families(teams: list[tuple[str, TeamTotals]]) -> Iterator[Metric]:
    labels = ["team", "tier", "operation"]
    requests = CounterMetricFamily(
        f"{PREFIX}_module_requests",
        "Module commits this machine's fetches, warms, bundle pulls and syncs asked for, by the"
        " tier that served them (local store, team registry, team bundle, or the BSR).",
        labels=labels,
    )
    sizes = CounterMetricFamily(
        f"{PREFIX}_module_bytes",
        "Bytes of the module commits this machine asked for, by the tier that served them.",
        labels=labels,
    )
    # Every tier and operation of a team from its first event on, zero until used: a series
    # that appears at its first increment would hide that increment from rate().
    for name, team in teams:
        for tier_code, tier in enumerate(TIERS):
            for operation_code, operation in enumerate(OPERATIONS):
                combo = tier_code * len(OPERATIONS) + operation_code
                requests.add_metric([name, tier, operation], team.requests[combo])
                sizes.add_metric([name, tier, operation], team.bytes[combo])
    yield requests
    yield sizes


def _duration_family(teams: list[tuple[str, TeamTotals]]) -> Metric:
    family = HistogramMetricFamily(
        f"{PREFIX}_fetch_duration_seconds",
        "Wall time of this machine's fetch commands (one observation per fetch).",
        labels=["team"],
    )
    for name, team in teams:
        buckets = [
            (floatToGoString(bound), count)
            for bound, count in zip(FETCH_BUCKETS, team.fetch_buckets, strict=True)
        ]
        buckets.append(("+Inf", team.fetch_count))
        family.add_metric([name], buckets, team.fetch_sum)
    return family


def exposition(store: LocalStore, log: EventLog) -> str:
    """The metrics in Prometheus' text format (0.0.4), as node_exporter's textfile collector
    reads them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CacheCollector(store, log))
    return generate_latest(registry).decode()


# -- the HTTP server -----------------------------------------------------------------------
class MetricsServer(ThreadingHTTPServer):
    """Serves ``/metrics`` from a registry; one thread per connection."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: int, registry: CollectorRegistry):
        self.address_family = family  # before binding: IPv4 or IPv6, as the host resolved
        self.registry = registry
        self.scrape_lock = threading.Lock()
        super().__init__(address, _MetricsHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host's name up (getfqdn, a DNS query).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self) -> str:
        host = self.server_address[0]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server_port}/metrics"


class _MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsServer
    timeout = 30  # a client that connects and sends nothing does not keep its thread
    server_version = "bsr-team-cache"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._scrape()
        elif path == "/":
            self._send(200, b"bsr-team-cache metrics are at /metrics\n")
        else:
            self._send(404, b"not found: bsr-team-cache metrics are at /metrics\n")

    def _scrape(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        if not self.server.scrape_lock.acquire(timeout=SCRAPE_WAIT_SECONDS):
            self._send(503, b"busy: another scrape is still reading the usage log\n")
            return
        try:
            body = encoder(self.server.registry)
        except BSRTeamCacheError as exc:
            # Prometheus then marks the target down (up == 0): no partial numbers.
            self.log_error("scrape failed: %s", exc)
            self._send(503, f"{exc}\n".encode())
            return
        finally:
            self.server.scrape_lock.release()
        self._send(200, body, content_type)

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Scrapes come every few seconds: only failures are logged (``log_error``)."""

    def log_message(self, format: str, *args: object) -> None:
        # A request line is the client's text: no control characters reach the terminal.
        text = "".join(c if c.isprintable() else "?" for c in format % args)
        sys.stderr.write(f"bsr-team-cache serve-metrics: {text}\n")


def bind(store_root: Path | str, host: str, port: int) -> MetricsServer:
    """A server bound to ``host:port`` (0: any free port) for the store at ``store_root``, not
    serving yet; UsageError when the address cannot be used (a busy port names the port)."""
    collector = StoreDirCollector(Path(store_root))
    # One collection now: a store or log that cannot be read fails here, not at the first
    # scrape, and the first scrape of a large log does not pay for summing all of it.
    list(collector.collect())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return MetricsServer((host, port), family, registry)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} is already in use on {host}: stop what listens there or pass"
                " another --port"
            ) from None
        raise UsageError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None


def serve(
    store_root: Path | str, host: str, port: int, ready: Callable[[str], None] = print
) -> None:
    """Serve ``/metrics`` until interrupted (KeyboardInterrupt ends it normally); ``ready`` is
    called with the URL once the port is bound."""
    with bind(store_root, host, port) as server:
        ready(server.url)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
