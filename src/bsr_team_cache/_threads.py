"""Worker threads that run in the caller's context, so that the current deadline (a context
variable, see _deadline.deadline_scope) also bounds the requests they make.

A small pool of our own (``with``, ``submit``, ``map``, ``Future.result``: all the project
uses) rather than concurrent.futures, which loads logging and with it traceback, textwrap and
string: 8-15 ms of a cold fetch's start-up."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Future(Generic[T]):
    """The outcome of one submitted call."""

    __slots__ = ("_cancelled", "_done", "_error", "_result")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._cancelled = False

    def result(self) -> T:
        """What the call returned, once it has; what it raised is raised here."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        """Skip the call if no worker has started it yet."""
        self._cancelled = True


class ContextThreadPool:
    """Up to ``max_workers`` threads, started as work is submitted; each call runs in a copy
    of the submitter's context. Leaving the ``with`` block waits for every submitted call."""

    def __init__(self, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a pool that is shut down")
            self._work.put((future, contextvars.copy_context(), fn, args, kwargs))
            if len(self._threads) < self._max_workers:
                worker = threading.Thread(target=self._serve, name="bsr-team-cache-worker")
                worker.daemon = True  # always joined by shutdown; never holds up an exit
                worker.start()
                self._threads.append(worker)
        return future

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> Iterator[T]:
        """``fn`` over the items, all submitted now; results in order. A call that raised
        raises when its result is reached, and calls not yet started are then skipped."""
        futures = [self.submit(fn, *args) for args in zip(*iterables, strict=False)]

        def results() -> Iterator[T]:
            try:
                for future in futures:
                    yield future.result()
            finally:
                for future in futures:
                    future.cancel()

        return results()

    def shutdown(self) -> None:
        """Wait for every submitted call; no more may be submitted."""
        with self._lock:
            self._closed = True
            workers = list(self._threads)
        for _ in workers:
            self._work.put(None)
        for worker in workers:
            worker.join()

    def __enter__(self) -> ContextThreadPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, context, fn, args, kwargs = item
            if future._cancelled:
                future._error = CancelledCall()
            else:
                try:
                    future._result = context.run(fn, *args, **kwargs)
                except BaseException as exc:  # given to whoever asks for the result
                    future._error = exc
            future._done.set()


class CancelledCall(Exception):
    """The call was skipped: the results it belonged to were abandoned."""
