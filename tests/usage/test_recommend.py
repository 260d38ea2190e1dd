"""Recommendations from the team's events: each rule on a hand-built log, with the figures its
expected improvement must quote; the document's text format; priorities. The rules take plain
inputs (the log, the team, this machine's store, the team's settings); the command runs them
through the team layer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.oci.artifact import ModuleArtifact
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.config import BundleRecord, TeamConfig, make_config
from bsr_team_cache.usage.analysis import analyze
from bsr_team_cache.usage.events import UsageEvent
from bsr_team_cache.usage.log import EventLog, open_event_log
from bsr_team_cache.usage.recommend import (
    Advice,
    Recommendation,
    advise,
    auto_bundle_candidates,
    format_recommendations,
    priority,
)

DAY = 86400.0
DAY0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z, a Monday
NOW = DAY0 + 20 * DAY
MIB = 1024 * 1024


def module(name: str) -> str:
    return f"buf.build/acme/{name}"


def commit(name: str) -> str:
    return f"{sum(map(ord, name)):032x}"


def ref(name: str) -> str:
    return f"{module(name)}:{commit(name)}"


def ev(
    day: float,
    hour: float,
    host: str,
    build: str,
    name: str,
    tier: str,
    seconds: float,
    size: int = 1000,
    *,
    member: str = "",
) -> UsageEvent:
    return UsageEvent(
        DAY0 + day * DAY + hour * 3600, member or {"h1": "alice"}.get(host, "bob"), build,
        module(name), commit(name), tier, size, seconds, team="t", host=host,
        fetch=f"fetch-{build}",
    )  # fmt: skip


@dataclass
class Machine:
    """What the rules read on a machine: its event log and store, the team's settings."""

    log: EventLog
    store: LocalStore
    policy: TeamConfig

    def advise(self, **options) -> Advice:
        return advise(self.log, team="t", store=self.store, policy=self.policy, **options)


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    """Alice's machine ``h1``, in team t (alice, bob, carol; the conservative strategy: the
    top 5 are preloaded, stores keep 500 MB)."""
    monkeypatch.setenv("BSR_TEAM_CACHE_HOST", "h1")
    policy = make_config("t", members=["alice", "bob", "carol"], cache_strategy="conservative")
    with LocalStore(tmp_path / "store") as store, open_event_log(store.root) as log:
        yield Machine(log, store, policy)


def record(machine: Machine, events: list[UsageEvent]) -> None:
    machine.log.add(events)


def by_action(found: list[Recommendation]) -> dict[str, Recommendation]:
    return {r.action: r for r in found}


# Bob's machine h2 downloads a and b, then reads them locally twice; alice's h1 gets a from
# the team registry and c from the BSR.
SHOP = [
    ev(0, 9, "h2", "b1", "a", "bsr", 2.0),
    ev(0, 9, "h2", "b1", "b", "bsr", 2.0),
    ev(1, 9, "h2", "b2", "a", "local", 0.01),
    ev(1, 9, "h2", "b2", "b", "local", 0.01),
    ev(2, 9, "h2", "b3", "a", "local", 0.01),
    ev(2, 9, "h2", "b3", "b", "local", 0.01),
    ev(2, 10, "h1", "b4", "a", "team", 0.5),
    ev(3, 11, "h1", "b5", "c", "bsr", 1.0),
]
SHOP_SECONDS = 2.0 + 2.0 + 4 * 0.01 + 0.5 + 1.0


def test_nothing_recorded_means_no_advice(machine: Machine) -> None:
    advice = machine.advise(now=NOW)
    assert (advice.requests, advice.recommendations) == (0, [])
    assert machine.advise().recommendations == []


