from __future__ import annotations

from tests.conftest import run_cli


def test_digest_prints_b5(tmp_path):
    (tmp_path / "a.proto").write_text('syntax = "proto3";\n')
    result = run_cli("digest", str(tmp_path))
    assert result.returncode == 0
    assert result.stdout.startswith("b5:") and len(result.stdout.strip()) == 3 + 128


def test_digest_with_deps_changes(tmp_path):
    (tmp_path / "a.proto").write_text("x")
    plain = run_cli("digest", str(tmp_path)).stdout
    with_dep = run_cli("digest", str(tmp_path), "--dep", "b5:" + "00" * 64).stdout
    assert plain != with_dep


def test_digest_b4(tmp_path):
    (tmp_path / "a.proto").write_text("x")
    result = run_cli("digest", "--type", "b4", str(tmp_path))
    assert result.returncode == 0 and result.stdout.startswith("shake256:")


def test_digest_errors(tmp_path):
    missing = run_cli("digest", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    bad = run_cli("digest", str(tmp_path), "--dep", "shake256:" + "00" * 64)
    assert bad.returncode == 2 and "expected a b5 digest, got shake256" in bad.stderr
    assert "Traceback" not in bad.stderr
