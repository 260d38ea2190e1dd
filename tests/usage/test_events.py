"""The event schema's one validator, the build id, and ``usage export`` / ``usage import``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bsr_team_cache.usage.events import (
    EventError,
    UsageEvent,
    build_id,
    parse_event,
    parse_since,
    parse_time,
)
from bsr_team_cache.usage.log import open_event_log
from tests.conftest import run_cli

LINE = {
    "time": "2026-11-26T09:15:00.5+01:00",
    "member": "alice",
    "build": "GITHUB_RUN_ID:42",
    "module": "buf.build/acme/pets",
    "commit": "0123456789abcdef0123456789abcdef",
    "tier": "team",
    "bytes": 2048,
    "seconds": 0.125,
}


def test_a_minimal_line_and_its_defaults() -> None:
    event = parse_event(LINE)
    assert event == UsageEvent(
        time=parse_time("2026-11-26T08:15:00.5Z"),
        member="alice",
        build="GITHUB_RUN_ID:42",
        module="buf.build/acme/pets",
        commit="0123456789abcdef0123456789abcdef",
        tier="team",
        bytes=2048,
        seconds=0.125,
    )
    assert (event.team, event.operation, event.fetch_seconds) == ("", "fetch", 0.0)
    assert event.to_json() == {**LINE, "time": "2026-11-26T08:15:00.500000Z", "operation": "fetch"}
    assert parse_event(event.to_json()) == event


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time": None}, "time: missing (required)"),
        ({"time": "2026-11-26T09:15:00"}, "has no zone: add Z (UTC) or an offset"),
        ({"time": "2026-11-26"}, "time: expected an RFC 3339 time"),
        ({"time": "1999-12-31T23:00:00Z"}, "time: outside the years 2000 to 2200"),
        ({"member": ""}, "member: must not be empty"),
        ({"member": "a\nb"}, "member: longer than 256 characters or has control characters"),
        ({"module": "pets"}, "module: invalid module"),
        ({"commit": "v1.2.3"}, "commit: expected a commit id (32 lowercase hex digits)"),
        ({"tier": "cdn"}, "tier: expected one of local, team, bundle, bsr"),
        ({"bytes": -1}, "bytes: expected an integer from 0 to"),
        ({"bytes": True}, "bytes: expected an integer"),
        ({"seconds": float("nan")}, "seconds: expected a number of seconds"),
        ({"operation": "build"}, "operation: expected one of fetch, warm, bundle, sync"),
        ({"colour": "red"}, "colour: unknown field"),
    ],
)
def test_each_field_is_checked(change: dict, message: str) -> None:
    line = {k: v for k, v in {**LINE, **change}.items() if v is not None}
    with pytest.raises(EventError) as caught:
        parse_event(line)
    assert message in str(caught.value)


def test_build_id_from_ci_variables_else_the_fetch() -> None:
    assert build_id({"GITHUB_RUN_ID": "77", "CI_JOB_ID": "5"}) == "GITHUB_RUN_ID:77"
    assert build_id({"BUILD_TAG": "jenkins-shop-12"}) == "BUILD_TAG:jenkins-shop-12"
    assert build_id({"CIRCLE_WORKFLOW_ID": " "}, fallback="f1") == "f1"


def test_ci_runners_share_a_tag_host() -> None:
    from bsr_team_cache.usage.events import shipping_host

    assert shipping_host({"GITHUB_ACTIONS": "true"}) == "ci-github"
    assert shipping_host({"GITHUB_ACTIONS": "true", "BSR_TEAM_CACHE_HOST": "r7"}) == "r7"
    assert shipping_host({"BSR_TEAM_CACHE_HOST": "laptop"}) == "laptop"


def test_since_accepts_ages_dates_and_times() -> None:
    now = 1_800_000_000.0
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("90m", now) == now - 5400
    assert parse_since("2026-11-01", now) == parse_time("2026-11-01T00:00:00Z")
    with pytest.raises(EventError, match="--since"):
        parse_since("last week", now)


def test_export_then_import_moves_history(tmp_path: Path) -> None:
    source = tmp_path / "source"
    lines = [
        {**LINE, "time": f"2026-11-2{i}T10:00:00Z", "build": f"b{i}", "team": "shop"}
        for i in range(3)
    ]
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    env = {"BSR_TEAM_CACHE_DIR": str(source)}
    done = run_cli("usage", "import", str(history), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported 3 events (0 already there)\n"
    again = run_cli("usage", "import", str(history), env=env)
    assert again.stdout == "imported 0 events (3 already there)\n"

    out = tmp_path / "out.jsonl"
    exported = run_cli("usage", "export", "--since", "2026-11-21", "-o", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["build"] for line in out.read_text().splitlines()] == ["b1", "b2"]
    # Imported on another machine, the same events, to the microsecond.
    other = {"BSR_TEAM_CACHE_DIR": str(tmp_path / "other")}
    assert run_cli("usage", "import", str(out), env=other).returncode == 0
    with open_event_log(tmp_path / "other") as log:
        assert list(log.events()) == [parse_event(line) for line in lines[1:]]


def test_a_bad_line_imports_nothing_and_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({**LINE, "team": "shop"})
    bad.write_text(f"{good}\n{json.dumps({**LINE, 'tier': 'cdn'})}\n")
    env = {"BSR_TEAM_CACHE_DIR": str(tmp_path / "store")}
    done = run_cli("usage", "import", str(bad), env=env)
    assert done.returncode == 2
    assert done.stderr == (
        f"bsr-team-cache: error: {bad}:2: tier: expected one of local, team, bundle, bsr"
        " (each line is one event of docs/usage-events.md)\n"
    )
    with open_event_log(tmp_path / "store") as log:
        assert log.count() == 0
    # A line without a team needs one from --team or the environment.
    teamless = tmp_path / "teamless.jsonl"
    teamless.write_text(json.dumps(LINE) + "\n")
    refused = run_cli("usage", "import", str(teamless), env=env)
    assert refused.returncode == 2 and "some events name no team" in refused.stderr
    taken = run_cli("usage", "import", str(teamless), "--team", "shop", env=env)
    assert taken.returncode == 0, taken.stderr
    with open_event_log(tmp_path / "store") as log:
        assert [e.team for e in log.events()] == ["shop"]
