"""The usage analysis, exactly, on small hand-built event logs: co-occurrence, frequent
itemsets and their savings, peak hours (in a zone with DST), and the warming schedule."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from bsr_team_cache.errors import UsageError
from bsr_team_cache.team.bundles import validate_bundle_name
from bsr_team_cache.usage.analysis import (
    analyze,
    bundle_name,
    parse_timezone,
    peak_hours,
    quietest_hour,
    weekday_counts,
)
from bsr_team_cache.usage.events import UsageEvent, parse_time
from bsr_team_cache.usage.itemsets import maximal_itemsets
from bsr_team_cache.usage.log import EventLog

OLD, NEW = "1" * 32, "2" * 32
A, B, C, D = (f"buf.build/acme/{n}" for n in "abcd")


def ev(when: str, build: str, module: str, *, tier: str = "team", seconds: float = 0.2,
       commit: str = OLD, member: str = "alice", operation: str = "fetch") -> UsageEvent:  # fmt: skip
    return UsageEvent(
        time=parse_time(when),
        member=member,
        build=build,
        module=module,
        commit=commit,
        tier=tier,
        bytes=1000,
        seconds=seconds,
        team="t",
        host=f"{member}-laptop",
        fetch=f"fetch-{build}",
        operation=operation,
    )


def make_log(tmp_path: Path, events: list[UsageEvent]) -> EventLog:
    log = EventLog(tmp_path / "events.db")
    assert log.add(events) == len(events)
    return log


# Six builds. Every request comes from the team registry (0.2 s, same size: the fitted
# latency is 0.2 s) except b3's, which its local store served; b5 uses B's new commit.
# fmt: off
BUILDS = [
    ev("2026-11-02T09:00:00Z", "b1", A), ev("2026-11-02T09:00:00Z", "b1", B),
    ev("2026-11-02T09:00:00Z", "b1", C),
    ev("2026-11-02T10:00:00Z", "b2", A), ev("2026-11-02T10:00:00Z", "b2", B),
    ev("2026-11-02T11:00:00Z", "b3", A, tier="local", seconds=0.01),
    ev("2026-11-02T11:00:00Z", "b3", B, tier="local", seconds=0.01),
    ev("2026-11-02T11:00:00Z", "b3", C, tier="local", seconds=0.01),
    ev("2026-11-02T12:00:00Z", "b4", A), ev("2026-11-02T12:00:00Z", "b4", D),
    ev("2026-11-02T13:00:00Z", "b5", B, commit=NEW), ev("2026-11-02T13:00:00Z", "b5", C),
    ev("2026-11-02T14:00:00Z", "b6", D),
    # A warm run is a prefetch: it counts for nothing here.
    ev("2026-11-02T15:00:00Z", "w1", A, operation="warm"),
    ev("2026-11-02T15:00:00Z", "w1", C, operation="warm"),
]
# fmt: on


def test_co_occurrence_scores_usage_counts_and_bundle_scores(tmp_path: Path) -> None:
    log = make_log(tmp_path, BUILDS)
    report = analyze(log, team="t", min_support=0, min_builds=1)
    assert report["requests"] == 13
    assert report["builds"] == 6
    # A: b1-b4; B: b1-b3, b5; C: b1, b3, b5; D: b4, b6.
    assert report["co_occurrence"] == [
        {
            "primary_dependency": B,
            "builds": 4,
            "related_dependencies": [
                {"dependency": A, "co_occurrence_score": 0.75, "usage_count": 3},
                {"dependency": C, "co_occurrence_score": 0.75, "usage_count": 3},
            ],
            "bundle_score": 6,
        },
        {
            "primary_dependency": A,
            "builds": 4,
            "related_dependencies": [
                {"dependency": B, "co_occurrence_score": 0.75, "usage_count": 3},
                {"dependency": C, "co_occurrence_score": 0.5, "usage_count": 2},
            ],
            "bundle_score": 5,
        },
        {
            "primary_dependency": C,
            "builds": 3,
            "related_dependencies": [
                {"dependency": B, "co_occurrence_score": 1.0, "usage_count": 3},
                {"dependency": A, "co_occurrence_score": 0.6667, "usage_count": 2},
            ],
            "bundle_score": 5,
        },
        {
            "primary_dependency": D,
            "builds": 2,
            "related_dependencies": [
                {"dependency": A, "co_occurrence_score": 0.5, "usage_count": 1},
            ],
            "bundle_score": 1,
        },
    ]


def test_bundle_opportunities_are_maximal_sets_with_measured_savings(tmp_path: Path) -> None:
    log = make_log(tmp_path, BUILDS)
    report = analyze(log, team="t", min_support=0, min_builds=2)
    # Frequent (2 builds): A 4, B 4, C 3, D 2. {A, B}: all 3 (b1-b3) / any 5 = 0.6;
    # {B, C}: 3 (b1, b3, b5) / 4 = 0.75; {A, C}: 2 / 5 = 0.4 and {A, B, C}: 2 / 5 fall
    # under 0.5; D is in no pair twice.
    assert report["itemset_search"]["min_support_builds"] == 2
    assert report["itemset_search"]["complete"] is True
    # The fit takes every operation: the warm run's two requests too.
    assert report["latency_model"] == {
        "tier": "team", "latency_seconds": 0.2, "bytes_per_second": None, "samples": 12,
    }  # fmt: skip
    # {A, B}: b1 and b2 fetched both remotely (1 request saved each), b3 had both locally.
    # {B, C}: b1 and b5 (1 each). Measured: 4 remote requests of 0.2 s in each.
    ab, bc = report["bundle_opportunities"]
    assert ab == {
        "name": bundle_name([A, B]),
        "dependencies": [A, B],
        "refs": [f"{A}:{OLD}", f"{B}:{NEW}"],
        "builds": 3,
        "co_occurrence": 0.6,
        "potential_savings": {
            "requests": 2,
            "seconds": 0.4,
            "percent": 50.0,
            "text": "2 requests saved over 3 builds, 0.4 s (50% of the 0.8 s they took)",
        },
    }
    assert bc["dependencies"] == [B, C]
    assert bc["builds"] == 3
    assert bc["co_occurrence"] == 0.75
    assert bc["potential_savings"]["requests"] == 2
    assert bc["potential_savings"]["percent"] == 50.0


def test_a_set_an_existing_bundle_holds_is_no_opportunity(tmp_path: Path) -> None:
    log = make_log(tmp_path, BUILDS)
    report = analyze(log, min_support=0, min_builds=2, bundles=[{A, B, D}])
    assert [o["dependencies"] for o in report["bundle_opportunities"]] == [[B, C]]


def test_savings_without_any_team_or_bsr_request_say_so(tmp_path: Path) -> None:
    events = [
        ev(f"2026-11-02T0{i}:00:00Z", f"b{i}", m, tier="local", seconds=0.01)
        for i in range(1, 4)
        for m in (A, B)
    ]
    report = analyze(make_log(tmp_path, events), min_builds=2)
    assert report["latency_model"] is None
    [only] = report["bundle_opportunities"]
    assert only["potential_savings"] == {
        "requests": 0,
        "seconds": None,
        "percent": None,
        "text": "no request saved: in each of its 3 builds at most one of these modules came"
        " from the team registry or the BSR",
    }


def test_one_member_only(tmp_path: Path) -> None:
    events = [*BUILDS, ev("2026-11-03T09:00:00Z", "b7", A, member="bob")]
    report = analyze(make_log(tmp_path, events), member="bob", min_builds=1)
    assert (report["member"], report["requests"], report["builds"]) == ("bob", 1, 1)


def test_maximal_itemsets_merge_identical_items_and_respect_co_occurrence() -> None:
    # Transactions t0..t5: t0, t1 = abcd; t2 = abc; t3 = ab; t4 = e; t5 = ae.
    tidsets = {"a": 0b101111, "b": 0b001111, "c": 0b000111, "d": 0b000011, "e": 0b110000}
    plain = maximal_itemsets(tidsets, min_support=2)
    assert [(s.items, s.support) for s in plain.itemsets] == [(("a", "b", "c", "d"), 2)]
    together = maximal_itemsets(tidsets, min_support=2, min_co_occurrence=0.5)
    # abcd: 2 / 5 = 0.4; abc: 3 / 5 = 0.6 and bcd: 2 / 4 = 0.5 are as far as one can go.
    assert [(s.items, s.support, s.co_occurrence) for s in together.itemsets] == [
        (("a", "b", "c"), 3, 0.6),
        (("b", "c", "d"), 2, 0.5),
    ]
    assert together.complete is True


def test_a_lock_file_of_many_modules_is_one_class_not_a_search_of_its_subsets() -> None:
    # 60 modules always fetched together (one project's lock) and 3 fetched alone: 2^60
    # subsets, found in one branch.
    every = 0b1111
    tidsets = {f"m{i:02d}": every for i in range(60)} | {"x": 0b10000, "y": 0b100000}
    mined = maximal_itemsets(tidsets, min_support=2)
    assert [(len(s.items), s.support) for s in mined.itemsets] == [(60, 4)]
    assert mined.nodes == 1


def test_the_search_stops_after_its_budget_and_says_so() -> None:
    tidsets = {"a": 0b0111, "b": 0b1011, "c": 0b1101, "d": 0b1110}
    mined = maximal_itemsets(tidsets, min_support=2, max_nodes=1)
    assert (mined.nodes, mined.complete) == (1, False)
    # The first branch intersects a's 4-bit tidset with 3 others: 3 bytes.
    mined = maximal_itemsets(tidsets, min_support=2, max_work=3)
    assert (mined.nodes, mined.complete) == (1, False)
    full = maximal_itemsets(tidsets, min_support=2)
    assert full.complete is True
    assert sorted(s.items for s in full.itemsets) == [
        ("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d"),
    ]  # fmt: skip


def test_peak_hours_rule() -> None:
    hours = [0] * 24
    for h, n in {2: 1, 8: 10, 9: 40, 10: 12, 11: 10, 12: 6, 13: 10, 14: 30, 15: 12, 16: 28,
                 17: 9, 18: 4}.items():  # fmt: skip
        hours[h] = n
    # Active hours (>= 4): mean 171 / 11 = 15.55, deviation 11.07, bar 26.61.
    assert peak_hours(hours) == [9, 14, 16]
    # A shoulder above the bar is no second peak: 10 is under its neighbour 9.
    hours[10] = 35
    assert peak_hours(hours) == [9, 14]
    assert peak_hours([5] * 24) == []
    assert peak_hours([0] * 24) == []


def test_quietest_hour_and_weekday_counts() -> None:
    hours = [3] * 24
    for h in (1, 2, 3, 4, 22):
        hours[h] = 0
    assert quietest_hour(hours) == 2  # the middle of the run 01-04, the earlier middle
    hours[23] = hours[0] = 0
    assert quietest_hour(hours) == 1  # the run 22-04 wraps midnight
    assert quietest_hour([7] * 24) == 0
    # 2026-11-02 is a Monday; to 2026-11-15 (a Sunday) two of each; one more Monday.
    assert weekday_counts(date(2026, 11, 2), date(2026, 11, 16)) == [3, 2, 2, 2, 2, 2, 2]


def dst_events() -> list[UsageEvent]:
    """Europe/Berlin changes to summer time on 2026-03-29. On Friday 27 (UTC+1) and Monday
    30 (UTC+2): at 09 local, 6 builds of A and B; at 14 local, 8 builds of C; at 10, 11, 12,
    13, 15 and 16 local, 2 builds of D."""
    out = []
    for day, offset in (("2026-03-27", 1), ("2026-03-30", 2)):
        plan = [(9, 6, (A, B)), (14, 8, (C,))] + [(h, 2, (D,)) for h in (10, 11, 12, 13, 15, 16)]
        for local_hour, builds, modules in plan:
            for k in range(builds):
                when = f"{day}T{local_hour - offset:02d}:{k * 5:02d}:00Z"
                out += [ev(when, f"{day}-{local_hour}-{k}", m) for m in modules]
    return out


def test_peak_hours_in_a_zone_with_summer_time(tmp_path: Path) -> None:
    log = make_log(tmp_path, dst_events())
    report = analyze(log, team="t", timezone="Europe/Berlin")
    peaks = report["peak_hours"]
    # Local 09 holds both days' 24 requests although they were at 08 and 07 UTC.
    assert peaks["hours"] == [0] * 9 + [24, 4, 4, 4, 4, 16, 4, 4] + [0] * 7
    # Active hours: mean 64 / 8 = 8, deviation sqrt(52) = 7.21: bar 15.21.
    assert peaks["peak_hours"] == [9, 14]
    assert peaks["weekdays"] == {
        "monday": 32, "tuesday": 0, "wednesday": 0, "thursday": 0, "friday": 32,
        "saturday": 0, "sunday": 0,
    }  # fmt: skip
    # The span holds Friday to Monday: Saturday and Sunday had none; Tuesday was not seen.
    assert peaks["peak_weekdays"] == ["monday", "friday"]
    assert peaks["quietest_weekday"] == "saturday"
    assert peaks["recommendations"] == [
        "Pre-warm cache at 08:00 daily (Europe/Berlin), an hour before the first peak: peak"
        " hours 09:00, 14:00 carry 62% of demand requests",
        "Schedule maintenance during off-peak hours: 00:00 (Europe/Berlin), 0 requests in"
        " that hour against 24 in the busiest",
        "Refresh the whole cache weekly on saturday at 00:00 (Europe/Berlin): 0 requests a"
        " day against 32 on monday",
    ]
    assert report["warming_schedule"] == {
        "daily": {
            "time": "08:00",
            "timezone": "Europe/Berlin",
            # In the peak hours: C 16 requests, A and B 12 each.
            "dependencies": [f"{C}:{OLD}", f"{A}:{OLD}", f"{B}:{OLD}"],
        },
        "weekly": {
            "day": "saturday",
            "time": "00:00",  # the middle of the quiet run 17-08
            "timezone": "Europe/Berlin",
            "action": "full_cache_refresh",
        },
    }
    # In UTC the same requests peak elsewhere.
    utc = analyze(log, team="t")["peak_hours"]
    assert utc["hours"][7:9] == [12, 14]
    assert utc["peak_hours"] == [8]


def test_a_half_hour_zone(tmp_path: Path) -> None:
    # India is UTC+05:30: 03:45 UTC is 09:15 local.
    events = [ev("2026-11-02T03:45:00Z", f"b{k}", A) for k in range(3)]
    events += [ev("2026-11-02T06:00:00Z", "late", A)]  # 11:30 local
    report = analyze(make_log(tmp_path, events), timezone="Asia/Kolkata")
    hours = report["peak_hours"]["hours"]
    assert (hours[9], hours[11], sum(hours)) == (3, 1, 4)


def test_an_empty_log_has_every_key(tmp_path: Path) -> None:
    report = analyze(EventLog(tmp_path / "events.db"), team="t", timezone="Europe/Berlin")
    assert report["co_occurrence"] == []
    assert report["bundle_opportunities"] == []
    assert report["peak_hours"]["peak_hours"] == []
    assert report["peak_hours"]["quietest_weekday"] is None
    assert report["peak_hours"]["recommendations"] == []
    assert report["warming_schedule"]["daily"] == {
        "time": None, "timezone": "Europe/Berlin", "dependencies": [],
    }  # fmt: skip
    assert report["warming_schedule"]["weekly"]["day"] is None


def test_an_unknown_time_zone_is_a_usage_error() -> None:
    for name in ("Mars/Olympus", "", "../etc/passwd", "/etc/localtime"):
        with pytest.raises(UsageError, match="unknown time zone"):
            parse_timezone(name)


def test_bundle_names_are_stable_valid_and_distinct() -> None:
    name = bundle_name(["buf.build/googleapis/googleapis", "buf.build/grpc/grpc"])
    assert name == "googleapis-grpc-bundle-c41712"
    assert name == bundle_name(["buf.build/grpc/grpc", "buf.build/googleapis/googleapis"])
    assert bundle_name(["buf.build/googleapis/googleapis", "buf.build/grpc/health"]) != name
    many = bundle_name([f"buf.build/Owner_{i}/m" for i in range(5)])
    assert many == "owner-0-owner-1-owner-2-and-2-more-bundle-0740ed"
    for n in (name, many):
        assert validate_bundle_name(n) == n


def test_the_analyze_command(tmp_path: Path) -> None:
    """Events imported as JSON lines, then ``analyze --json`` and its text report, as a user
    runs them (an on-disk team registry with nothing merged yet)."""
    from bsr_team_cache.usage.synthetic import synthetic_team, write_jsonl_file
    from tests.conftest import run_cli

    team = synthetic_team(events=10_000, seed=3)
    plant = team.plant
    lines = tmp_path / "events.jsonl"
    write_jsonl_file(lines, team)
    env = {
        "BSR_TEAM_CACHE_REGISTRY": f"oci-layout:{tmp_path / 'registry'}",
        "BSR_TEAM_CACHE_TEAM": plant.team,
        "BSR_TEAM_CACHE_DIR": str(tmp_path / "store"),
        "BSR_TEAM_CACHE_MEMBER": "alice",
    }
    imported = run_cli("usage", "import", str(lines), env=env)
    assert imported.returncode == 0, imported.stderr
    args = ["--since", "2026-01-01", "--timezone", plant.timezone]
    done = run_cli("analyze", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"co_occurrence", "peak_hours", "bundle_opportunities", "warming_schedule"} <= set(
        report
    )
    # The other 400 events are the warm job's.
    assert (report["team"], report["timezone"], report["requests"]) == (
        "platform-team", "Europe/Berlin", 9600,
    )  # fmt: skip
    assert report["peak_hours"]["peak_hours"] == [9, 14, 16]
    found = [tuple(o["dependencies"]) for o in report["bundle_opportunities"]]
    assert [g for g in plant.groups if g in found] == list(plant.groups)
    assert report["warming_schedule"]["daily"]["time"] == "08:00"
    assert report["warming_schedule"]["weekly"]["action"] == "full_cache_refresh"

    member = run_cli("analyze", "--json", "--member", "alice", *args, env=env)
    assert member.returncode == 0, member.stderr
    alice = json.loads(member.stdout)
    assert alice["member"] == "alice"
    assert alice["requests"] == count_requests(lines, "alice")

    text = run_cli("analyze", *args, env=env)
    assert text.returncode == 0, text.stderr
    assert "Peak hours (Europe/Berlin): 09:00, 14:00, 16:00" in text.stdout
    assert "daily at 08:00 (Europe/Berlin):" in text.stdout

    bad = run_cli("analyze", "--timezone", "Mars/Olympus", env=env)
    assert bad.returncode == 2
    assert "Invalid value for '--timezone': unknown time zone 'Mars/Olympus'" in bad.stderr


def count_requests(lines: Path, member: str) -> int:
    """Demand requests of ``member`` in a JSON-lines file, counted without the log."""
    events = [json.loads(line) for line in lines.read_text().splitlines()]
    return sum(
        1 for e in events if e["member"] == member and e.get("operation", "fetch") == "fetch"
    )
