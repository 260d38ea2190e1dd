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
    assert all(row[2] == "bsr" and row[3] == "team" for row in rows)
