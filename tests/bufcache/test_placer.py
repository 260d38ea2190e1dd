"""The placing process (bufcache/placer.py): it writes buf's cache entries exactly as
write_module does, and whatever it does not write, this process writes (or fails on)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from bsr_team_cache._deadline import deadline_scope
from bsr_team_cache._proc import reap, spawn
from bsr_team_cache.bufcache import placer as placer_module
from bsr_team_cache.bufcache.placer import PLACER_MIN_ENTRIES, Placer
from bsr_team_cache.bufcache.v3 import module_entry_dir, write_module
from bsr_team_cache.domain.digest import SHAKE256, parse_digest
from bsr_team_cache.domain.moduleref import ModuleName, parse_module_name
from bsr_team_cache.errors import BSRTeamCacheError

MONEY = parse_module_name("localhost:8443/acme/money")
MONEY_COMMIT = "2bb75b8cc22842fa8841c641fb25d3a6"


def _entries(count: int) -> list[tuple]:
    """write_module's arguments for ``count`` modules: a few files each, one dep, and every
    fifth a b4 entry of a v1 module (with its own buf.yaml)."""
    entries = []
    for i in range(count):
        module = ModuleName("localhost:8443", "acme", f"lib{i}")
        files = {f"acme/lib{i}/v1/f{k}.proto": f"// {i}.{k}\n".encode() * (k + 1) for k in range(3)}
        b4 = i % 5 == 0
        digest = parse_digest(("shake256:" if b4 else "b5:") + f"{i % 256:02x}" * 64)
        v1_files = {"buf.yaml": b"version: v1\n"} if b4 else None
        kind = SHAKE256 if b4 else "b5"
        entries.append(
            (module, f"{i:032x}", files, [(MONEY, MONEY_COMMIT, digest)], kind, v1_files)
        )
    return entries


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _place_all(placer: Placer, cache: Path, entries: list[tuple]) -> None:
    for module, commit, files, deps, kind, v1_files in entries:
        placer.place(cache, module, commit, files, deps, digest_type=kind, v1_files=v1_files)


def _through_a_worker(cache: Path, entries: list[tuple]) -> Placer:
    """A worker started for ``entries``, sent them all and finished: the placer, for its
    count of entries the worker wrote."""
    placer = Placer.start(len(entries))
    assert placer is not None
    try:
        _place_all(placer, cache, entries)
        placer.finish()
    finally:
        placer.close()
    return placer


@pytest.fixture
def two_cpus(monkeypatch):
    """The worker is for machines with a CPU to spare: these tests run it on any machine. The
    fetch's thread writes entries itself while the worker has _QUEUED waiting: here it never
    does (the test's loop only sends), unless a test says otherwise."""
    monkeypatch.setattr(placer_module, "usable_cpus", lambda: 2)
    monkeypatch.setattr(placer_module, "_QUEUED", 1000)


def test_the_worker_writes_every_entry_as_write_module_does(tmp_path, two_cpus):
    entries = _entries(40)
    for module, commit, files, deps, kind, v1_files in entries:
        write_module(tmp_path / "here", module, commit, files, deps, digest_type=kind,
                     v1_files=v1_files)  # fmt: skip
    placer = _through_a_worker(tmp_path / "there", entries)
    assert placer.placed == 40
    assert _tree(tmp_path / "there") == _tree(tmp_path / "here")
    assert len(_tree(tmp_path / "here")) == 40 * 4 + 8  # 3 files and module.yaml; 8 buf.yaml


def test_no_worker_for_a_few_entries_or_one_cpu(monkeypatch):
    monkeypatch.setattr(placer_module, "usable_cpus", lambda: 2)
    assert Placer.start(PLACER_MIN_ENTRIES - 1) is None
    started = Placer.start(PLACER_MIN_ENTRIES)
    assert started is not None
    started.close()
    monkeypatch.setattr(placer_module, "usable_cpus", lambda: 1)
    assert Placer.start(1000) is None


def test_entries_of_a_worker_that_died_are_written_here(tmp_path, two_cpus):
    entries = _entries(40)
    placer = Placer.start(len(entries))
    assert placer is not None
    try:
        _place_all(placer, tmp_path / "cache", entries[:20])
        os.kill(placer._pid, signal.SIGKILL)  # mid-way: some written, some not
        _place_all(placer, tmp_path / "cache", entries[20:])
        placer.finish()
    finally:
        placer.close()
    assert placer.placed <= 20  # what it wrote before it was killed, at most
    for module, commit, files, _, kind, _ in entries:
        entry = module_entry_dir(tmp_path / "cache", module, commit, kind)
        assert (entry / "module.yaml").is_file()
        assert _tree(entry / "files") == files


def test_an_entry_the_worker_cannot_write_fails_here_as_without_it(tmp_path, two_cpus):
    """A symbolic link planted where an entry goes: the worker refuses it, the others are
    written, and this process meets the same refusal, raised as write_module raises it."""
    entries = _entries(40)
    module, commit, _, _, kind, _ = entries[7]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = module_entry_dir(tmp_path / "cache", module, commit, kind)
    planted.parent.mkdir(parents=True)
    planted.symlink_to(elsewhere, target_is_directory=True)
    placer = Placer.start(len(entries))
    assert placer is not None
    try:
        _place_all(placer, tmp_path / "cache", entries)
        with pytest.raises(BSRTeamCacheError, match="symbolic link"):
            placer.finish()
    finally:
        placer.close()
    assert placer.placed == 39
    assert list(elsewhere.iterdir()) == []


def test_the_fetchs_thread_writes_what_the_worker_has_no_room_for(tmp_path, monkeypatch):
    """At most _QUEUED entries wait for the worker: the rest, and any large entry, are written
    at once by the thread that places them (nothing more is held for the worker)."""
    monkeypatch.setattr(placer_module, "usable_cpus", lambda: 2)
    monkeypatch.setattr(placer_module, "_QUEUED", 0)
    entries = _entries(40)
    placer = Placer.start(len(entries))
    assert placer is not None
    try:
        for module, commit, files, deps, kind, v1_files in entries:
            placer.place(tmp_path, module, commit, files, deps, digest_type=kind,
                         v1_files=v1_files)  # fmt: skip
            assert (module_entry_dir(tmp_path, module, commit, kind) / "module.yaml").is_file()
        monkeypatch.setattr(placer_module, "_QUEUED", 1000)
        big = {"acme/big/f.proto": b"x" * (placer_module._MAX_ENTRY_BYTES + 1)}
        placer.place(tmp_path, MONEY, MONEY_COMMIT, big, [], digest_type="b5")
        assert (module_entry_dir(tmp_path, MONEY, MONEY_COMMIT) / "module.yaml").is_file()
        placer.finish()
    finally:
        placer.close()
    assert placer.placed == 0


def test_the_worker_runs_no_code_from_the_current_directory(tmp_path, two_cpus, monkeypatch):
    """A project checkout (the fetch's usual current directory) holding struct.py, a module the
    worker loads: the worker loads the standard library's, and writes every entry."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    marker = tmp_path / "ran"
    (checkout / "struct.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(checkout)
    entries = _entries(40)
    placer = _through_a_worker(tmp_path / "cache", entries)
    assert placer.placed == 40
    assert not marker.exists()


def test_a_worker_that_never_says_it_is_ready_is_given_up(tmp_path, two_cpus, monkeypatch):
    """An interpreter that does not run the worker's code (here: one that sleeps): it is given
    up _READY_SECONDS after its start, and every entry is written here."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setattr(placer_module.sys, "executable", str(fake))
    monkeypatch.setattr(placer_module, "_READY_SECONDS", 0.3)
    entries = _entries(40)
    started = time.monotonic()
    placer = Placer.start(len(entries))
    assert placer is not None
    pid = placer._pid
    try:
        _place_all(placer, tmp_path / "cache", entries)
        placer.finish()
    finally:
        placer.close()
    assert time.monotonic() - started < 30  # not sleep's 60 s
    assert reap(pid, wait=False) == -1  # stopped and reaped
    assert placer.placed == 0
    for module, commit, files, _, kind, _ in entries:
        assert _tree(module_entry_dir(tmp_path / "cache", module, commit, kind) / "files") == files


def test_descriptors_past_1023_are_waited_on(tmp_path, two_cpus):
    """A process with more than 1,024 descriptors open (a long-running user of the library):
    the worker's pipes are numbered past 1023, which select() cannot wait on."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        entries = _entries(40)
        placer = Placer.start(len(entries))
        assert placer is not None
        assert min(placer._entries, placer._answers) > 1023
        try:
            _place_all(placer, tmp_path / "cache", entries)
            placer.finish()
        finally:
            placer.close()
        assert placer.placed == 40
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _sleeping_worker() -> tuple[Placer, int]:
    """A placer whose worker never reads nor answers (sleep), and its pid."""
    theirs_in, ours_out = os.pipe()
    ours_in, theirs_out = os.pipe()
    pid = spawn(["/bin/sleep", "60"], stdin=theirs_in, stdout=theirs_out, stderr=2,
                env=dict(os.environ))  # fmt: skip
    os.close(theirs_in)
    os.close(theirs_out)
    os.set_blocking(ours_out, False)
    os.set_blocking(ours_in, False)
    return Placer(pid, ours_out, ours_in), pid


def test_a_worker_too_slow_for_the_deadline_is_stopped_and_its_entries_written_here(
    tmp_path, monkeypatch
):
    """A worker that never answers: the fetch sends it _QUEUED entries, writes the others
    itself at once, and at its end waits for it only until the deadline, then stops it and
    writes those too."""
    monkeypatch.setattr(placer_module, "_READY_SECONDS", 600.0)  # the deadline decides
    placer, pid = _sleeping_worker()
    entries = _entries(40)
    started = time.monotonic()
    try:
        _place_all(placer, tmp_path / "cache", entries)
        assert len(placer._pending) == placer_module._QUEUED
        with deadline_scope(0.5):
            placer.finish()
    finally:
        placer.close()
    assert time.monotonic() - started < 30  # the deadline, not sleep's 60 s
    assert reap(pid, wait=False) == -1  # stopped and reaped
    assert placer.placed == 0
    for module, commit, files, _, kind, _ in entries:
        assert _tree(module_entry_dir(tmp_path / "cache", module, commit, kind) / "files") == files


def test_an_entry_its_input_has_no_room_for_is_written_here_at_once(tmp_path, monkeypatch):
    """Frames sent and not answered never exceed what the worker's input holds: one that would
    is written by the fetch's thread at once, never waited for (here the worker never reads)."""
    monkeypatch.setattr(placer_module, "_READY_SECONDS", 0.2)  # closing does not wait longer
    placer, pid = _sleeping_worker()
    share = placer._capacity * 6 // 10
    first = {"acme/a/a.proto": b"a" * share}
    second = {"acme/b/b.proto": b"b" * share}
    other = ModuleName("localhost:8443", "acme", "other")
    try:
        placer.place(tmp_path, MONEY, MONEY_COMMIT, first, [], digest_type="b5")
        assert not module_entry_dir(tmp_path, MONEY, MONEY_COMMIT).exists()  # sent, waiting
        placer.place(tmp_path, other, MONEY_COMMIT, second, [], digest_type="b5")
        assert _tree(module_entry_dir(tmp_path, other, MONEY_COMMIT) / "files") == second
        assert list(placer._pending) == [0]
    finally:
        placer.close()
    assert reap(pid, wait=False) == -1


def test_closing_lets_the_worker_write_what_it_was_sent(tmp_path, two_cpus):
    """A fetch that failed closes the placer without finishing: the worker ends after the
    entries it was sent (none is left half-written), and nothing is written here."""
    entries = _entries(40)
    placer = Placer.start(len(entries))
    assert placer is not None
    pid = placer._pid
    _place_all(placer, tmp_path / "cache", entries)
    placer.close()
    assert reap(pid, wait=False) == -1  # ended and reaped
    assert placer.placed == 40
    assert not list((tmp_path / "cache").rglob(".*"))  # no staging directory left behind
    placer.finish()  # nothing left to write, and no worker
    assert placer.placed == 40


def test_a_thread_never_waits_for_another_threads_send(tmp_path, two_cpus):
    """While one thread sends to the worker (here: holds its lock), another places its entry
    itself, at once."""
    entries = _entries(PLACER_MIN_ENTRIES)
    placer = Placer.start(len(entries))
    assert placer is not None
    try:
        module, commit, files, deps, kind, v1_files = entries[0]
        with placer._lock:
            placer.place(tmp_path, module, commit, files, deps, digest_type=kind,
                         v1_files=v1_files)  # fmt: skip
            assert (module_entry_dir(tmp_path, module, commit, kind) / "module.yaml").is_file()
        placer.finish()
    finally:
        placer.close()
    assert placer.placed == 0


def test_no_descriptors_left_for_a_worker_means_no_worker(monkeypatch, two_cpus):
    """Out of descriptors at the second pipe: no worker, and none of the descriptors opened
    for it is left open."""
    real_pipe = os.pipe
    made: list[int] = []

    def pipe_once():
        if made:
            raise OSError(24, "Too many open files")
        made.extend(real_pipe())
        return tuple(made)

    monkeypatch.setattr(placer_module.os, "pipe", pipe_once)
    before = set(os.listdir("/proc/self/fd"))
    assert Placer.start(PLACER_MIN_ENTRIES) is None
    assert len(made) == 2
    assert set(os.listdir("/proc/self/fd")) == before
