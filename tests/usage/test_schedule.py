"""Warming on a schedule: crontab and workflow lines from a schedule (time zones, daylight
saving, weekday shifts), when the weekly refresh is due, what a scheduled run warms, and
``warm --schedule`` / ``warm --scheduled`` as a user runs them (the run itself, in the team
layer: tests/team/test_scheduled.py)."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.store import LocalStore
from bsr_team_cache.usage.events import UsageEvent, parse_time
from bsr_team_cache.usage.log import open_event_log
from bsr_team_cache.usage.schedule import (
    Schedule,
    crontab,
    github_workflow,
    last_weekly_refresh,
    refresh_due,
    scheduled_refs,
)
from tests.conftest import run_cli

BERLIN = Schedule("Europe/Berlin", "08:00", "sunday", "03:00", ("buf.build/a/b:" + "1" * 32,), 50)
COMMAND = "bsr-team-cache warm --scheduled --team t"
WINTER = parse_time("2026-01-14T12:00:00Z")  # a Wednesday; Berlin is at UTC+1


def test_a_schedule_is_read_from_the_analysis() -> None:
    analysis = {
        "requests": 50,
        "warming_schedule": {
            "daily": {"time": "08:00", "timezone": "Europe/Berlin", "dependencies": list(BERLIN.dependencies)},
            "weekly": {"day": "sunday", "time": "03:00", "timezone": "Europe/Berlin", "action": "full_cache_refresh"},
        },
    }  # fmt: skip
    assert Schedule.from_analysis(analysis) == BERLIN


def test_crontab_lines_run_in_the_schedule_s_zone() -> None:
    assert crontab(BERLIN, COMMAND) == [
        "# bsr-team-cache: warm before the first peak daily, refresh weekly (warm --schedule).",
        "# CRON_TZ makes these times Europe/Berlin (cronie, systemd-cron); a cron that ignores it"
        " uses the machine's zone.",
        "CRON_TZ=Europe/Berlin",
        f"0 8 * * * {COMMAND}",
        f"0 3 * * 0 {COMMAND}",
    ]
    # A weekly refresh at the daily time: the daily run does it, no second line.
    same = Schedule("UTC", "06:30", "friday", "06:30", (), 1)
    assert crontab(same, COMMAND)[2:] == ["CRON_TZ=UTC", f"30 6 * * * {COMMAND}"]
    assert crontab(Schedule("UTC", None, None, None, (), 0), COMMAND) == []


def test_the_workflow_is_in_utc_and_says_when_daylight_saving_moves_it() -> None:
    env = {"BSR_TEAM_CACHE_REGISTRY": "https://registry.example/ns"}
    assert github_workflow(BERLIN, COMMAND, env=env, now=WINTER) == [
        "# .github/workflows/bsr-team-cache-warm.yml",
        "# A runner's store is discarded after the job: this keeps the team registry warm (BSR",
        "# downloads are published to it) and its labels fresh.",
        "name: bsr-team-cache warm",
        "on:",
        "  schedule:",
        "    # daily 08:00 Europe/Berlin is 07:00 UTC now, 06:00 UTC after the next"
        " daylight-saving change",
        '    - cron: "0 7 * * *"',
        "    # sunday 03:00 Europe/Berlin is 02:00 UTC now, 01:00 UTC after the next"
        " daylight-saving change",
        '    - cron: "0 2 * * 0"',
        "  workflow_dispatch: {}",
        "jobs:",
        "  warm:",
        "    runs-on: ubuntu-latest",
        "    steps:",
        "      - uses: actions/setup-python@v5",
        "        with:",
        '          python-version: "3.11"',
        "      - run: pip install bsr-team-cache  # or as your other jobs install it",
        f"      - run: {COMMAND}",
        "        env:",
        "          BSR_TEAM_CACHE_REGISTRY: https://registry.example/ns",
    ]
    workflow = yaml.safe_load("\n".join(github_workflow(BERLIN, COMMAND, env=env, now=WINTER)))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true; GitHub reads it as "on"
    assert triggers["schedule"] == [{"cron": "0 7 * * *"}, {"cron": "0 2 * * 0"}]
    assert workflow["jobs"]["warm"]["steps"][-1]["env"] == env
    # Monday 00:30 in Berlin is still Sunday in UTC; in summer, 22:30.
    early = Schedule("Europe/Berlin", "00:30", "monday", "00:30", (), 1)
    lines = github_workflow(early, COMMAND, env={}, now=WINTER)
    assert lines[6:10] == [
        "    # daily 00:30 Europe/Berlin is 23:30 UTC now, 22:30 UTC after the next"
        " daylight-saving change",
        '    - cron: "30 23 * * *"',
        "    # monday 00:30 Europe/Berlin is 23:30 UTC now, 22:30 UTC after the next"
        " daylight-saving change",
        '    - cron: "30 23 * * 0"',
    ]
    assert lines[-1] == f"      - run: {COMMAND}"  # no env
    utc = Schedule("UTC", "09:00", "tuesday", "22:00", (), 1)
    assert github_workflow(utc, COMMAND, env={}, now=WINTER)[6:10] == [
        "    # daily 09:00 UTC",
        '    - cron: "0 9 * * *"',
        "    # tuesday 22:00 UTC",
        '    - cron: "0 22 * * 2"',
    ]


def test_the_weekly_refresh_is_due_once_its_time_has_passed_since_the_last() -> None:
    last = parse_time("2026-01-11T02:00:00Z")  # Sunday 03:00 in Berlin, before WINTER
    assert last_weekly_refresh(BERLIN, WINTER) == last
    assert last_weekly_refresh(BERLIN, last) == last
    assert last_weekly_refresh(BERLIN, last - 1) == last - 7 * 86400
    assert refresh_due(BERLIN, None, WINTER)  # never refreshed on this machine
    assert refresh_due(BERLIN, last - 1, WINTER)
    assert not refresh_due(BERLIN, last, WINTER)
    no_weekly = Schedule("UTC", None, None, None, (), 0)
    assert last_weekly_refresh(no_weekly, WINTER) is None
    assert not refresh_due(no_weekly, None, WINTER)


def test_a_scheduled_run_warms_the_team_s_top_then_the_daily_schedule_s_modules(
    tmp_path: Path,
) -> None:
    """pets asked for 3 times, money twice, notes once (and a warm, not a demand request, of
    common; another team's request of money, and one of notes older than 30 days): the top 2
    are pets and money, then the schedule's modules not among them."""
    names = {n: f"buf.build/acme/{n}" for n in ("pets", "money", "notes", "common")}
    commits = {n: f"{i + 1:032x}" for i, n in enumerate(names)}

    def request(name: str, k: int, *, age: float = 3600, team: str = "t", op: str = "fetch"):
        return UsageEvent(
            WINTER - age - k, "bob", f"build-{name}-{k}", names[name], commits[name], "team",
            1000, 0.2, team=team, fetch=f"fetch-{name}-{k}", operation=op,
        )  # fmt: skip

    events = [request("pets", k) for k in range(3)] + [request("money", k) for k in range(2)]
    events += [request("notes", 0), request("common", 0, op="warm")]
    events += [request("money", k, team="other") for k in range(5)]
    events += [request("notes", k, age=31 * 86400) for k in range(5)]
    daily = Schedule("UTC", "09:00", None, None, (f"{names['notes']}:{commits['notes']}",
                     f"{names['pets']}:{commits['pets']}"), 6)  # fmt: skip
    with open_event_log(tmp_path / "store") as log:
        log.add(events)
        refs = scheduled_refs(log, team="t", schedule=daily, preload_top=2, now=WINTER)
        nothing = scheduled_refs(log, team="nobody", schedule=daily, preload_top=2, now=WINTER)
    assert refs == [f"{names[n]}:{commits[n]}" for n in ("pets", "money", "notes")]
    assert nothing == list(daily.dependencies)


# -- the command line ------------------------------------------------------------------------
def _tuesday_ten_utc(now: float) -> float:
    """10:00 UTC on the latest Tuesday before today."""
    today = datetime.fromtimestamp(now, UTC).date()
    day = next(
        today - timedelta(days=k) for k in range(1, 9) if (today - timedelta(days=k)).weekday() == 1
    )
    return datetime(day.year, day.month, day.day, 10, tzinfo=UTC).timestamp()


def _record_demand(store: Path, commits: dict[str, str], counts: dict[str, int]) -> None:
    """Bob's CI machine asked for each module ``counts`` times, on a Tuesday at 10:00 UTC."""
    t = _tuesday_ten_utc(time.time())
    events = [
        UsageEvent(
            t + 60 * k,
            "bob",
            f"build-{name}-{k}",
            name,
            commits[name],
            "team",
            1000,
            0.2,
            team="platform-team",
            host="ci-1",
            fetch=f"fetch-{name}-{k}",
        )
        for name, n in counts.items()
        for k in range(n)
    ]
    with open_event_log(store) as log:
        log.add(events)


def test_warm_schedule_prints_crontab_lines_and_a_workflow(tmp_path: Path) -> None:
    store, registry = tmp_path / "store", f"oci-layout:{tmp_path / 'registry'}"
    names = ["buf.build/acme/pets", "buf.build/acme/money"]
    commits = {n: f"{i + 1:032x}" for i, n in enumerate(names)}
    _record_demand(store, commits, {names[0]: 2, names[1]: 1})
    env = {"BSR_TEAM_CACHE_DIR": str(store), "BSR_TEAM_CACHE_REGISTRY": registry}
    done = run_cli("warm", "--schedule", "--team", "platform-team", "--json", env=env)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    schedule = printed["schedule"]
    # Every request in 10:00 UTC (no hour stands out: the busiest is the peak): warm at 09:00.
    assert schedule["daily"] == {
        "time": "09:00",
        "dependencies": [f"{n}:{commits[n]}" for n in names],
    }
    assert (schedule["timezone"], schedule["requests"]) == ("UTC", 3)
    program = shutil.which("bsr-team-cache") or "bsr-team-cache"
    command = shlex.join(
        [program, "warm", "--scheduled", "--team", "platform-team", "--registry", registry,
         "--store-dir", str(store)]
    )  # fmt: skip
    day = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    weekly_day = (day.index(schedule["weekly"]["day"]) + 1) % 7
    hour, minute = (int(x) for x in schedule["weekly"]["time"].split(":"))
    assert printed["crontab"][2:] == [
        "CRON_TZ=UTC",
        f"0 9 * * * {command}",
        f"{minute} {hour} * * {weekly_day} {command}",
    ]
    workflow = printed["github_actions"]
    assert workflow[6:10] == [
        "    # daily 09:00 UTC",
        '    - cron: "0 9 * * *"',
        f"    # {schedule['weekly']['day']} {schedule['weekly']['time']} UTC",
        f'    - cron: "{minute} {hour} * * {weekly_day}"',
    ]
    assert workflow[-3:] == [
        "      - run: bsr-team-cache warm --scheduled --team platform-team",
        "        env:",
        "          BSR_TEAM_CACHE_REGISTRY: ${{ vars.BSR_TEAM_CACHE_REGISTRY }}",
    ]
    text = run_cli("warm", "--schedule", "--team", "platform-team", env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[:2] == [
        "Warming schedule for team platform-team (3 requests of the last 30 days, times in UTC):",
        "  daily at 09:00: the team's most requested modules (2 from the peak hours) and its"
        " bundles",
    ]
    assert f"0 9 * * * {command}" in lines


def test_warm_refuses_modules_with_a_schedule(tmp_path: Path) -> None:
    env = {"BSR_TEAM_CACHE_REGISTRY": f"oci-layout:{tmp_path / 'registry'}"}
    both = run_cli("warm", "--schedule", "--scheduled", "--team", "t", env=env)
    assert both.returncode == 2
    assert "--schedule prints the schedule, --scheduled runs it: give one" in both.stderr
    refs = run_cli("warm", "--scheduled", "--team", "t", "buf.build/acme/pets", env=env)
    assert refs.returncode == 2
    assert "--scheduled takes no modules: the team's events choose them" in refs.stderr
    zone = run_cli("warm", "--schedule", "--team", "t", "--timezone", "Mars/Olympus", env=env)
    assert zone.returncode == 2 and "unknown time zone 'Mars/Olympus'" in zone.stderr


@pytest.mark.slow
def test_warm_scheduled_warms_the_team_s_top_modules_and_its_bundles(
    bsr_env, tmp_path: Path
) -> None:
    """Alice warms pets (its closure: 4 modules) into the team registry and bundles notes;
    bob's CI machine asked for pets, money and common. A new machine's scheduled run warms
    those three (and their deps) from the team registry, pulls the notes bundle, and does
    its first weekly refresh; the next run finds everything here."""
    host = bsr_env.host
    alice = {
        "SSL_CERT_FILE": str(bsr_env.ca_cert),
        "BSR_TEAM_CACHE_REGISTRY": f"oci-layout:{tmp_path / 'registry'}",
        "BSR_TEAM_CACHE_TEAM": "platform-team",
        "BSR_TEAM_CACHE_DIR": str(tmp_path / "alice"),
        "BSR_TEAM_CACHE_MEMBER": "alice",
    }
    for args in (
        ("setup", "--members", "alice", "--members", "bob", "--strategy", "conservative"),
        ("warm", "--deps", f"{host}/acme/pets"),
        ("bundle", "--name", "notes", "--deps", f"{host}/acme/notes"),
    ):
        done = run_cli(*args, env=alice)
        assert done.returncode == 0, done.stderr
    with LocalStore(tmp_path / "alice") as store:
        commits = {e.module: e.commit for e in store.entries()}
    top = [f"{host}/acme/{n}" for n in ("pets", "money", "common")]
    fresh = tmp_path / "fresh"
    _record_demand(fresh, commits, dict(zip(top, (3, 2, 1), strict=True)))
    machine = {**alice, "BSR_TEAM_CACHE_DIR": str(fresh), "BSR_TEAM_CACHE_MEMBER": "carol"}

    first = run_cli("warm", "--scheduled", "--json", env=machine)
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)
    assert run["refs"] == [f"{m}:{commits[m]}" for m in top]
    assert run["modules"] == {"local": 0, "team": 4, "bsr": 0}  # pets brings googleapis
    assert (run["bundles_pulled"], run["bundles_current"]) == (["notes:v1"], [])
    assert (run["refreshed"], run["next_refresh"]) == (True, None)
    with LocalStore(fresh) as store:
        assert {e.module for e in store.entries()} == {
            *top, f"{host}/googleapis/googleapis", f"{host}/acme/notes",
        }  # fmt: skip
        for name, commit in commits.items():
            assert store.contains(parse_module_name(name), commit)

    again = run_cli("warm", "--scheduled", env=machine)
    assert again.returncode == 0, again.stderr
    weekly = run["schedule"]["weekly"]
    assert again.stdout.splitlines() == [
        "warmed 4 modules (4 local, 0 team, 0 bsr): the team's 3 most requested module"
        " commits and their deps",
        "bundles already here: notes:v1",
        f"weekly refresh: not due (next: {weekly['day']} {weekly['time']} (UTC))",
    ]
