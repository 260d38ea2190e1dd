"""The deadline of the current command and request: a context variable, so that it follows the
work into worker threads (_threads.ContextThreadPool) and bounds every connection our HTTP
clients open (_http.py). No network imports here: the CLI enters a deadline at start-up."""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Iterator

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar(
    "bsr_team_cache_deadline", default=math.inf
)


@contextlib.contextmanager
def deadline_scope(seconds: float | None) -> Iterator[float]:
    """Everything inside must finish within ``seconds`` (and within any enclosing scope); the
    requests made in this thread (and in workers started by ``_threads``) are cut off then."""
    until = _deadline.get()
    if seconds is not None:
        until = min(until, time.monotonic() + seconds)
    token = _deadline.set(until)
    try:
        yield until
    finally:
        _deadline.reset(token)


def deadline_passed() -> bool:
    return time.monotonic() >= _deadline.get()


def seconds_left() -> float | None:
    """Seconds until the current deadline (0 once passed), or None if there is none."""
    until = _deadline.get()
    return None if until == math.inf else max(0.0, until - time.monotonic())
