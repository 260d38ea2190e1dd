from __future__ import annotations

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_and_buf_agrees(tmp_path):
    result = run_cli("demo", "--workdir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "googleapis/googleapis" in result.stdout
    assert "member B: real `buf build` offline" in result.stdout
    assert "member B built with the real buf CLI and no BSR" in result.stdout
    rows = [
        line.split()
        for line in result.stdout.splitlines()
        if line.startswith(("acme/", "googleapis/"))
    ]
    assert len(rows) == 6
    assert all(row[2] == "bsr" and row[3] == "team" and row[4] == "local" for row in rows)
    # The negative control: plain buf, an empty cache, the BSR down.
    assert "plain `buf build`, empty cache: fails (Failure: " in result.stdout
    assert (
        "member A made a bundle of them: teams/platform-team/bundles/shop-deps:v1" in result.stdout
    )
    # Member B's dashboard, of the team: A's 6 modules from the BSR (shipped by A's sync), B's
    # 6 from the team registry (through the bundle), then 6 local.
    assert "  Hit Rate: 66.7%" in result.stdout
    assert "  Team Hit Rate: 50.0% (of what machines lacked, served by the team registry)" in (
        result.stdout
    )
    assert "  Bundle Usage Rate: 100.0%" in result.stdout
    assert "(against the BSR, modelled on 1 cold fetch)" in result.stdout
    assert "  Requests: 18 in 3 fetches, 2 members, 1 machine (" in result.stdout
