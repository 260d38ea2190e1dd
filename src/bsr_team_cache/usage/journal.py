"""The recording side of the event log: commands append JSON lines to ``events.jsonl`` beside
the log (one write, no SQLite on a fetch's path), and the next reader of the log moves them in.

Appends hold a shared lock on the journal. A reader, holding ``events.jsonl.lock`` so that
readers take turns, renames the journal aside, takes its exclusive lock (appends in flight
finish first), moves its lines into the log, and only then removes it: a reader that dies
leaves the renamed journal for the next one (events are keyed, so none counts twice). An
append that opened the journal before the rename notices (the path no longer names its file)
and appends to the new journal instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bsr_team_cache._fs import append_lines

JOURNAL = "events.jsonl"


def append(root: Path, lines: list[str]) -> None:
    """Append JSON ``lines`` (events as ``usage export`` writes them, or ``{"counter": name,
    "n": k}``) in one write."""
    append_lines(root / JOURNAL, lines)


@contextlib.contextmanager
def draining(root: Path) -> Iterator[list[Path]]:
    """The journals to move into the log (renamed aside; the caller reads them with
    ``lines``); removed when the block ends without an exception."""
    path = root / JOURNAL
    if not path.exists() and not any(root.glob(f".{JOURNAL}.*")):
        yield []  # the common case: nothing recorded since the last reader
        return
    lock = os.open(root / f"{JOURNAL}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        claimed = sorted(root.glob(f".{JOURNAL}.*"))  # left by a reader that died
        aside = root / f".{JOURNAL}.{os.getpid()}.{os.urandom(4).hex()}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, aside)
            claimed.append(aside)
        yield claimed
        for done in claimed:
            with contextlib.suppress(FileNotFoundError):
                done.unlink()
    finally:
        os.close(lock)


def lines(path: Path) -> Iterator[bytes]:
    """A claimed journal's complete lines (a torn last line, from a writer killed mid-write,
    is dropped), once appends in flight have finished."""
    with open(path, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        for line in f:
            if line.endswith(b"\n") and line.strip():
                yield line
