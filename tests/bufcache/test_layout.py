"""Which buf is installed and which cache layout it reads (bufcache/layout.py): found on PATH
as shutil.which finds it, its version asked once per binary, in the background."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bsr_team_cache.bufcache import layout
from bsr_team_cache.bufcache.layout import _on_path
from bsr_team_cache.errors import BSRTeamCacheError


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


def _fake_buf(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_buf_is_asked_its_version_once_in_the_background_then_remembered(tmp_path) -> None:
    asked = tmp_path / "asked"
    buf = _fake_buf(tmp_path / "buf", f"echo asked >> {asked}\necho 'buf 1.40.2'")
    memo = tmp_path / "store" / "buf-version.json"
    check = layout.start_layout_check(buf, memo)
    # Running before its answer is asked for: the caller goes on meanwhile.
    deadline = time.monotonic() + 30
    while not asked.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert asked.read_text() == "asked\n"
    assert check() == "v3"
    assert check() == "v3"  # answered once
    assert json.loads(memo.read_text())["version"] == [1, 40, 2]
    assert layout.start_layout_check(buf, memo)() == "v3"
    assert layout.check_buf_layout(buf, memo) == "v3"
    assert asked.read_text() == "asked\n"  # remembered: no second process


def test_an_old_buf_found_in_the_background_is_refused_as_before(tmp_path) -> None:
    old = _fake_buf(tmp_path / "buf", "echo 1.28.1")
    check = layout.start_layout_check(old, tmp_path / "memo.json")
    with pytest.raises(BSRTeamCacheError) as caught:
        check()
    assert str(caught.value) == (
        f"{old} is buf 1.28.1, whose module cache layout predates v3 (buf >= 1.32); this version"
        " of bsr-team-cache writes only the v3 layout. Upgrade buf, or pass --no-buf-cache and"
        " use --export"
    )


def test_a_buf_that_does_not_answer_is_an_error_not_a_traceback(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(layout, "_VERSION_SECONDS", 0.2)
    stuck = _fake_buf(tmp_path / "buf", "exec sleep 30")
    memo = tmp_path / "memo.json"
    with pytest.raises(BSRTeamCacheError) as caught:
        layout.check_buf_layout(stuck, memo)
    assert str(caught.value) == (
        f"cannot tell the version of {stuck} (buf --version did not finish within 0.2 s); pass"
        " --no-buf-cache, or set BUF_BIN to a working buf"
    )
    assert not memo.exists()  # not remembered: asked again next time


def test_no_buf_at_all_means_the_current_layout(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BUF_BIN", raising=False)
    assert layout.installed_buf_version() is None
    assert layout.start_layout_check(memo=tmp_path / "memo.json")() == "v3"


def test_an_empty_path_finds_nothing_as_which_does(tmp_path, monkeypatch) -> None:
    _executable(tmp_path / "buf")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "")
    assert _on_path("buf") is shutil.which("buf") is None


def _in_a_process(script: str) -> str:
    """Run ``script`` in a new interpreter (bounded: a hang is a failure, not a stuck suite)."""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_a_buf_that_hangs_with_children_holding_its_output_is_stopped(tmp_path) -> None:
    """Not `exec`: the shell's child keeps the pipe open after the shell is killed."""
    pids = tmp_path / "pids"
    buf = _fake_buf(tmp_path / "buf", f"sleep 600 &\necho $$ $! > {pids}\nwait")
    out = _in_a_process(
        "from bsr_team_cache.bufcache import layout\n"
        "layout._VERSION_SECONDS = 1\n"
        "try:\n"
        f"    layout.check_buf_layout({buf!r})\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    assert out == (
        f"cannot tell the version of {buf} (buf --version did not finish within 1 s); pass"
        " --no-buf-cache, or set BUF_BIN to a working buf\n"
    )
    for pid in map(int, pids.read_text().split()):
        assert not _running(pid)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_buf_that_prints_without_end_is_read_up_to_a_bound(tmp_path) -> None:
    buf = _fake_buf(tmp_path / "buf", "exec yes 1.40.0")
    memo = tmp_path / "memo.json"
    out = _in_a_process(  # this process's peak (VmHWM; ru_maxrss would count its parent's)
        "from bsr_team_cache.bufcache import layout\n"
        f"print(layout.start_layout_check({buf!r}, layout.Path({str(memo)!r}))())\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "print(int(status.split()[0]) < 200_000)\n"
    )
    assert out == "v3\nTrue\n"
    assert not memo.exists()  # cut short: not remembered


