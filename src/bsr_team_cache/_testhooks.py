"""Named points in the write path where a test can kill this process (``kill -9``), to show
that no point leaves a half-written entry: ``BSR_TEAM_CACHE_KILL_AT=<point>``. Unset (always,
outside such tests), a point costs one dictionary lookup."""

from __future__ import annotations

import os
import signal

POINTS = (
    "store.blobs-written",  # a module's blobs are in the store, its index row is not
    "store.row-written",  # the index row is in, the transaction not yet committed
    "bufcache.files-written",  # buf's entry is staged without module.yaml
    "bufcache.before-rename",  # staged with module.yaml, not yet renamed into place
    "publish.blobs-pushed",  # blobs in the team registry, the manifest (tag) not yet
)


def reached(point: str) -> None:
    if os.environ.get("BSR_TEAM_CACHE_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
