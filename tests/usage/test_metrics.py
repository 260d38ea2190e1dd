"""Every metric of docs/metrics.md, exactly, on a small hand-built event log."""

from __future__ import annotations

from pathlib import Path

import pytest

from bsr_team_cache.usage.events import UsageEvent, parse_time
from bsr_team_cache.usage.log import EventLog, open_event_log
from bsr_team_cache.usage.metrics import compute, dashboard_lines, top_commits

C1, C2, C3, C4 = ("1" * 32, "2" * 32, "3" * 32, "4" * 32)
PETS, GRPC, API, OTHER = (f"buf.build/acme/{n}" for n in ("pets", "grpc", "api", "other"))


def ev(when: str, member: str, host: str, build: str, module: str, commit: str, tier: str,
       size: int, seconds: float, fetch_seconds: float, *, bundle: str = "",
       operation: str = "fetch") -> UsageEvent:  # fmt: skip
    return UsageEvent(
        time=parse_time(when),
        member=member,
        build=build,
        module=module,
        commit=commit,
        tier=tier,
        bytes=size,
        seconds=seconds,
        team="t",
        host=host,
        fetch=f"fetch-{build}",
        bundle=bundle,
        fetch_seconds=fetch_seconds,
        operation=operation,
    )


# fmt: off
EVENTS = [
    # b1: alice's first build downloads pets and grpc from the BSR.
    ev("2026-11-10T09:00:00Z", "alice", "h1", "b1", PETS, C1, "bsr", 1000, 1.2, 3.0),
    ev("2026-11-10T09:00:00Z", "alice", "h1", "b1", GRPC, C2, "bsr", 3000, 1.8, 3.0),
    # b2: bob on another machine gets them from the team registry (grpc in a bundle).
    ev("2026-11-11T14:00:00Z", "bob", "h2", "b2", PETS, C1, "team", 1000, 0.2, 0.5),
    ev("2026-11-11T14:00:00Z", "bob", "h2", "b2", GRPC, C2, "bundle", 3000, 0.25, 0.5,
       bundle="shop:v1"),
    # b3: alice again: her local store.
    ev("2026-11-12T09:30:00Z", "alice", "h1", "b3", PETS, C1, "local", 1000, 0.01, 0.1),
    ev("2026-11-12T09:30:00Z", "alice", "h1", "b3", GRPC, C2, "local", 3000, 0.02, 0.1),
    # b4: bob's laptop downloads api; b5: bob's other machine gets it from the team.
    ev("2026-11-18T16:00:00Z", "bob", "h3", "b4", API, C3, "bsr", 2000, 1.5, 1.0),
    ev("2026-11-19T09:10:00Z", "bob", "h2", "b5", API, C3, "team", 2000, 0.3, 0.3),
    # A warm: a download, but not a build's demand.
    ev("2026-11-20T08:00:00Z", "carol", "h4", "w1", OTHER, C4, "bsr", 5000, 2.0, 2.0,
       operation="warm"),
]
# fmt: on
UNTIL = parse_time("2026-11-26T00:00:00Z")


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    log = open_event_log(tmp_path)
    assert log.add(EVENTS) == len(EVENTS)
    return log


def bsr_fit() -> tuple[float, float]:
    """Least squares of wall time on bytes over the three fetches the BSR served entirely
    (b1: pets + grpc, b4: api, w1: other), by hand."""
    xs, ys = [4000, 2000, 5000], [3.0, 1.0, 2.0]
    mx, my = sum(xs) / 3, sum(ys) / 3
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))  # 2000
    sxx = sum((x - mx) ** 2 for x in xs)  # 4,666,666.67
    slope = sxy / sxx  # 3/7000 s per byte
    return my - slope * mx, slope  # 3/7 s per fetch