def test_an_answer_is_kept_and_remembered_only_when_buf_succeeded(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(layout, "_VERSION_SECONDS", 0.5)
    stuck = layout.start_layout_check(_fake_buf(tmp_path / "stuck", "exec sleep 30"))
    with pytest.raises(BSRTeamCacheError) as first:
        stuck()
    with pytest.raises(BSRTeamCacheError) as second:
        stuck()  # the same answer, not a parse of what it printed meanwhile
    assert str(first.value) == str(second.value)
    failing = _fake_buf(tmp_path / "failing", "echo 1.40.0; exit 3")
    memo = tmp_path / "memo.json"
    assert layout.check_buf_layout(failing, memo) == "v3"
    assert not memo.exists()
    garbled = _fake_buf(tmp_path / "garbled", r"printf '\377\376 buf 1.40.0\n'")
    assert layout.check_buf_layout(garbled, memo) == "v3"
    assert json.loads(memo.read_text())["version"] == [1, 40, 0]


def test_a_check_no_longer_wanted_stops_its_buf(tmp_path) -> None:
    pids = tmp_path / "pids"
    buf = _fake_buf(tmp_path / "buf", f"sleep 600 &\necho $$ $! > {pids}\nwait")
    check = layout.start_layout_check(buf, tmp_path / "memo.json")
    deadline = time.monotonic() + 30
    while not (pids.exists() and pids.read_text().endswith("\n")):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    check.discard()
    check.discard()  # again: nothing left to stop
    # SIGKILL to its process group: buf is reaped by then; a child of its own (reparented)
    # ends as soon as the kernel has run its exit, which a loaded machine may take a while to.
    until = time.monotonic() + 10
    for pid in map(int, pids.read_text().split()):
        while _running(pid):
            assert time.monotonic() < until, f"{pid} still runs after the check was discarded"
            time.sleep(0.01)


def _key(buf: str) -> str:
    st = os.stat(buf)
    return f"{os.path.realpath(buf)}:{st.st_size}:{st.st_mtime_ns}"


@pytest.mark.parametrize(
    "memo_text",
    [
        "[]",
        "null",
        "3",
        '"x"',
        "[" * 100_000 + "]" * 100_000,
        '{"key": KEY, "version": "1.40.0"}',
        '{"key": KEY, "version": [2]}',
        '{"key": KEY, "version": [1, 28, true]}',
        '{"key": KEY, "version": null}',
        "FIFO",
        "LINK",
    ],
)
def test_a_memo_that_is_not_sound_is_ignored_and_buf_asked(tmp_path, memo_text) -> None:
    asked = tmp_path / "asked"
    buf = _fake_buf(tmp_path / "buf", f"echo asked >> {asked}\necho 1.40.0")
    memo = tmp_path / "memo.json"
    if memo_text == "FIFO":
        os.mkfifo(memo)
    elif memo_text == "LINK":
        memo.symlink_to("/dev/zero")
    else:
        memo.write_text(memo_text.replace("KEY", json.dumps(_key(buf))))
    assert layout.check_buf_layout(buf, memo) == "v3"
    assert asked.read_text() == "asked\n"
    assert json.loads(memo.read_text()) == {"key": _key(buf), "version": [1, 40, 0]}


def test_buf_runs_as_subprocess_would_start_it_without_loading_subprocess(tmp_path) -> None:
    """posix_spawn: stdin is /dev/null, stdout and stderr read together, no descriptor of the
    caller's (not even an inheritable one), SIGPIPE at its default; a bare BUF_BIN name is
    looked up on PATH, never in the current directory; a fetch never imports subprocess."""
    on_path = tmp_path / "bin"
    on_path.mkdir()
    seen = tmp_path / "seen"
    _fake_buf(
        on_path / "buf",
        f'read line; echo "got [$line]" >&2; ls /proc/$$/fd > {seen}\n'
        f"grep SigIgn /proc/$$/status >> {seen}; echo 'buf 1.45.0'",
    )
    decoy = _fake_buf(tmp_path / "buf", f"touch {tmp_path / 'decoy-ran'}; echo 'buf 1.99.0'")
    code = (
        "import os, signal, sys\n"
        "from bsr_team_cache.bufcache import layout\n"
        "signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel\n"
        "kept = os.open(os.devnull, os.O_RDONLY); os.set_inheritable(kept, True)\n"
        "found = layout.installed_buf_version()\n"
        "print(found, 'subprocess' in sys.modules, kept)\n"
    )
    env = dict(os.environ, PATH=f"{on_path}{os.pathsep}{os.environ['PATH']}", BUF_BIN="buf")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    found, loaded, kept = out.stdout.rsplit(" ", 2)
    assert (found, loaded) == (f"('{on_path / 'buf'}', (1, 45, 0))", "False"), out.stderr
    fds, ignored = seen.read_text().split("SigIgn:")
    assert int(kept) > 2
    assert kept.strip() not in fds.split()  # the descriptor we made inheritable: closed
    assert {"0", "1", "2"} <= set(fds.split())
    assert int(ignored, 16) & (1 << (13 - 1)) == 0  # SIGPIPE (13) not ignored
    assert not (tmp_path / "decoy-ran").exists()
    assert layout.installed_buf_version(decoy) == (decoy, (1, 99, 0))  # a path: that file


def test_without_sessions_buf_still_runs_and_a_hung_one_is_stopped(tmp_path, monkeypatch):
    """Where posix_spawn cannot start a session, buf runs in ours and is stopped alone."""
    spawn = os.posix_spawn

    def no_sessions(*args, setsid: bool = False, **kwargs):
        if setsid:
            raise NotImplementedError("setsid")
        return spawn(*args, **kwargs)

    monkeypatch.setattr(os, "posix_spawn", no_sessions)
    assert layout.installed_buf_version(_fake_buf(tmp_path / "a", "echo 1.50.1"))[1] == (1, 50, 1)
    monkeypatch.setattr(layout, "_VERSION_SECONDS", 0.2)
    pid_file = tmp_path / "pid"
    with pytest.raises(BSRTeamCacheError, match=r"did not finish within 0\.2 s"):
        layout.check_buf_layout(_fake_buf(tmp_path / "b", f"echo $$ > {pid_file}; exec sleep 30"))
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(int(pid_file.read_text()), 0)
