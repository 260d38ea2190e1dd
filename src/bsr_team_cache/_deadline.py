"""The deadline of the current command and request: a context variable, so that it follows the
work into worker threads (_threads.ContextThreadPool) and bounds every connection our HTTP
clients open (_http.py), and work begun in the background (InBackground). No network imports
here: the CLI enters a deadline at start-up."""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from bsr_team_cache.errors import RegistryError

T = TypeVar("T")

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar(
    "bsr_team_cache_deadline", default=math.inf
)


@contextlib.contextmanager
def deadline_scope(seconds: float | None) -> Iterator[float]:
    """Everything inside must finish within ``seconds`` (and within any enclosing scope); the
    requests made in this thread (and in workers started by ``_threads``) are cut off then."""
    with _deadline_at(math.inf if seconds is None else time.monotonic() + seconds) as until:
        yield until


@contextlib.contextmanager
def _deadline_at(until: float) -> Iterator[float]:
    """Everything inside must finish by ``until`` (monotonic), or any enclosing deadline."""
    until = min(_deadline.get(), until)
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
            with _deadline_at(until):
                step = next(steps, _DONE)
            if step is _DONE:
                return
            yield step
    finally:
        close = getattr(steps, "close", None)
        if close is not None:  # what ``steps`` runs as it closes is a step too
            with _deadline_at(until):
                close()


_DONE: Any = object()


class InBackground(Generic[T]):
    """``call()``, begun now in a daemon thread in the caller's context (so within its
    deadline): a request made while the caller goes on. ``result`` waits for it within the
    waiter's own deadline, and returns or raises what ``call`` did. RuntimeError here if no
    thread can be started."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._value: T | None = None
        self._failure: BaseException | None = None
        self.failed_past_its_deadline = False  # it raised once its own deadline had passed

        def run() -> None:
            try:
                self._value = call()
            except BaseException as exc:  # raised where the result is taken
                self._failure, self.failed_past_its_deadline = exc, deadline_passed()

        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(run,), name=name, daemon=True)
        self._thread.start()

    def result(self, late: str) -> T | None:
        """What ``call`` returned, or what it raised; RegistryError(``late``) if it is not done
        by the waiter's deadline (which may be sooner than the one it started in)."""
        self._thread.join(seconds_left())
        if self._thread.is_alive():
            raise RegistryError(late)
        if self._failure is not None:
            raise self._failure
        return self._value


def deadline_passed() -> bool:
    return time.monotonic() >= _deadline.get()


def seconds_left() -> float | None:
    """Seconds until the current deadline (0 once passed), or None if there is none."""
    until = _deadline.get()
    return None if until == math.inf else max(0.0, until - time.monotonic())
