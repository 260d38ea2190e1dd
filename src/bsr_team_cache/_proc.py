"""Child processes: started without the ``subprocess`` module on the fetch path (``spawn``:
a fetch would load subprocess, selectors and locale only for this, ~4 ms), stopped politely,
then firmly (``stop_process``, for the servers tests and tools start)."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess


def spawn(argv: list[str], *, stdin: int, stdout: int, stderr: int, env: dict[str, str]) -> int:
    """Start ``argv`` as subprocess would (its pid): in a session of its own where the system
    allows one, with ``stdin``/``stdout``/``stderr`` (descriptors of ours), no other
    descriptor of ours (not even ones our parent let us inherit), SIGPIPE and SIGXFSZ at their
    defaults. OSError if it cannot be started."""
    actions: list[tuple] = [
        (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_descriptors()]
    options = {"file_actions": actions, "setsigdef": (signal.SIGPIPE, signal.SIGXFSZ)}
    try:
        return os.posix_spawn(argv[0], argv, env, setsid=True, **options)
    except NotImplementedError:  # no new session here: stopping it stops only the child
        return os.posix_spawn(argv[0], argv, env, **options)


def kill_and_reap(pid: int) -> int:
    """Reap the child ``pid``, SIGKILLing first the session it leads (or the process alone,
    where it has no session of its own) if it has not ended; its exit code (-1 if it was
    reaped already). Never a kill once it is reaped: its pid may be another's then."""
    ended = reap(pid, wait=False)
    if ended is not None:
        return ended
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return reap(pid)


def reap(pid: int, *, wait: bool = True) -> int | None:
    """The child's exit code once it has ended (and is reaped); None if ``wait`` is False and it
    is still running. -1 if it was reaped already (SIGCHLD ignored)."""
    try:
        found, status = os.waitpid(pid, 0 if wait else os.WNOHANG)
    except ChildProcessError:
        return -1
    return os.waitstatus_to_exitcode(status) if found == pid else None


def _inherited_descriptors() -> list[int]:
    """Our descriptors above 2 that a child would inherit (Python makes its own
    non-inheritable; these come from whoever started us, e.g. a make jobserver's)."""
    try:
        listed = os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd")
    except OSError:
        return []
    inherited = []
    for name in listed:
        fd = int(name)
        with contextlib.suppress(OSError):  # the listing's own descriptor, now closed
            if fd > 2 and os.get_inheritable(fd):
                inherited.append(fd)
    return inherited


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