def test_rates_bandwidth_and_counts(log: EventLog) -> None:
    r = compute(log, team="t", until=UNTIL, store_bytes={"m1": 4000, "m2": 7000})
    assert r["requests"] == 8 and r["fetches"] == 5 and r["builds"] == 5 and r["hosts"] == 3
    assert r["members"] == ["alice", "bob", "carol"]
    assert r["tiers"] == {
        "local": {"requests": 2, "bytes": 4000},
        "team": {"requests": 2, "bytes": 3000},
        "bundle": {"requests": 1, "bytes": 3000},
        "bsr": {"requests": 3, "bytes": 6000},
    }
    assert r["hit_rate"] == 5 / 8
    assert r["team_hit_rate"] == 3 / 6
    assert r["bundle_usage_rate"] == 1 / 3
    assert r["bandwidth_saved_bytes"] == 10_000
    assert r["team_bandwidth_saved_bytes"] == 6000
    # Team-served: pets (alice asked first), grpc (alice first), api for bob (bob first).
    assert r["shared_cache_efficiency"] == 2 / 3
    # The registry holds pets, grpc, api and other at their sizes; the stores 4000 + 7000.
    assert r["storage"] == {
        "registry_bytes": 11_000,
        "member_store_bytes": 11_000,
        "machines": 2,
        "ratio": 1.0,
    }
    assert r["top_modules"] == [
        {"module": GRPC, "requests": 3, "bytes": 9000},
        {"module": PETS, "requests": 3, "bytes": 3000},
        {"module": API, "requests": 2, "bytes": 4000},
    ]


def test_build_time_improvement_from_the_fitted_bsr_model(log: EventLog) -> None:
    r = compute(log, team="t", until=UNTIL)
    latency, slope = bsr_fit()
    assert (latency, slope) == (pytest.approx(3 / 7), pytest.approx(3 / 7000))
    assert r["build_time"]["model"] == {
        "latency_seconds": round(3 / 7, 6),
        "bytes_per_second": round(7000 / 3),
        "samples": 3,
    }
    estimated = 5 * latency + 16_000 * slope  # the 5 fetches from the BSR, of 16,000 bytes
    measured = 3.0 + 0.5 + 0.1 + 1.0 + 0.3  # the five fetches' wall times
    assert r["build_time"]["measured_seconds"] == pytest.approx(measured)
    assert r["build_time"]["estimated_bsr_seconds"] == pytest.approx(estimated)
    assert r["build_time_improvement"] == pytest.approx(1 - measured / estimated)


def test_trends_by_day_and_week(log: EventLog) -> None:
    trends = compute(log, team="t", until=UNTIL)["trends"]
    days = [(d["period"], d["requests"], d["hit_rate"]) for d in trends["daily"]]
    assert days == [
        ("2026-11-10", 2, 0.0),
        ("2026-11-11", 2, 1.0),
        ("2026-11-12", 2, 1.0),
        ("2026-11-18", 1, 0.0),
        ("2026-11-19", 1, 1.0),
    ]
    weeks = [(w["period"], w["requests"], w["tiers"]) for w in trends["weekly"]]
    assert weeks == [
        ("2026-W46", 6, {"local": 2, "team": 1, "bundle": 1, "bsr": 2}),
        ("2026-W47", 2, {"local": 0, "team": 1, "bundle": 0, "bsr": 1}),
    ]
    # Last 7 days (Nov 19-25): b5 only; the 7 before (Nov 12-18): b3 and b4.
    changes = trends["changes"]
    assert changes["hit_rate"] == {"current": 1.0, "previous": 2 / 3, "change": 1 - 2 / 3}
    assert changes["bundle_usage_rate"] == {"current": 0.0, "previous": None, "change": None}
    assert changes["mean_fetch_seconds"]["current"] == pytest.approx(0.3)
    assert changes["mean_fetch_seconds"]["previous"] == pytest.approx(0.55)
    assert changes["mean_fetch_seconds"]["change"] == pytest.approx(-0.25)


def test_one_member_and_a_window(log: EventLog) -> None:
    bob = compute(log, team="t", member="bob", until=UNTIL)
    assert bob["requests"] == 4 and bob["members"] == ["bob"]
    assert bob["hit_rate"] == 3 / 4 and bob["team_hit_rate"] == 3 / 4
    late = compute(log, team="t", since=parse_time("2026-11-18T00:00:00Z"), until=UNTIL)
    assert late["requests"] == 2 and late["hit_rate"] == 1 / 2
    nobody = compute(log, team="t", member="zed", until=UNTIL)
    assert nobody["requests"] == 0 and nobody["hit_rate"] is None
    assert compute(log, team="other-team", until=UNTIL)["requests"] == 0


