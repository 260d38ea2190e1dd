"""Cache-size prediction: the team's recorded requests replayed, host by host and in time order,
through a model of the local store at other sizes.

The model is the store of ``store/local.py`` as the fetch path (``team/fetch.py``) uses it:

- An entry's size is what the store counts (``stats().bytes``): its blobs on disk, the files
  layer (a compressed tar) and the manifest. Events record the module's files bytes
  (``ModuleArtifact.size``, the same for every tier); ``SizeModel`` turns one into the other,
  fitted from the entries of this machine's store.
- A use is a request: a hit touches the entry (``last_used``), a miss puts it; either way it
  becomes the most recently used.
- A fetch (or warm) holds shared "use" locks on the lock stripes of all its modules and writes
  its index rows in batches of ``FILL_BATCH`` misses. After each batch that added an entry the
  store evicts least recently used entries until it holds at most its capacity, skipping those
  whose stripe the fetch holds (its own modules, and any other sharing a stripe with one): the
  store may stay above its capacity until the next eviction.
- A bundle pull or a sync's hot-set pull puts modules one at a time, each put evicting at once
  with no lock held.
- Hits are counted for demand requests (operation ``fetch``) only; prefetches fill the store.

Rows stream from SQL in time order; each capacity is its own LRU (an ordered dict per host),
all advanced in the same pass, so memory grows with the distinct modules, not the events. (One
stack-distance pass for every size would need LRU's inclusion property, which the deferred,
lock-sparing eviction above does not have: a few sizes are simulated exactly instead.)
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.store.index import use_stripe
from bsr_team_cache.store.local import LocalStore
from bsr_team_cache.usage.events import BUNDLE_PULL, FETCH, SYNC
from bsr_team_cache.usage.log import OPERATION_CODE, TIER_CODE, EventLog

# team/fetch.py's FILL_BATCH: misses are stored, flushed and evicted in batches of this many.
FILL_BATCH = 128
# A "fetch" longer than this (only a hostile or broken log has one) is replayed in parts, so a
# single group never holds more than this many keys in memory.
MAX_GROUP = 100_000
_FETCH = OPERATION_CODE[FETCH]
# Operations that put modules one at a time (the others, fetch and warm, run the fetch path).
_ONE_BY_ONE = frozenset(OPERATION_CODE[op] for op in (BUNDLE_PULL, SYNC))
_LOCAL = TIER_CODE["local"]
_ROWS_PER_READ = 10_000
_LOW_32 = (1 << 32) - 1


@dataclass(frozen=True)
class SizeModel:
    """Stored bytes of an entry = ``overhead`` + ``ratio`` x recorded (files) bytes, fitted by
    least squares over ``samples`` entries of a store (0: no fit, the recorded size is used)."""

    overhead: float = 0.0
    ratio: float = 1.0
    samples: int = 0

    def stored(self, recorded: int) -> int:
        return max(0, int(self.overhead + self.ratio * recorded + 0.5))

    def to_json(self) -> dict:
        return {"overhead": round(self.overhead, 1), "ratio": round(self.ratio, 6),
                "samples": self.samples}  # fmt: skip


IDENTITY = SizeModel()


def fit_size_model(store: LocalStore) -> SizeModel:
    """The stored size of entries from their files bytes, over the entries of ``store``: a line
    when sizes spread, a ratio for one size, the identity for an empty store."""
    entries = store.entries()
    keys = [(parse_module_name(e.module), e.commit) for e in entries]
    files = store.indexed(keys)
    pairs = [
        (found.files_bytes, e.size)
        for e in entries
        if (found := files.get((e.module, e.commit))) is not None and found.files_bytes > 0
    ]
    return size_model_from(pairs)


def size_model_from(pairs: Sequence[tuple[int, int]]) -> SizeModel:
    """Least squares of stored = overhead + ratio x recorded over (recorded, stored) pairs."""
    n = len(pairs)
    if n == 0:
        return IDENTITY
    sx = float(sum(x for x, _ in pairs))
    sy = float(sum(y for _, y in pairs))
    sxx = float(sum(x * x for x, _ in pairs))
    sxy = float(sum(x * y for x, y in pairs))
    var_x = sxx / n - (sx / n) ** 2
    if n >= 2 and var_x > 1e-9 * max(1.0, (sx / n) ** 2):
        ratio = (sxy / n - (sx / n) * (sy / n)) / var_x
        overhead = sy / n - ratio * sx / n
        if ratio > 0 and overhead >= 0:
            return SizeModel(overhead, ratio, n)
    return SizeModel(0.0, sy / sx if sx else 1.0, n)  # through the origin


@dataclass(frozen=True)
class ReplayResult:
    capacity_bytes: int | None  # None: unbounded (nothing is ever evicted)
    requests: int  # demand requests counted (from ``count_since``)
    hits: int  # of them, found in the modelled store
    evictions: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    def to_json(self) -> dict:
        return {
            "capacity_bytes": self.capacity_bytes,
            "requests": self.requests,
            "hits": self.hits,
            "hit_rate": round(self.hit_rate, 6),
            "evictions": self.evictions,
        }


@dataclass(frozen=True)
class ReplayReport:
    requests: int  # demand requests counted (from ``count_since``)
    measured_hits: int  # of them, served by the local store as recorded
    hosts: int
    working_set_bytes: int  # the largest host's distinct modules, stored: above it, no eviction
    results: tuple[ReplayResult, ...]  # one per capacity asked, in that order
    unbounded: ReplayResult  # every miss compulsory: the best any size can do
    size_model: SizeModel = field(default=IDENTITY)

    @property
    def measured_hit_rate(self) -> float:
        return self.measured_hits / self.requests if self.requests else 0.0

    def to_json(self) -> dict:
        return {
            "requests": self.requests,
            "measured_hits": self.measured_hits,
            "measured_hit_rate": round(self.measured_hit_rate, 6),
            "hosts": self.hosts,
            "working_set_bytes": self.working_set_bytes,
            "results": [r.to_json() for r in self.results],
            "unbounded": self.unbounded.to_json(),
            "size_model": self.size_model.to_json(),
        }


class _HostStore:
    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: OrderedDict[int, None] = OrderedDict()  # least recently used first
        self.total = 0  # stored bytes


class LruStore:
    """The local stores of every host at one capacity. Keys are dense ids; ``sizes`` and
    ``stripes`` give each one's stored bytes and "use" lock stripe."""

    def __init__(self, capacity: int, sizes: list[int], stripes: list[int]) -> None:
        self.capacity = capacity
        self.sizes = sizes
        self.stripes = stripes
        self.hosts: dict[int, _HostStore] = {}
        self.requests = 0
        self.hits = 0
        self.evictions = 0

    def run(self, host: int, keys: list[int], operation: int, counted: bool) -> None:
        """One command's requests on ``host``; ``counted``: demand requests to count."""
        store = self.hosts.get(host)
        if store is None:
            store = self.hosts[host] = _HostStore()
        if operation in _ONE_BY_ONE:
            self._one_by_one(store, keys)
        else:
            self._fetch(store, keys, counted)

    def _fetch(self, store: _HostStore, keys: list[int], counted: bool) -> None:
        # As ``obtain`` does: every hit is touched first, then the misses are stored.
        entries, sizes, capacity = store.entries, self.sizes, self.capacity
        move = entries.move_to_end
        misses = []
        for key in keys:
            if key in entries:
                move(key)
            else:
                misses.append(key)
        if counted:
            self.requests += len(keys)
            self.hits += len(keys) - len(misses)
        locked: set[int] | None = None
        added = 0
        for key in misses:
            if key in entries:  # asked twice in one command: stored once
                continue
            entries[key] = None
            store.total += sizes[key]
            added += 1
            if added % FILL_BATCH == 0 and store.total > capacity:
                locked = locked or self._locked(keys)
                self._evict(store, locked)
        if added % FILL_BATCH and store.total > capacity:
            self._evict(store, locked or self._locked(keys))

    def _locked(self, keys: list[int]) -> set[int]:
        """The stripes a fetch of ``keys`` holds (``LocalStore.using``)."""
        stripes = self.stripes
        return {stripes[k] for k in keys}

    def _one_by_one(self, store: _HostStore, keys: list[int]) -> None:
        entries = store.entries
        for key in keys:
            if key in entries:  # stored again: the row is replaced, the entry most recent
                entries.move_to_end(key)
            else:
                entries[key] = None
                store.total += self.sizes[key]
            if store.total > self.capacity:
                self._evict(store, None)

    def _evict(self, store: _HostStore, locked: set[int] | None) -> None:
        """``LocalStore.evict``: least recently used first, skipping locked stripes."""
        total, capacity, sizes, stripes = store.total, self.capacity, self.sizes, self.stripes
        victims = []
        for key in store.entries:
            if total <= capacity:
                break
            if locked and stripes[key] in locked:
                continue
            victims.append(key)
            total -= sizes[key]
        for key in victims:
            del store.entries[key]
        store.total = total
        self.evictions += len(victims)

    def result(self) -> ReplayResult:
        return ReplayResult(self.capacity, self.requests, self.hits, self.evictions)


