"""Where the fetch streams a large files layer from the team registry (oci/streaming.py): the
local store's temporary file (the layer as it arrived) and the staging directory of buf's
cache entry, of the digest type buf.lock pins. Both are opened only once a layer is streamed."""

from __future__ import annotations

from pathlib import Path

from bsr_team_cache.bufcache.v3 import EntryWriter
from bsr_team_cache.domain.buflock import LockedDep
from bsr_team_cache.domain.digest import B5, SHAKE256
from bsr_team_cache.oci.streaming import LayerSinks, OpenSinks
from bsr_team_cache.store.fallible import FallibleStore
from bsr_team_cache.store.local import LocalStore


def layer_sinks(
    store: LocalStore | FallibleStore | None, buf_cache: Path | None, dep: LockedDep
) -> OpenSinks:
    """What ``pull_module`` streams ``dep``'s layer into, when it streams one: a store that
    fails to give a temporary file (a FallibleStore then warns) or a complete buf cache entry
    leaves that sink out."""

    def open_sinks() -> LayerSinks:
        blob = store.temp_blob() if store is not None else None
        try:
            files = None
            if buf_cache is not None:
                kind = SHAKE256 if dep.pins_b4 else B5
                files = EntryWriter.open(buf_cache, dep.module, dep.commit, kind)
        except BaseException:
            if blob is not None:
                blob.discard()
            raise
        return LayerSinks(blob, files)

    return open_sinks