def test_preload_counts_the_misses_of_the_team_s_top_modules_this_store_lacks(
    machine: Machine,
) -> None:
    record(machine, SHOP)
    advice = machine.advise(now=NOW)
    assert (advice.requests, advice.fetch_seconds) == (8, pytest.approx(SHOP_SECONDS))
    preload = by_action(advice.recommendations)["preload_dependencies"]
    # a, b and c are the top (fewer than 5); 4 requests missed a local store (b4 and b5 on
    # this machine): 5.5 s, where 4 local reads take 4 x 0.01 s (all local reads: 0.01 s).
    saved = 5.5 - 0.04
    assert preload.seconds_saved == pytest.approx(saved)
    assert preload.priority == "HIGH"
    assert preload.description == (
        "Preload top 3 dependencies for faster access: 3 of them are not in this machine's"
        " store (warm --scheduled or sync pulls them)"
    )
    assert preload.expected_improvement == (
        "5.46 s of fetch time: 4 requests for them missed a local store (2 on this machine)"
        f" and took 5.50 s, local reads an estimated 0.04 s; {saved / SHOP_SECONDS:.1%} of the"
        " team's fetch time"
    )
    # With a in this machine's store, only b and c are missing: b1's b and b5's c missed.
    machine.store.put(_artifact("a"))
    preload = by_action(machine.advise(now=NOW).recommendations)["preload_dependencies"]
    assert preload.data["missing"] == [ref("b"), ref("c")]
    assert (preload.data["misses"], preload.data["misses_here"]) == (2, 1)
    assert preload.seconds_saved == pytest.approx(3.0 - 0.02)


def test_a_bundle_opportunity_no_bundle_covers_is_recommended_with_its_savings(
    machine: Machine,
) -> None:
    record(machine, SHOP)
    bundle = by_action(machine.advise(now=NOW).recommendations)["create_bundle"]
    # a and b: together in b1, b2 and b3 (3 of the 4 builds with either). Only b1 fetched
    # them remotely: one request saved, priced at the team tier's latency (b4: 0.5 s).
    (found,) = analyze(machine.log, team="t", since=NOW - 30 * DAY)["bundle_opportunities"]
    assert (found["dependencies"], found["builds"]) == ([module("a"), module("b")], 3)
    assert bundle.data["requests_saved"] == 1
    assert bundle.seconds_saved == pytest.approx(0.5)
    assert bundle.priority == "MEDIUM"  # 0.5 s of 5.54 s: 9%
    assert bundle.description == (
        f"Create bundle for 2 frequently used dependencies ({module('a')}, {module('b')}):"
        " fetched together in 3 builds, co-occurrence 75%"
    )
    assert bundle.details == (
        f"bsr-team-cache bundle --name {found['name']} --deps {ref('a')} {ref('b')}",
    )
    share = 0.5 / SHOP_SECONDS
    assert bundle.expected_improvement == (
        f"{found['potential_savings']['text']}; {share:.1%} of the team's fetch time"
    )


def test_bundled_modules_are_not_suggested_again(machine: Machine) -> None:
    record(machine, SHOP)
    assert auto_bundle_candidates(machine.log, team="t", bundles=(), now=NOW) == [
        ref("a"),
        ref("b"),
    ]
    record_ab = BundleRecord("ab", "v1", "", (ref("a"), ref("b")))
    machine.policy = replace(machine.policy, bundles=(record_ab,))
    assert "create_bundle" not in by_action(machine.advise(now=NOW).recommendations)
    assert (
        auto_bundle_candidates(machine.log, team="t", bundles=machine.policy.bundles, now=NOW) == []
    )


def test_members_without_events_are_asked_to_sync(machine: Machine) -> None:
    record(machine, SHOP)
    members = by_action(machine.advise(now=NOW).recommendations)["sync_members"]
    assert members.priority == "LOW" and members.seconds_saved is None
    assert members.description == (
        "1 team member shared no usage in the window (carol): run sync on their machines"
        " (sync --if-due from cron or CI)"
    )
    assert members.expected_improvement == (
        "the figures here cover 2 of the 3 members (8 requests); their builds would count in"
        " bundles, preloading and cache sizes"
    )


