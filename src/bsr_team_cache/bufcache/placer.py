"""buf's cache entries written by a second process while the fetch goes on checking modules.

A fetch placing many small modules it holds in memory (a lock pack's, a bundle's) spends about
as long writing their entries (a directory tree each: system calls and the interpreter's work
around them) as checking them. A thread would share the interpreter with the checking, which
hands it over at every system call; a process does not. The worker (_place_worker.py) gets each
entry over a pipe, writes it with ``write_module`` exactly as the fetch would, and answers.

The worker only ever saves time: the fetch keeps every entry it sent until the worker says it
is in place, and writes itself whatever the worker did not (it could not, it ended, it was too
slow for the deadline), raising what it meets as it would without a worker. The worker is sent
only entries the fetch checked and would write itself, and it writes nothing else; it ends when
its input does, so also when the fetch is killed.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bsr_team_cache._cpus import usable_cpus
from bsr_team_cache._deadline import seconds_left
from bsr_team_cache.bufcache._place_worker import ANSWER, FRAME, READY

if TYPE_CHECKING:
    from bsr_team_cache.domain.digest import Digest
    from bsr_team_cache.domain.moduleref import ModuleName

# From this many entries to write, a worker is started (on machines with two CPUs or more):
# it costs ~35 ms of another CPU to start (an interpreter and buf's cache writer), which a
# fetch spends waiting for the registry, and saves ~0.35 ms of this process per small entry.
PLACER_MIN_ENTRIES = 32
# An entry whose files add up to more than this is written here, at once: the worker is for
# small ones (a large one writes its files with threads of its own, bufcache/v3.py), and what
# is sent is held until answered.
_MAX_ENTRY_BYTES = 1 << 20
# Entries sent and not yet answered, at most: beyond, the fetch's thread writes the entry itself
# instead of waiting for the worker (the two share the work as their speeds allow, and at most
# this many entries are held for it).
_QUEUED = 8
# A worker that has not said it is ready (its code loaded) this long after its start is given
# up: an interpreter that does not run it (an embedding application as sys.executable).
_READY_SECONDS = 5.0
# -S: no site (its .pth files); -P: nothing from the current directory (a project checkout
# may hold a struct.py). This package's location goes after the standard library's.
_WORKER = (
    "import sys; sys.path.append(sys.argv[1]);"
    " from bsr_team_cache.bufcache._place_worker import run; run()"
)

_Entry = tuple  # write_module's arguments, as ``place`` takes them


def _pipe_capacity(fd: int) -> int:
    """The bytes the pipe ``fd`` holds, made 1 MiB where the system allows (Linux; the most an
    unprivileged process may ask by default), less a page: frames sent and not yet read, in
    all, never exceed it."""
    import fcntl

    setting, getting = getattr(fcntl, "F_SETPIPE_SZ", None), getattr(fcntl, "F_GETPIPE_SZ", None)
    size = 16 << 10  # the least a pipe holds (macOS)
    with contextlib.suppress(OSError):
        if setting is not None:
            fcntl.fcntl(fd, setting, _MAX_ENTRY_BYTES)
        if getting is not None:
            size = fcntl.fcntl(fd, getting)
    return max(0, size - 4096)


class Placer:
    """A worker writing entries of buf's cache (``place``, from any thread), and the entries it
    has not said are in place, which ``finish`` writes here."""

    def __init__(self, pid: int, entries: int, answers: int) -> None:
        self._pid: int | None = pid
        self._entries, self._answers = entries, answers  # our ends of its stdin, its stdout
        self._started = time.monotonic()
        self._ready = False  # it said its code is loaded
        self._pending: dict[int, tuple[_Entry, int]] = {}  # sent (frame's size), not answered
        self._in_flight = 0  # bytes of those frames: at most what its input holds
        self._capacity = _pipe_capacity(entries)
        self._left: list[_Entry] = []  # for this process to write
        self._count = 0
        self._partial = b""  # the start of an answer not read whole yet
        self._lock = threading.Lock()
        self.placed = 0  # entries the worker wrote (or found in place)

    @classmethod
    def start(cls, entries: int) -> Placer | None:
        """A worker, when ``entries`` (to be written) are enough for one to pay and this machine
        has a CPU to spare; else None (and if it cannot be started)."""
        if (
            entries < PLACER_MIN_ENTRIES
            or not sys.executable
            or getattr(sys, "frozen", False)  # sys.executable is the application itself
            or usable_cpus() < 2
        ):
            return None
        from bsr_team_cache._proc import spawn

        # Where this package was imported from (not resolved: a link farm's own tree).
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        # As isolated from the environment as this process is (-E, -s), and more (-S, -P).
        flags = ["-S", "-P"] + ["-E"] * sys.flags.ignore_environment
        flags += ["-s"] * sys.flags.no_user_site + ["-B"] * sys.flags.dont_write_bytecode
        opened: list[int] = []
        try:
            for _ in range(2):
                opened += os.pipe()
            theirs_in, ours_out, ours_in, theirs_out = opened
            opened.append(os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))
            pid = spawn([sys.executable, *flags, "-c", _WORKER, root], stdin=theirs_in,
                        stdout=theirs_out, stderr=opened[-1], env=dict(os.environ))  # fmt: skip
        except Exception:  # no descriptors, or no posix_spawn here: the fetch writes them all
            for fd in opened:
                os.close(fd)
            return None
        for fd in (theirs_in, theirs_out, opened[-1]):
            os.close(fd)
        os.set_blocking(ours_out, False)
        os.set_blocking(ours_in, False)
        return cls(pid, ours_out, ours_in)

    def place(
        self,
        cache_dir: Path,
        module: ModuleName,
        commit: str,
        files: dict[str, bytes],
        deps: Iterable[tuple[ModuleName, str, Digest]],
        *,
        digest_type: str,
        v1_files: dict[str, bytes] | None = None,
    ) -> bool:
        """write_module's work: handed to the worker (True), unless it has enough queued
        already or the entry is large (then this thread, which would otherwise wait for it,
        writes the entry now: write_module's answer). What the worker does not say it wrote,
        ``finish`` writes here."""
        deps = list(deps)
        entry: _Entry = (cache_dir, module, commit, files, deps, digest_type, v1_files)
        # Never waiting for another thread's send: a busy lock means this thread writes.
        size = sum(map(len, files.values()))
        if size <= _MAX_ENTRY_BYTES and self._lock.acquire(False):
            try:
                if self._has_room(size) and self._send(entry):
                    return True
            finally:
                self._lock.release()
        return _write_here(entry)

    def _has_room(self, size: int) -> bool:
        """Whether the worker runs, has fewer than _QUEUED entries to write, and its input room
        for ``size`` more bytes (its answers so far taken)."""

        def room() -> bool:
            return len(self._pending) < _QUEUED and self._in_flight + size <= self._capacity

        if self._pid is not None and not room() and not self._take():
            self._give_up()  # it ended
        return self._pid is not None and room()

    def _send(self, entry: _Entry) -> bool:
        """``entry`` sent to the worker, whole (then it waits for its answer); False if its
        input has no room for it now (then the caller writes it, at once) or the worker was
        given up meanwhile. Frames sent and not answered never exceed what the worker's input
        holds, so a frame is written whole by one write that does not wait."""
        cache_dir, module, commit, files, deps, digest_type, v1_files = entry
        body = marshal.dumps(
            (
                str(cache_dir),
                (module.registry, module.owner, module.name),
                commit,
                files,
                [((n.registry, n.owner, n.name), c, str(d)) for n, c, d in deps],
                digest_type,
                v1_files,
            )
        )
        frame = FRAME.pack(len(body), self._count) + body
        if self._in_flight + len(frame) > self._capacity:
            return False
        view = memoryview(frame)
        while view and self._pid is not None:
            try:
                view = view[os.write(self._entries, view) :]
                continue
            except BlockingIOError:  # (a pipe's pages not all full: not expected)
                pass
            except OSError:  # it ended
                self._give_up()
                return False
            if not self._wait(select.POLLOUT):
                self._give_up()  # the wait ran out
                return False
            self._take()
        if view:
            return False
        self._pending[self._count] = (entry, len(frame))
        self._in_flight += len(frame)
        self._count += 1
        return True

    def _wait(self, events: int) -> int:
        """Wait for ``events`` (POLLOUT: room in its input; POLLIN: answers or its end); 0 if
        the wait ran out: the deadline, or the time it has to say it is ready."""
        poller = select.poll()  # (no select.select: descriptors past 1023)
        fd = self._entries if events & select.POLLOUT else self._answers
        poller.register(fd, events)
        while True:
            if not self._ready:
                self._take()  # its first answer may be in
            left = seconds_left()
            if not self._ready:
                wait = self._started + _READY_SECONDS - time.monotonic()
                left = wait if left is None else min(left, wait)
            if left is not None and left <= 0:
                return 0
            try:
                found = poller.poll(None if left is None else max(1, int(left * 1000) + 1))
            except InterruptedError:
                continue
            return found[0][1] if found else 0

    def _take(self) -> bool:
        """Take what the worker has said so far; False once it has ended (its output closed)."""
        try:
            data = os.read(self._answers, 1 << 16)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            return False
        data = self._partial + data
        whole = len(data) - len(data) % ANSWER.size
        for number, placed in ANSWER.iter_unpack(data[:whole]):
            if number == READY:
                self._ready = True
                continue
            sent = self._pending.pop(number, None)
            if sent is None:
                continue
            entry, size = sent
            self._in_flight -= size
            if placed:
                self.placed += 1
            else:
                self._left.append(entry)  # this process writes it, and says what went wrong
        self._partial = data[whole:]
        return True

    def _give_up(self) -> None:
        """Stop the worker now (unless it has ended); what it has not said is in place is left
        to this process."""
        pid, self._pid = self._pid, None
        self._left.extend(entry for entry, _ in self._pending.values())
        self._pending.clear()
        self._in_flight = 0
        if pid is not None:
            from bsr_team_cache._proc import kill_and_reap

            kill_and_reap(pid)

    def _end(self) -> None:
        """Tell the worker there is no more, take its answers until it ends (within the
        deadline: then it is stopped), and reap it."""
        try:
            if self._entries >= 0:
                os.close(self._entries)
                self._entries = -1
            while self._pid is not None and self._wait(select.POLLIN) and self._take():
                pass
        finally:
            self._give_up()  # reaped (stopped first if it had not ended)

    def finish(self) -> None:
        """Wait for the worker to write what it was sent, then write here every entry it did
        not place; raises what writing one raises (write_module)."""
        with self._lock:
            self._end()
            left, self._left = self._left, []
        for entry in left:
            _write_here(entry)

    def close(self) -> None:
        """End the worker (it writes what it was sent, within the deadline) and close our ends.
        After ``finish``, nothing is left; without it (the fetch failed), the entries it was
        not sent stay unwritten: buf's cache only ever lacks entries."""
        with self._lock:
            try:
                self._end()
            finally:
                self._left.clear()
                for fd in (self._entries, self._answers):
                    if fd >= 0:
                        os.close(fd)
                self._entries = self._answers = -1


def _write_here(entry: _Entry) -> bool:
    """write_module of ``entry``, by this process."""
    from bsr_team_cache.bufcache.v3 import write_module

    cache_dir, module, commit, files, deps, digest_type, v1_files = entry
    return write_module(
        cache_dir, module, commit, files, deps, digest_type=digest_type, v1_files=v1_files
    )
