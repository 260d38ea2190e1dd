"""Finding buf on PATH (bufcache/layout.py) as shutil.which does, without importing shutil."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bsr_team_cache.bufcache.layout import _on_path


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_buf_is_found_where_shutil_which_finds_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "dir" / "buf").mkdir(parents=True)  # a directory named buf: skipped
    plain = tmp_path / "plain" / "buf"  # not executable: skipped
    plain.parent.mkdir()
    plain.write_text("")
    first = _executable(tmp_path / "first" / "buf")
    _executable(tmp_path / "second" / "buf")
    path = os.pathsep.join(
        str(tmp_path / d) for d in ("missing", "dir", "plain", "first", "second")
    )
    monkeypatch.setenv("PATH", path)
    assert _on_path("buf") == shutil.which("buf") == str(first)
    assert _on_path("no-such-tool") is shutil.which("no-such-tool") is None


@pytest.mark.parametrize("path", ["", os.pathsep])
def test_an_empty_path_entry_is_the_current_directory(tmp_path, monkeypatch, path) -> None:
    """The same file as shutil.which finds, named so that running it runs that file ("./buf",
    where which says "buf", which a subprocess would look up on PATH again)."""
    _executable(tmp_path / "buf")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", path + os.pathsep + "/nonexistent")
    assert shutil.which("buf") == "buf"
    assert _on_path("buf") == os.path.join(os.curdir, "buf")
