"""The deadline of the current command and request: a context variable, so that it follows the
work into worker threads (_threads.ContextThreadPool) and bounds every connection our HTTP
clients open (_http.py). No network imports here: the CLI enters a deadline at start-up."""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

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


def deadline_in(seconds: float) -> float:
    """The time (monotonic) ``seconds`` from now, or the current deadline if it is sooner."""
    return min(_deadline.get(), time.monotonic() + seconds)


def stepped(steps: Iterator[T], until: float) -> Iterator[T]:
    """``steps`` passed on, each taken within the deadline ``until`` (and any enclosing one),
    which is in force only while the step runs: not across a yield, where the consumer's code
    runs (and where a generator dropped in another thread would leave a scope it cannot undo).
    Closing this closes ``steps``."""
    try:
        while True:
            token = _deadline.set(min(_deadline.get(), until))
            try:
                step = next(steps)
            except StopIteration:
                return
            finally:
                _deadline.reset(token)
            yield step
    finally:
        close = getattr(steps, "close", None)
        if close is not None:  # what ``steps`` runs as it closes is a step too
            token = _deadline.set(min(_deadline.get(), until))
            try:
                close()
            finally:
                _deadline.reset(token)


def deadline_passed() -> bool:
    return time.monotonic() >= _deadline.get()


def seconds_left() -> float | None:
    """Seconds until the current deadline (0 once passed), or None if there is none."""
    until = _deadline.get()
    return None if until == math.inf else max(0.0, until - time.monotonic())