def test_a_member_who_fetched_nothing_gets_the_team_s_recommendations(machine: Machine) -> None:
    record(machine, SHOP)
    team = machine.advise(now=NOW)
    carol = machine.advise(member="carol", now=NOW)
    assert carol.warnings == ["member 'carol' has no requests in the window: the team's shown"]
    assert (carol.member, carol.recommendations) == (None, team.recommendations)
    bob = machine.advise(member="bob", now=NOW)
    assert (bob.member, bob.requests) == ("bob", 6)


def test_a_larger_cache_is_recommended_from_the_replayed_hit_rate(machine: Machine) -> None:
    # Three 200 MiB modules in turn on one machine: 500 MB holds two, so LRU misses every
    # time; the working set, 600 MB, holds all three.
    big = ["big0", "big1", "big2"]
    record(
        machine, [ev(d, 9, "h1", f"d{d}", big[d % 3], "team", 2.0, 200 * MIB) for d in range(12)]
    )
    size = by_action(machine.advise(now=NOW).recommendations)["increase_cache_size"]
    # Counted after a warm-up of a quarter of the 11 days: days 3..11, 9 requests, each
    # 2.0 s from the team registry (no local reads recorded to subtract).
    assert (size.data["current_mb"], size.data["target_mb"]) == (500, 600)
    assert size.seconds_saved == pytest.approx(18.0)
    assert size.priority == "HIGH"
    assert size.description == (
        "Increase cache size to improve hit rate: max_cache_size_mb 500 -> 600"
        " (setup --max-cache-size-mb 600)"
    )
    assert size.details == (
        "Current hit rate: 0.0% (requests served by a local store; the replay at 500 MB gives"
        " 0.0%)",
        "Replayed: 9 requests on 1 machine through an LRU of each size, after a warm-up; sizes"
        " as recorded (this machine's store has no entries to fit stored sizes)",
    )
    assert size.expected_improvement == (
        "local hit rate 0.0% -> 100.0% at 600 MB, 9 more local reads, about 18.0 s; 75.0% of"
        " the team's fetch time"
    )


def test_a_cache_that_holds_the_working_set_is_left_alone(machine: Machine) -> None:
    big = ["big0", "big1"]  # 400 MB: it fits
    record(
        machine, [ev(d, 9, "h1", f"d{d}", big[d % 2], "team", 2.0, 200 * MIB) for d in range(12)]
    )
    assert "increase_cache_size" not in by_action(machine.advise(now=NOW).recommendations)


def test_daily_warming_counts_first_requests_of_a_day_that_missed(machine: Machine) -> None:
    events = []
    for day, (a, b) in enumerate([("team", "team"), ("team", "local"), ("team", "team")]):
        seconds = {"team": 0.5, "local": 0.01}
        events += [
            ev(day, 9, "h1", f"d{day}", "a", a, seconds[a]),
            ev(day, 9, "h1", f"d{day}", "b", b, seconds[b]),
            ev(day, 9.5, "h1", f"e{day}", "a", "local", 0.01),
            ev(day, 9.5, "h1", f"e{day}", "b", "local", 0.01),
        ]
    # A CI runner seen once keeps no store: a warm would not have helped it.
    events += [ev(2, 9, "gha-1", "r1", "a", "bsr", 2.0), ev(2, 9, "gha-1", "r1", "b", "bsr", 2.0)]
    record(machine, events)
    warming = by_action(machine.advise(now=NOW).recommendations)["schedule_warming"]
    # Every request falls in 09:00, the busiest hour: warm at 08:00. h1's days after its
    # first: day 1's a and day 2's a and b missed (1.5 s), 3 local reads take 0.03 s.
    saved = 1.5 - 0.03
    total = sum(e.seconds for e in events)
    assert warming.seconds_saved == pytest.approx(saved)
    assert (warming.data["time"], warming.data["machines"], warming.data["missed"]) == (
        "08:00",
        1,
        3,
    )
    assert warming.description == (
        "Warm the cache daily at 08:00 (UTC), before the first peak: warm --schedule prints"
        " the crontab line and a CI workflow"
    )
    assert warming.expected_improvement == (
        "1.47 s of fetch time: on 1 machine keeping a store, 3 first requests of a day"
        " for the 2 modules it warms missed the local store and took 1.50 s"
        f"; {saved / total:.1%} of the team's fetch time"
    )


