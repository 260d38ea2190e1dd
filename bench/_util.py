"""Small helpers shared by the benchmarks (they print ratios measured side by side)."""

from __future__ import annotations

import atexit
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def median_seconds(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


@dataclass
class ChildRun:
    """One child process, run to its end: wall time, peak RSS, exit status, output."""

    seconds: float
    max_rss_bytes: int
    returncode: int
    stdout: bytes
    stderr: bytes


# The spawner: a minimal interpreter (no site, stdlib only) that forks and execs each child and
# reaps it with os.wait4. A child's ru_maxrss counts the memory of the process it was forked
# from, up to its exec (Linux keeps the larger of the old and new address spaces' peaks): forked
# from the benchmark itself, which holds dev-bsr's answers, every child would report at least
# the benchmark's own peak. Forked from this small process it reports its own.
_SPAWNER = r"""
import json, os, signal, sys, time
def alarm(signum, frame):
    os.kill(pid, signal.SIGKILL)
signal.signal(signal.SIGALRM, alarm)
for line in sys.stdin:
    req = json.loads(line)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(req["cwd"] or ".")
            for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_TRUNC), fd)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.execvpe(req["argv"][0], req["argv"], req["env"])
        except BaseException as exc:
            os.write(2, f"cannot run {req['argv'][0]}: {exc}\n".encode())
        os._exit(127)
    signal.setitimer(signal.ITIMER_REAL, req["timeout"])
    _, status, usage = os.wait4(pid, 0)
    signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - start
    answer = [seconds, usage.ru_maxrss, os.waitstatus_to_exitcode(status)]
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


class _Spawner:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _SPAWNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lock = threading.Lock()

    def run(self, request: dict) -> list:
        with self.lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark's spawner process died")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


_spawner: _Spawner | None = None


def _get_spawner() -> _Spawner:
    global _spawner
    if _spawner is None:
        _spawner = _Spawner()
        atexit.register(_spawner.close)
    return _spawner


def run_child(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800.0,
) -> ChildRun:
    """Run ``argv`` to its end: the wall time from fork to reaping, measured next to the child,
    and its peak resident set size (ru_maxrss from ``os.wait4``: the largest of the child and of
    every descendant it waited for, e.g. both sides of a shell pipeline). Children are forked
    by a small spawner process (see _SPAWNER), their output goes to temporary files, and they
    are killed after ``timeout`` seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        out.touch()
        err.touch()
        request = {
            "argv": argv,
            "env": dict(os.environ if env is None else env),
            "cwd": str(cwd) if cwd else None,
            "stdout": str(out),
            "stderr": str(err),
            "timeout": timeout,
        }
        seconds, max_rss, returncode = _get_spawner().run(request)
        # ru_maxrss is in KiB on Linux, in bytes on macOS.
        rss = max_rss if sys.platform == "darwin" else max_rss * 1024
        return ChildRun(seconds, rss, returncode, out.read_bytes(), err.read_bytes())


def check_child(what: str, run: ChildRun) -> ChildRun:
    """``run``, or an error that shows what the child said."""
    if run.returncode != 0:
        said = (run.stderr or run.stdout).decode(errors="replace").strip()[-3000:]
        raise RuntimeError(f"{what} failed (exit {run.returncode}):\n{said}")
    return run


def summary(samples: list[float]) -> tuple[float, float]:
    """(min, median) of ``samples``."""
    return min(samples), statistics.median(samples)
