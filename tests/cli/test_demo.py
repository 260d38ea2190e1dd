from __future__ import annotations

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_and_buf_agrees(tmp_path):
    result = run_cli("demo", "--workdir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "googleapis/googleapis" in result.stdout
    assert "real `buf build` (warm buf cache)" in result.stdout
    assert "buf.lock digests written by the real buf CLI match ours." in result.stdout
