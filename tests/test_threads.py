"""The project's worker pool (_threads.ContextThreadPool): calls in the submitter's context,
results in order, errors where their result is asked for, at most max_workers threads."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from bsr_team_cache._threads import ContextThreadPool

VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("value", default="unset")


def test_calls_run_in_the_submitters_context_with_results_in_order() -> None:
    seen: set[str] = set()
    lock = threading.Lock()

    def square(n: int) -> tuple[int, str]:
        with lock:
            seen.add(threading.current_thread().name + str(threading.get_ident()))
        time.sleep(0.001 * (n % 3))  # finish out of order
        return n * n, VALUE.get()

    token = VALUE.set("caller's")
    try:
        with ContextThreadPool(3) as pool:
            results = list(pool.map(square, range(20)))
            single = pool.submit(square, 7).result()
    finally:
        VALUE.reset(token)
    assert results == [(n * n, "caller's") for n in range(20)]
    assert single == (49, "caller's")
    assert 1 <= len(seen) <= 3


def test_an_error_is_raised_at_its_result_and_later_calls_are_skipped() -> None:
    started: list[int] = []
    gate = threading.Event()

    def work(n: int) -> int:
        started.append(n)
        if n == 0:
            raise ValueError("zero")
        gate.wait(5)
        return n

    with ContextThreadPool(1) as pool:
        results = pool.map(work, range(5))
        with pytest.raises(ValueError, match="zero"):
            next(results)
        results.close()  # abandoned: the calls no worker started are skipped
        gate.set()
    assert started[0] == 0 and len(started) <= 2
    with ContextThreadPool(1) as pool, pytest.raises(ValueError):
        pool.submit(int, "not a number").result()


def test_leaving_the_pool_waits_for_every_call_and_closes_it() -> None:
    done: list[int] = []
    with ContextThreadPool(2) as pool:
        for n in range(6):
            pool.submit(lambda n=n: (time.sleep(0.01), done.append(n)))
    assert sorted(done) == list(range(6))
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(print)
    with pytest.raises(ValueError):
        ContextThreadPool(0)
