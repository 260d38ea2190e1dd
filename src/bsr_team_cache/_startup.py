"""Loading modules in a process that runs one command and exits (the console script's fetch).

Such a process keeps what its imports make until it ends, so while a group of modules loads
the garbage collector is paused, and afterwards everything made so far is frozen (moved out of
the collector's generations): later collections, and none at exit, scan it. That is 15-25 ms
of a warm fetch's machinery and ~15 ms of a cold fetch's HTTP stack. A library user's process
(SHORT_LIVED False) collects as usual: nothing is frozen there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# Set by the console script's fetch (cli/_fastpath.py) when the process runs only it.
SHORT_LIVED = False


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Around imports (and whatever they make at module level)."""
    if not SHORT_LIVED:
        yield
        return
    import gc

    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