class _Unbounded:
    """Every host's store with no capacity: only compulsory misses (first requests)."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.hosts: dict[int, set[int]] = {}
        self.requests = 0
        self.hits = 0

    def run(self, host: int, keys: list[int], operation: int, counted: bool) -> None:
        seen = self.hosts.get(host)
        if seen is None:
            seen = self.hosts[host] = set()
        if counted:
            self.requests += len(keys)
            self.hits += sum(map(seen.__contains__, keys))
        seen.update(keys)

    def working_set(self) -> int:
        sizes = self.sizes
        return max((sum(sizes[k] for k in seen) for seen in self.hosts.values()), default=0)

    def result(self) -> ReplayResult:
        return ReplayResult(None, self.requests, self.hits, 0)


def replay(
    log: EventLog,
    capacities: Sequence[int],
    *,
    sizes: SizeModel = IDENTITY,
    count_since: float | None = None,
    **filters,
) -> ReplayReport:
    """Replay the log's events (``EventLog.where`` filters) through the store at each capacity
    (stored bytes), and unbounded. Requests before ``count_since`` only warm the stores up:
    with it, hit rates are those of stores that have a history, not of empty ones."""
    with _snapshot(log):  # both queries see the same events, whatever a sync adds meanwhile
        index, stored, stripes = _keys(log, sizes, **filters)
        stores = [LruStore(c, stored, stripes) for c in capacities]
        unbounded = _Unbounded(stored)
        measured = 0
        commands = _commands(log, index, count_since, **filters)
        for host, keys, operation, counted, local in commands:
            for store in stores:
                store.run(host, keys, operation, counted)
            unbounded.run(host, keys, operation, counted)
            if counted:
                measured += local
    return ReplayReport(
        requests=unbounded.requests,
        measured_hits=measured,
        hosts=len(unbounded.hosts),
        working_set_bytes=unbounded.working_set(),
        results=tuple(s.result() for s in stores),
        unbounded=unbounded.result(),
        size_model=sizes,
    )


@contextlib.contextmanager
def _snapshot(log: EventLog) -> Iterator[None]:
    """One read transaction (in WAL mode, a fixed snapshot) unless the caller has one."""
    if log.db.in_transaction:
        yield
        return
    log.db.execute("BEGIN")
    try:
        yield
    finally:
        log.db.execute("COMMIT")


def _keys(
    log: EventLog, sizes: SizeModel, **filters
) -> tuple[dict[int, int], list[int], list[int]]:
    """A dense id for every (module, commit) of the events, with its stored size (from the
    largest recorded size) and its lock stripe."""
    where, params = log.where(alias="e", **filters)
    triples = log.db.execute(
        f"SELECT DISTINCT e.module, e.commit_id, e.bytes FROM events e{where}", params
    ).fetchall()
    largest: dict[tuple[int, int], int] = {}
    for module, commit, size in triples:
        largest[module, commit] = max(size, largest.get((module, commit), 0))
    texts = log.strings({i for pair in largest for i in pair})
    index: dict[int, int] = {}
    stored: list[int] = []
    stripes: list[int] = []
    for (module, commit), size in largest.items():
        index[(module << 32) | commit] = len(index)
        stored.append(sizes.stored(size))
        stripes.append(use_stripe(texts[module], texts[commit]))
    return index, stored, stripes


def _commands(
    log: EventLog, index: dict[int, int], count_since: float | None, **filters
) -> Iterator[tuple[int, list[int], int, bool, int]]:
    """(host, dense keys, operation, counted, recorded local hits) of each command in time
    order: runs of events with one command id (the fetch id, else the build's) and host.
    ``counted``: demand requests at or after ``count_since``."""
    where, params = log.where(alias="e", **filters)
    empty = log.string_id("")
    # Two integers a row (a column costs more than arithmetic): the (module, commit) key with
    # "counted", the operation and "served locally" in its low bits; the command with its
    # host. String ids are SQLite rowids, far below the 2**27 this leaves them.
    cursor = log.db.execute(
        f"SELECT (((e.module << 32) | e.commit_id) << 4) | ((e.operation = ? AND e.time >= ?)"
        " << 3) | (e.operation << 1) | (e.tier = ?),"
        " ((CASE WHEN e.fetch = ? THEN e.build ELSE e.fetch END) << 32) | e.host"
        f" FROM events e{where} ORDER BY e.time, e.seq",
        [
            _FETCH,
            -math.inf if count_since is None else count_since,
            _LOCAL,
            -1 if empty is None else empty,
            *params,
        ],
    )
    current = -1
    keys: list[int] = []
    operation = local = 0
    counted = False
    while rows := cursor.fetchmany(_ROWS_PER_READ):
        for flagged, command in rows:
            if command != current or len(keys) >= MAX_GROUP:
                if keys:
                    yield current & _LOW_32, keys, operation, counted, local
                current, keys, local = command, [], 0
                operation, counted = (flagged >> 1) & 3, bool(flagged & 8)
            keys.append(index[flagged >> 4])
            local += flagged & 1
    if keys:
        yield current & _LOW_32, keys, operation, counted, local


def mib(capacity_bytes: int) -> float:
    return capacity_bytes / (1024 * 1024)


def whole_mib(size_bytes: int) -> int:
    """The smallest whole number of MiB holding ``size_bytes`` (team sizes are in MB)."""
    return max(1, math.ceil(mib(size_bytes)))
