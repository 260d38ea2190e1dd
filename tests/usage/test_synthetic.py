"""The synthetic team: seeded and exact in size, events that follow the schema and a plausible
cache, and a plant (groups of modules used together, peak hours) that the analysis finds."""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from bsr_team_cache.usage import synthetic
from bsr_team_cache.usage.analysis import analyze
from bsr_team_cache.usage.events import parse_event, parse_time
from bsr_team_cache.usage.log import EventLog, read_jsonl
from bsr_team_cache.usage.synthetic import (
    CI_MEMBER,
    Scenario,
    synthetic_team,
    write_jsonl_file,
    write_log,
)

SMALL = Scenario(events=3000, seed=7, days=14)


def test_the_same_scenario_gives_the_same_events_and_exactly_as_many() -> None:
    team = synthetic_team(SMALL)
    rows = list(team.rows())
    assert len(rows) == 3000
    assert list(team.rows()) == rows  # every call starts over
    assert list(synthetic_team(SMALL).rows()) == rows
    assert list(synthetic_team(replace(SMALL, seed=8)).rows()) != rows


def test_every_event_follows_the_schema() -> None:
    for event in synthetic_team(SMALL).events():
        assert parse_event(event.to_json()).to_json() == event.to_json()


def test_laptops_and_ci_builds_across_runners() -> None:
    events = list(synthetic_team(SMALL).events())
    demand = [e for e in events if e.operation == "fetch"]
    ci = [e for e in demand if e.member == CI_MEMBER]
    assert all(re.fullmatch(r"GITHUB_RUN_ID:\d+", e.build) for e in ci)
    laptops = [e for e in demand if e.member != CI_MEMBER]
    assert all(e.host == f"{e.member}-laptop" and e.build == e.fetch for e in laptops)
    fetches_per_build: dict[str, set[str]] = defaultdict(set)
    for e in ci:
        fetches_per_build[e.build].add(e.fetch)
    jobs = Counter(len(f) for f in fetches_per_build.values())
    # Pinned for this seed: builds of one, two and three jobs.
    assert dict(jobs) == {1: 55, 2: 42, 3: 30}
    warm = [e for e in events if e.operation == "warm"]
    assert (len(warm), {e.member for e in warm}) == (100, {CI_MEMBER})


def test_tiers_follow_a_cache() -> None:
    """A host serves from its local store only what it fetched before (and did not evict);
    the team registry only what someone fetched from the BSR or a bundle pushed."""
    seen_on_host: dict[str, set[str]] = defaultdict(set)
    in_registry: set[str] = set()
    refetched = 0
    first_tiers = Counter()
    for e in synthetic_team(SMALL).events():
        if e.tier == "local":
            assert e.commit in seen_on_host[e.host]
        else:
            refetched += e.commit in seen_on_host[e.host]
        if e.commit not in in_registry:
            first_tiers[e.tier] += 1
            in_registry.add(e.commit)
        seen_on_host[e.host].add(e.commit)
    # Pinned for this seed: one commit first came in the bundle created half-way (its
    # creation pushed it); 34 requests fetched again what their host had evicted.
    assert first_tiers == {"bsr": 83, "bundle": 1}
    assert refetched == 34


def test_seconds_per_tier_rank_as_real_tiers_do() -> None:
    seconds: dict[str, list[float]] = defaultdict(list)
    for e in synthetic_team(replace(SMALL, events=20000, days=56)).events():
        seconds[e.tier].append(e.seconds / (1 + e.bytes / 1e6))
    mean = {tier: sum(v) / len(v) for tier, v in seconds.items()}
    assert sorted(mean, key=mean.get) == ["local", "bundle", "team", "bsr"]


def test_write_log_adds_every_event_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "BATCH", 700)  # several transactions
    team = synthetic_team(SMALL)
    log = EventLog(tmp_path / "events.db")
    assert write_log(log, team) == 3000
    assert [e.to_json() for e in log.events()] == sorted(
        (e.to_json() for e in team.events()), key=lambda j: j["time"]
    )
    assert write_log(log, team) == 0  # the same events again: nothing new
    (cache_size,) = log.db.execute("PRAGMA cache_size").fetchone()
    assert cache_size == -2000  # SQLite's default, given back


def test_json_lines_for_usage_import(tmp_path: Path) -> None:
    team = synthetic_team(SMALL)
    path = tmp_path / "events.jsonl"
    assert write_jsonl_file(path, team) == 3000
    expected = [e.to_json() for e in team.events()]
    assert [e.to_json() for e in read_jsonl(path)] == expected
    out = io.StringIO()
    assert write_jsonl_file(out, team) == 3000
    assert out.getvalue() == path.read_text()


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(events=30_000, seed=11),
        # Another zone, its DST change (2026-03-08) inside the span, other peaks and groups.
        Scenario(
            events=30_000,
            seed=5,
            start=parse_time("2026-03-02T00:00:00Z"),
            days=28,
            timezone="America/New_York",
            peak_hours=(10, 13, 17),
            group_sizes=(2, 6, 4),
        ),
    ],
)
def test_the_analysis_finds_the_plant(tmp_path: Path, scenario: Scenario) -> None:
    team = synthetic_team(scenario)
    plant = team.plant
    log = EventLog(tmp_path / "events.db")
    write_log(log, team)
    report = analyze(log, team=plant.team, timezone=plant.timezone)
    peaks = report["peak_hours"]
    assert peaks["peak_hours"] == list(plant.peak_hours)
    assert peaks["peak_weekdays"] == ["monday", "tuesday", "wednesday", "thursday", "friday"]
    assert peaks["quietest_weekday"] in ("saturday", "sunday")  # nightly builds run on both
    daily = report["warming_schedule"]["daily"]
    assert daily["time"] == f"{plant.peak_hours[0] - 1:02d}:00"
    found = [tuple(o["dependencies"]) for o in report["bundle_opportunities"]]
    assert [g for g in plant.groups if g in found] == list(plant.groups)
    # No opportunity mixes two groups (the gateway needs two, but it is one project of many).
    for deps in found:
        assert sum(1 for g in plant.groups if set(g) & set(deps)) <= 1
    # With the team's bundle of the first group, that group is no longer an opportunity.
    bundled = analyze(log, team=plant.team, timezone=plant.timezone, bundles=plant.bundles.values())
    found = [tuple(o["dependencies"]) for o in bundled["bundle_opportunities"]]
    assert [g for g in plant.groups if g in found] == list(plant.groups[1:])
