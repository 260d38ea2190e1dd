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

import marshal
import os
import select
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bsr_team_cache._deadline import seconds_left
from bsr_team_cache.bufcache._place_worker import ANSWER, FRAME

if TYPE_CHECKING:
    from bsr_team_cache.domain.digest import Digest
    from bsr_team_cache.domain.moduleref import ModuleName

# From this many entries to write, a worker is started (on machines with two CPUs or more):
# it costs ~35 ms of another CPU to start (an interpreter and buf's cache writer), which a
# fetch spends waiting for the registry, and saves ~0.35 ms of this process per small entry.
PLACER_MIN_ENTRIES = 32
# An entry whose files add up to more than this is written here (a worker is for small ones;
# a large one writes its files with threads of its own, bufcache/v3.py).
_MAX_ENTRY_BYTES = 8 << 20
_WORKER = (
    "import sys; sys.path.insert(0, sys.argv[1]);"
    " from bsr_team_cache.bufcache._place_worker import run; run()"
)

_Entry = tuple  # write_module's arguments, as ``place`` takes them


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Placer:
    """A worker writing entries of buf's cache (``place``, from any thread), and the entries it
    has not said are in place, which ``finish`` writes here."""

    def __init__(self, pid: int, entries: int, answers: int) -> None:
        self._pid: int | None = pid
        self._entries, self._answers = entries, answers  # our ends of its stdin, its stdout
        self._pending: dict[int, _Entry] = {}  # sent, not yet said to be in place
        self._left: list[_Entry] = []  # for this process to write
        self._count = 0
        self._partial = b""  # the start of an answer not read whole yet
        self._lock = threading.Lock()
        self.placed = 0  # entries the worker wrote (or found in place)

    @classmethod
    def start(cls, entries: int) -> Placer | None:
        """A worker, when ``entries`` (to be written) are enough for one to pay and this machine
        has a CPU to spare; else None (and if it cannot be started)."""
        if entries < PLACER_MIN_ENTRIES or not sys.executable or usable_cpus() < 2:
            return None
        from bsr_team_cache._proc import spawn

        root = str(Path(__file__).resolve().parents[2])  # where this package is imported from
        theirs_in, ours_out = os.pipe()
        ours_in, theirs_out = os.pipe()
        try:
            null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            try:
                pid = spawn([sys.executable, "-S", "-c", _WORKER, root], stdin=theirs_in,
                            stdout=theirs_out, stderr=null, env=dict(os.environ))  # fmt: skip
            finally:
                os.close(null)
        except OSError:
            for fd in (theirs_in, ours_out, ours_in, theirs_out):
                os.close(fd)
            return None
        os.close(theirs_in)
        os.close(theirs_out)
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
    ) -> None:
        """write_module's work, handed to the worker (written here by ``finish`` if it does not
        say it is done)."""
        deps = list(deps)
        entry: _Entry = (cache_dir, module, commit, files, deps, digest_type, v1_files)
        with self._lock:
            if self._pid is None or sum(map(len, files.values())) > _MAX_ENTRY_BYTES:
                self._left.append(entry)
                return
            number = self._count
            self._count += 1
            body = marshal.dumps(
                (
                    number,
                    str(cache_dir),
                    (module.registry, module.owner, module.name),
                    commit,
                    files,
                    [((n.registry, n.owner, n.name), c, str(d)) for n, c, d in deps],
                    digest_type,
                    v1_files,
                )
            )
            self._pending[number] = entry
            self._send(FRAME.pack(len(body)) + body)

    def _send(self, frame: bytes) -> None:
        """All of ``frame`` to the worker, reading its answers whenever its input is full (it
        may be waiting for us to read them). The worker given up (it ended, or the deadline
        came first): its entries are left for ``finish``."""
        view = memoryview(frame)
        while view and self._pid is not None:
            try:
                ready, room, _ = select.select([self._answers], [self._entries], [], seconds_left())
            except InterruptedError:
                continue
            if not ready and not room:
                self._give_up()  # the deadline: no more waiting for it
                return
            if ready:
                self._read_answers()
            if room and self._pid is not None:
                try:
                    view = view[os.write(self._entries, view) :]
                except BlockingIOError:
                    continue
                except OSError:  # it ended
                    self._give_up()

    def _read_answers(self) -> bool:
        """Take what the worker has said so far; False once it has said all (its end)."""
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
            entry = self._pending.pop(number, None)
            if entry is not None and not placed:
                self._left.append(entry)  # this process writes it, and says what went wrong
            self.placed += bool(entry is not None and placed)
        self._partial = data[whole:]
        return True

    def _give_up(self) -> None:
        """Stop the worker now; what it has not said is in place is left to this process."""
        if self._pid is not None:
            from bsr_team_cache._proc import kill_and_reap

            kill_and_reap(self._pid)
            self._pid = None
        self._left.extend(self._pending.values())
        self._pending.clear()

    def _end(self) -> None:
        """Tell the worker there is no more, take its answers until it ends (within the
        deadline: then it is stopped), and reap it."""
        if self._pid is None:
            return
        os.close(self._entries)
        self._entries = -1
        while True:
            try:
                ready, _, _ = select.select([self._answers], [], [], seconds_left())
            except InterruptedError:
                continue
            if not ready or not self._read_answers():
                break  # the deadline, or its end
        self._give_up()  # reaped (stopped first if the deadline came)

    def finish(self) -> None:
        """Wait for the worker to write what it was sent, then write here every entry it did
        not place; raises what writing one raises (write_module)."""
        with self._lock:
            self._end()
            left, self._left = self._left, []
        from bsr_team_cache.bufcache.v3 import write_module

        for cache_dir, module, commit, files, deps, digest_type, v1_files in left:
            write_module(
                cache_dir, module, commit, files, deps, digest_type=digest_type, v1_files=v1_files
            )

    def close(self) -> None:
        """End the worker (it writes what it was sent, within the deadline) and close our ends.
        After ``finish``, nothing is left; without it (the fetch failed), the entries it was
        not sent stay unwritten: buf's cache only ever lacks entries."""
        with self._lock:
            self._end()
            self._left.clear()
            for fd in (self._entries, self._answers):
                if fd >= 0:
                    os.close(fd)
            self._entries = self._answers = -1