def test_heatmap_and_dashboard_lines(log: EventLog) -> None:
    r = compute(log, team="t", until=UNTIL, timezone="Europe/Berlin")
    grid = r["peak_hours"]["heatmap"]
    assert grid[1][10] == 2  # Tuesday 09:00 UTC is 10:00 in Berlin (CET)
    assert grid[3][10] == 2 + 1  # Thursdays 09:30 and 09:10 UTC
    assert sum(map(sum, grid)) == 8
    lines = dashboard_lines(r)
    assert lines[:2] == ["Cache Performance for team t:", "  Hit Rate: 62.5%"]
    assert lines[3:6] == [
        "  Bandwidth Saved: 0.0MB",
        "  Shared Cache Efficiency: 66.7%",
        "  Bundle Usage Rate: 33.3%",
    ]
    assert "  📈 Hit rate improved 33.3 points this week" in lines
    assert "  ⚡ Average fetch time down 0.25 seconds" in lines


def test_hot_set_is_the_most_requested_commits(log: EventLog) -> None:
    since = parse_time("2026-11-01T00:00:00Z")
    assert top_commits(log, team="t", limit=2, since=since) == [(GRPC, C2), (PETS, C1)]


def test_the_aggregates_agree_with_the_events_for_any_window(tmp_path: Path) -> None:
    """monitor reads per-fetch and per-day aggregates; on a synthetic team, with windows
    that cut days and hours anywhere, every figure equals one computed from the events."""
    from collections import Counter

    from bsr_team_cache.usage.synthetic import synthetic_team, write_log

    team = synthetic_team(events=6000, days=21, members=6, ci_runners=2)
    log = open_event_log(tmp_path)
    write_log(log, team)
    events = list(log.events())
    start = team.scenario.start
    for since, until in ((start + 3.3 * 86400, start + 17.71 * 86400), (start - 1, start + 99e3)):
        r = compute(log, team="platform-team", since=since, until=until)
        demand = [e for e in events if since <= e.time < until and e.operation == "fetch"]
        assert r["requests"] == len(demand)
        assert {t: v["requests"] for t, v in r["tiers"].items()} == {
            t: sum(1 for e in demand if e.tier == t) for t in ("local", "team", "bundle", "bsr")
        }
        assert r["fetches"] == len({e.fetch for e in demand})
        assert r["hosts"] == len({e.host for e in demand})
        assert r["bandwidth_saved_bytes"] == sum(e.bytes for e in demand if e.tier != "bsr")
        per_module = Counter(e.module for e in demand)
        top = sorted(per_module, key=lambda m: (-per_module[m], m))[:10]
        assert [(m["module"], m["requests"]) for m in r["top_modules"]] == [
            (m, per_module[m]) for m in top
        ]
        first: dict = {}
        for e in sorted(events, key=lambda e: e.time):
            first.setdefault((e.module, e.commit), e.member)
        served = [e for e in demand if e.tier in ("team", "bundle")]
        shared = sum(1 for e in served if first[(e.module, e.commit)] != e.member)
        assert r["shared_cache_efficiency"] == (shared / len(served) if served else None)
        assert sum(map(sum, r["peak_hours"]["heatmap"])) == len(demand)


def test_a_log_of_the_first_schema_gets_its_aggregates(tmp_path: Path) -> None:
    log = open_event_log(tmp_path)
    log.add(EVENTS)
    expected = compute(log, team="t", until=UNTIL)
    for table in ("fetch_rollup", "commit_rollup", "module_days"):
        log.db.execute(f"DROP TABLE {table}")
    log.db.execute("PRAGMA user_version=1")
    log.close()
    assert compute(open_event_log(tmp_path), team="t", until=UNTIL) == expected
