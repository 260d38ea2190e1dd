"""The LRU replay: hand-computed hit rates of the store model, and the prediction checked against
a real local store replaying held-out events of a synthetic team."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.oci.artifact import ModuleArtifact, encode_module
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team import fetch as fetch_path
from bsr_team_cache.usage.events import FETCH, UsageEvent
from bsr_team_cache.usage.log import EventLog
from bsr_team_cache.usage.replay import (
    FILL_BATCH,
    IDENTITY,
    SizeModel,
    fit_size_model,
    replay,
    size_model_from,
    use_stripe,
)
from bsr_team_cache.usage.synthetic import Fetch, synthetic_team

T0 = 1_790_000_000.0
_fetch_ids = itertools.count()


def module(name: str) -> str:
    return f"buf.build/acme/{name}"


def commit(name: str) -> str:
    return f"{sum(map(ord, name)):032x}"


def stripe(name: str) -> int:
    return use_stripe(module(name), commit(name))


def names_on_distinct_stripes(n: int) -> list[str]:
    """``n`` module names whose entries share no lock stripe (so only LRU order decides)."""
    chosen: list[str] = []
    for i in itertools.count():
        name = f"m{i}"
        if stripe(name) not in {stripe(c) for c in chosen}:
            chosen.append(name)
        if len(chosen) == n:
            return chosen
    raise AssertionError("unreachable")


def run(
    log: EventLog,
    t: float,
    names: list[str],
    *,
    host: str = "h1",
    operation: str = FETCH,
    tier: str = "bsr",
    size: int = 100,
) -> None:
    """One command on ``host`` at ``t`` asking for ``names``, in that order."""
    fetch = f"f{next(_fetch_ids)}"
    log.add(
        UsageEvent(
            T0 + t,
            "alice",
            fetch,
            module(n),
            commit(n),
            tier,
            size,
            0.1,
            team="t",
            host=host,
            fetch=fetch,
            operation=operation,
        )
        for n in names
    )


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog(tmp_path / "events.db")


def test_the_model_s_constants_and_stripes_are_the_store_s(tmp_path: Path) -> None:
    assert FILL_BATCH == fetch_path.FILL_BATCH
    with LocalStore(tmp_path / "s") as store:
        for name in ("pets", "grpc", "m7"):
            path = store._lock_path(parse_module_name(module(name)), commit(name), "use")
            assert path.name == f"stripe-{stripe(name):02d}.use"


def test_lru_order_decides_what_a_small_store_keeps(log: EventLog) -> None:
    a, b, c = names_on_distinct_stripes(3)
    for t, name in enumerate([a, b, a, c, b, a]):
        run(log, t, [name])
    report = replay(log, [250, 300], team="t")
    small, fits = report.results
    # 250 bytes hold two modules: a b a(hit) c(evicts b) b(evicts a) a(evicts c).
    assert (small.requests, small.hits, small.evictions) == (6, 1, 3)
    # 300 bytes hold all three: a b a(hit) c b(hit) a(hit).
    assert (fits.requests, fits.hits, fits.evictions) == (6, 3, 0)
    assert (report.unbounded.hits, report.working_set_bytes, report.hosts) == (3, 300, 1)
    assert small.hit_rate == pytest.approx(1 / 6)


def test_a_fetch_spares_entries_that_share_a_lock_stripe_with_its_modules(log: EventLog) -> None:
    x = "m0"
    y = next(f"m{i}" for i in itertools.count(1) if stripe(f"m{i}") == stripe(x))
    z = next(f"m{i}" for i in itertools.count(1) if stripe(f"m{i}") != stripe(x))
    for t, name in enumerate([x, z, y, x]):
        run(log, t, [name])
    (result,) = replay(log, [200], team="t").results
    # y's fetch holds x's stripe: z goes instead of the least recently used x, which then hits.
    assert (result.requests, result.hits, result.evictions) == (4, 1, 1)


def test_a_fetch_evicts_after_storing_and_never_its_own_modules(log: EventLog) -> None:
    a, b, c, d = names_on_distinct_stripes(4)
    run(log, 0, [a, b, c])  # 300 bytes in a 200-byte store: all three held by the fetch
    run(log, 1, [a])  # still there: a hit
    run(log, 2, [d])  # LRU order b, c, a, d: b and c go
    run(log, 3, [b])  # a miss; a goes
    (result,) = replay(log, [200], team="t").results
    assert (result.requests, result.hits, result.evictions) == (6, 1, 3)


def test_a_fetch_touches_its_hits_before_it_stores_its_misses(log: EventLog) -> None:
    a, b, c, d = names_on_distinct_stripes(4)
    run(log, 0, [a])
    run(log, 1, [b])
    run(log, 2, [c, a])  # a is touched first, then c stored: LRU order b, a, c; b goes
    run(log, 3, [d])  # a goes (in the order of the events, c would have)
    run(log, 4, [c])  # a hit
    run(log, 5, [a])  # a miss
    (result,) = replay(log, [200], team="t").results
    assert (result.requests, result.hits, result.evictions) == (7, 2, 3)


def test_prefetches_fill_the_store_but_only_fetches_count(log: EventLog) -> None:
    a, b = names_on_distinct_stripes(2)
    run(log, 0, [a, b], operation="warm")
    run(log, 1, [a], host="h2", operation="bundle")  # a bundle pull on another machine
    run(log, 2, [b], host="h2", operation="bundle")  # each put evicts at once: a goes
    run(log, 3, [a], tier="local")
    run(log, 4, [a], host="h2")
    run(log, 5, [b], host="h2", tier="local")
    report = replay(log, [150], team="t")
    (result,) = report.results
    # h1: the warm holds both (200 bytes, nothing evictable), so a hits. h2: b's put evicted
    # a, a's fetch evicts b, b's fetch evicts a: both miss (the log says b was local: the
    # store was bigger than 150 bytes there).
    assert (report.requests, report.measured_hits, report.hosts) == (3, 2, 2)
    assert (result.hits, result.evictions, report.unbounded.hits) == (1, 3, 3)


def test_requests_are_replayed_in_time_order_and_counted_from_count_since(
    log: EventLog,
) -> None:
    a, b, c = names_on_distinct_stripes(3)
    run(log, 5, [a])  # recorded first, happened last
    run(log, 0, [a])
    run(log, 1, [b])
    run(log, 2, [c])
    report = replay(log, [200], team="t")
    (result,) = report.results
    # In time order: a b c(evicts a) a(miss, evicts b).
    assert (result.requests, result.hits) == (4, 0)
    late = replay(log, [300], team="t", count_since=T0 + 5)
    assert (late.requests, late.results[0].hits) == (1, 1)  # the earlier ones warmed it up
    assert replay(log, [300], team="other").requests == 0


def test_size_model_fits_stored_bytes_from_recorded_bytes(tmp_path: Path) -> None:
    assert size_model_from([(1000, 1500), (2000, 2500), (3000, 3500)]) == SizeModel(500, 1, 3)
    assert size_model_from([(1000, 400)]) == SizeModel(0.0, 0.4, 1)
    assert size_model_from([]) == IDENTITY
    assert SizeModel(500, 0.5, 2).stored(1001) == 1001  # 500 + 500.5, rounded
    artifacts = [_artifact(f"m{i}", n, random.Random(i)) for i, n in enumerate((700, 5000))]
    with LocalStore(tmp_path / "s") as store:
        assert fit_size_model(store) == IDENTITY
        for a in artifacts:
            store.put(a)
        expected = size_model_from([(a.size, _stored(a)) for a in artifacts])
        assert fit_size_model(store) == expected
        assert expected.stored(artifacts[1].size) == _stored(artifacts[1])


def _artifact(name: str, size: int, rng: random.Random) -> ModuleArtifact:
    """A module of ``size`` bytes of incompressible content."""
    files = {f"{name}.proto": rng.randbytes(size)}
    return ModuleArtifact(
        parse_module_name(module(name)), commit(name), b5_from_contents(files), (), files, ""
    )


def _stored(artifact: ModuleArtifact) -> int:
    """What the local store counts for it: the files layer and the manifest."""
    encoded = encode_module(artifact)
    return len(encoded.layer) + len(encoded.manifest)


# -- the prediction against a real store -------------------------------------------------
DAY = 86400.0


def test_prediction_from_training_events_matches_a_real_store_on_held_out_ones(
    tmp_path: Path,
) -> None:
    """Six weeks of a synthetic team: the replay of the first four predicts the hit rate of a
    store twice the size; a real ``LocalStore`` of that size then lives through the whole log,
    its hits counted in the last two weeks. Ephemeral CI runners (one fetch on an empty store:
    all misses at any size) are left out; they would only add stores."""
    team = synthetic_team(events=12_000, days=42, members=8, ci_runners=3, seed=1)
    fetches = sorted(
        (f for f in team.fetches() if not f.host.startswith("gha-")), key=lambda f: f.time
    )
    artifacts = _synthetic_artifacts(fetches)
    log = EventLog(tmp_path / "events.db")
    # Recorded bytes equal to what the store counts: the replay's sizes are then exact.
    log.add(_events(fetches, {c: _stored(a) for c, a in artifacts.items()}))
    start = team.plant.start
    split = start + 28 * DAY
    current, larger = 125 * 1024, 250 * 1024

    training = replay(log, [current, larger], until=split, count_since=start + 7 * DAY)
    predicted = training.results[1].hit_rate
    requests, hits = _real_replay(fetches, artifacts, larger, tmp_path / "stores", split)
    held_out = replay(log, [larger], count_since=split)

    assert (held_out.requests, held_out.results[0].hits) == (requests, hits)  # exact model
    assert abs(predicted - hits / requests) <= 0.02
    # The size matters (a prediction that ignored it could not pass): twice the size gains
    # more than the tolerance, and even the larger store misses what an unbounded one keeps.
    assert predicted - training.results[0].hit_rate > 0.02
    assert hits < held_out.unbounded.hits

    # Recorded as the fetch path records them (the files' bytes), sizes come from a model
    # fitted on a real store's entries.
    files_log = EventLog(tmp_path / "files.db")
    files_log.add(_events(fetches, {c: a.size for c, a in artifacts.items()}))
    with LocalStore(tmp_path / "stores" / "ci-runner-0") as store:
        sizes = fit_size_model(store)
    fitted = replay(files_log, [larger], count_since=split, sizes=sizes)
    assert abs(fitted.results[0].hit_rate - hits / requests) <= 0.005


def _synthetic_artifacts(fetches: list[Fetch]) -> dict[str, ModuleArtifact]:
    """An artifact per commit, of incompressible files a 500th of the synthetic size (KBs)."""
    rng = random.Random(7)
    out: dict[str, ModuleArtifact] = {}
    for f in fetches:
        for name, commit_id, _, size, _, _ in f.served:
            if commit_id not in out:
                files = {"m.proto": rng.randbytes(max(512, size // 500))}
                out[commit_id] = ModuleArtifact(
                    parse_module_name(name), commit_id, b5_from_contents(files), (), files, ""
                )
    return out


def _events(fetches: list[Fetch], sizes: dict[str, int]) -> list[UsageEvent]:
    return [
        UsageEvent(
            f.time,
            f.member,
            f.build,
            name,
            commit_id,
            tier,
            sizes[commit_id],
            seconds,
            team="t",
            host=f.host,
            fetch=f.fetch,
            operation=f.operation,
        )
        for f in fetches
        for name, commit_id, tier, _, seconds, _ in f.served
    ]


def _real_replay(
    fetches: list[Fetch],
    artifacts: dict[str, ModuleArtifact],
    capacity: int,
    root: Path,
    count_since: float,
) -> tuple[int, int]:
    """Each command through its host's real store, as ``obtain`` uses it: the modules held,
    hits found in the index and touched, misses stored in batches, each batch flushed (which
    evicts above ``capacity``). Returns (requests, hits) of fetches from ``count_since``."""
    stores: dict[str, LocalStore] = {}
    requests = hits = 0
    try:
        for f in fetches:
            store = stores.get(f.host)
            if store is None:
                store = stores[f.host] = LocalStore(root / f.host, max_bytes=capacity)
            keys = [(parse_module_name(name), commit_id) for name, commit_id, *_ in f.served]
            counted = f.operation == FETCH and f.time >= count_since
            with store.using(keys), store.batch():
                present = store.indexed(keys)
                misses = []
                for name, commit_id in keys:
                    if (str(name), commit_id) in present:
                        store.touch(name, commit_id)
                    else:
                        misses.append(artifacts[commit_id])
                for start in range(0, len(misses), FILL_BATCH):
                    for artifact in misses[start : start + FILL_BATCH]:
                        store.put(artifact)
                    store.flush()
            if counted:
                requests += len(keys)
                hits += len(keys) - len(misses)
    finally:
        for store in stores.values():
            store.close()
    return requests, hits