def test_priorities_follow_the_share_of_fetch_time_saved() -> None:
    assert [priority(s, 100.0) for s in (10.0, 9.99, 2.0, 1.99, None)] == [
        "HIGH", "MEDIUM", "MEDIUM", "LOW", "LOW",
    ]  # fmt: skip
    assert priority(5.0, 0.0) == "LOW"


def test_the_text_is_the_design_document_s() -> None:
    found = [
        Recommendation("HIGH", "preload_dependencies", "Preload top 5", "1.00 s"),
        Recommendation(
            "MEDIUM", "increase_cache_size", "Increase", "more hits", ("Current hit rate: 75.2%",)
        ),
    ]
    assert format_recommendations("platform-team", found) == [
        "Cache Recommendations for team platform-team:",
        "1. [HIGH] preload_dependencies",
        "   Preload top 5",
        "   Expected improvement: 1.00 s",
        "",
        "2. [MEDIUM] increase_cache_size",
        "   Increase",
        "   Current hit rate: 75.2%",
        "   Expected improvement: more hits",
    ]
    assert format_recommendations("t", [], none="nothing") == [
        "Cache Recommendations for team t:",
        "  none: nothing",
    ]


def _artifact(name: str) -> ModuleArtifact:
    files = {f"{name}.proto": b'syntax = "proto3";\n'}
    return ModuleArtifact(
        parse_module_name(module(name)), commit(name), b5_from_contents(files), (), files, ""
    )


def test_recommend_prints_json_and_the_document_s_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command as a user runs it: the shop's requests of the last days, this machine h1."""
    import time

    from bsr_team_cache.usage.log import open_event_log
    from tests.conftest import run_cli

    store = tmp_path / "store"
    base = (time.time() // DAY - 10) * DAY
    with open_event_log(store) as log:
        log.add(e._replace(time=e.time - DAY0 + base) for e in SHOP)
    env = {
        "BSR_TEAM_CACHE_DIR": str(store),
        "BSR_TEAM_CACHE_REGISTRY": f"oci-layout:{tmp_path / 'registry'}",
        "BSR_TEAM_CACHE_TEAM": "t",
        "BSR_TEAM_CACHE_HOST": "h1",
    }
    setup = run_cli("setup", "--members", "alice", "--members", "bob", "--members", "carol",
                    "--strategy", "conservative", env=env)  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    done = run_cli("recommend", "--json", env=env)
    assert done.returncode == 0, done.stderr
    advice = json.loads(done.stdout)
    assert (advice["team"], advice["member"], advice["requests"]) == ("t", None, 8)
    assert [(r["priority"], r["action"]) for r in advice["recommendations"]] == [
        ("HIGH", "preload_dependencies"),
        ("MEDIUM", "create_bundle"),
        ("LOW", "sync_members"),
    ]
    preload = advice["recommendations"][0]
    assert (preload["data"]["misses"], preload["data"]["misses_here"]) == (4, 2)
    assert preload["seconds_saved"] == pytest.approx(5.46)

    text = run_cli("recommend", "--member", "carol", env=env)
    assert text.returncode == 0, text.stderr
    assert "warning: member 'carol' has no requests in the window: the team's shown" in (
        text.stderr
    )
    lines = text.stdout.splitlines()
    assert lines[:2] == ["Cache Recommendations for team t:", "1. [HIGH] preload_dependencies"]
    assert lines[3].startswith("   Expected improvement: 5.46 s of fetch time: 4 requests")
    assert lines[4:6] == ["", "2. [MEDIUM] create_bundle"]
