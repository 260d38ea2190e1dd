"""The command's deadline (_deadline.py): scopes, and steps of a generator taken within one."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

from bsr_team_cache._deadline import _deadline, deadline_in, deadline_scope, stepped


def _seen(into: list[float], count: int, inner: float | None = None) -> Iterator[int]:
    """``count`` steps, each noting the deadline it runs within; with ``inner``, inside a scope
    of its own held across its yields (as a generator holding a request's time might)."""
    if inner is None:
        for step in range(count):
            into.append(_deadline.get())
            yield step
        return
    with deadline_scope(inner):
        for step in range(count):
            into.append(_deadline.get())
            yield step


def test_each_step_runs_within_the_deadline_and_the_consumer_keeps_its_own() -> None:
    seen: list[float] = []
    until = time.monotonic() + 50
    consumer: list[float] = []
    for _ in stepped(_seen(seen, 3), until):
        consumer.append(_deadline.get())
    assert seen == [until] * 3
    assert consumer == [math.inf] * 3
    with deadline_scope(10) as sooner:
        assert list(stepped(_seen(seen, 1), until)) == [0]
        assert seen[-1] == sooner  # an enclosing deadline that is sooner holds


def test_closing_early_leaves_the_consumers_deadline_as_it_was() -> None:
    """Even for steps that hold a scope of their own across their yields (closed where they
    ran); steps that hold none may be closed from another thread (a generator dropped there)."""
    seen: list[float] = []
    steps = stepped(_seen(seen, 5, inner=100), deadline_in(50))
    assert next(steps) == 0
    steps.close()
    assert _deadline.get() == math.inf
    steps = stepped(_seen(seen, 5), deadline_in(50))
    assert next(steps) == 0
    failures: list[BaseException] = []

    def close_there() -> None:
        try:
            steps.close()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=close_there)
    thread.start()
    thread.join()
    assert failures == []
    assert _deadline.get() == math.inf
