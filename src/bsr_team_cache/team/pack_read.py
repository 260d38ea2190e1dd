"""A cold fetch's lock pack, requested while the fetch machinery is still loading.

On a machine new to a lock, the fetch's first registry request is the pack's (team/packs.py):
one or two round trips, plus the token exchange on registries that want one, which the process
spends waiting. Started in a thread just before the CLI loads the rest of the fetch (team.fetch,
buf's cache writer, the store), that wait overlaps the loading instead of following it. Only
the request moves: the fetch takes the result here when it would read the same pack (same
registry, repository and tag) and checks it exactly as it checks a pack it reads itself
(read_pack, then every member as a module pulled on its own). Anything that makes the pack's
use doubtful here (no buf.lock, one that does not parse, a store that has most of its modules,
a team name that is not valid) starts nothing: the fetch decides as before. A machine that
lacks one module only reads no pack: that module's manifest, its first request then, is started
the same way by the registry itself (start_manifest_read, oci/__init__.py), whose next read of
it takes the answer.

This module is light (no HTTP stack, no artifact codec) until it starts a read: the full fetch
imports it for the rule below, and a fetch served by the store never loads team/packs.py. The
read itself loads no HTTP stack either when the registry was opened from its URL (the pack's
manifest is that registry's first read: oci/direct.py), so a fetch the pack serves never
loads httpx.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bsr_team_cache._deadline import InBackground
from bsr_team_cache.domain.buflock import BUF_LOCK, LockedDep, read_buf_lock
from bsr_team_cache.domain.bufyaml import BUF_YAML
from bsr_team_cache.errors import BSRTeamCacheError
from bsr_team_cache.oci.url import module_repository
from bsr_team_cache.store import INDEX_FILE
from bsr_team_cache.team.names import pack_repository, pack_tag, validate_team_name

if TYPE_CHECKING:
    from bsr_team_cache.oci.base import RegistryBackend
    from bsr_team_cache.team.packs import Pack

PACK_MIN_MODULES = 2  # one module is one request either way
# The store's index is only consulted here, never waited for: locked, the fetch decides.
_INDEX_WAIT = 0.1


def pack_worth_reading(missing: int, total: int) -> bool:
    """Whether a fetch lacking ``missing`` of a lock's ``total`` modules reads the lock's pack:
    it lacks most of them (a few misses go module by module)."""
    return missing >= PACK_MIN_MODULES and 2 * missing >= total


class PackRead:
    """``read_pack`` of one pack, running in the background in the caller's context (so within
    its deadline); ``result`` waits for it and returns or raises what ``read_pack`` did. A
    layer that is not in the manifest goes on arriving after ``result`` (packs.py: members
    are taken as their bytes come in) until the pack is closed: ``close`` does that."""

    def __init__(
        self, registry: RegistryBackend, repo: str, tag: str, wanted: Mapping[str, LockedDep]
    ) -> None:
        self.registry, self.repo, self.tag = registry, repo, tag
        self._closing = threading.Lock()
        self._closed = False
        self._pack: Pack | None = None

        def read() -> Pack | None:
            # The request first (a registry opened from a URL reads it without the HTTP
            # stack: oci/direct.py), then the code that checks the answer.
            found = registry.read_manifest(repo, tag)
            from bsr_team_cache.team.packs import decode_pack

            pack = decode_pack(registry, repo, tag, found, wanted, arriving=True)
            with self._closing:
                self._pack = pack
                if self._closed and pack is not None:  # closed while it was being read
                    pack.close()
            return pack

        # The reader's code loads here, before the caller goes on loading the fetch: the
        # request then leaves as soon as the thread runs (a class attribute: an opened
        # registry hands unknown attributes to its client, which would build it).
        prepare = getattr(type(registry), "prepare_direct_read", None)
        if prepare is not None:
            with contextlib.suppress(Exception):  # the read meets it again, and says so
                prepare(registry)
        self._read = InBackground(read, "lock-pack-read")

    def serves(self, registry: RegistryBackend, repo: str, tag: str) -> bool:
        return registry is self.registry and (repo, tag) == (self.repo, self.tag)

    def close(self) -> None:
        """Read no more of the pack's layer, whether the fetch took the pack or not."""
        with self._closing:
            self._closed = True
            if self._pack is not None:
                self._pack.close()

    def result(self) -> Pack | None:
        """The pack (None if there is none), or what the read raised; RegistryError if it is
        not done by the caller's deadline (which may be sooner than the one it started in)."""
        late = f"{self.registry.describe()}: the lock pack {self.tag[:17]}: the deadline passed"
        return self._read.result(late)


def start_pack_read(
    project: Path,
    *,
    team: str,
    namespace: str,
    registry: RegistryBackend,
    store_root: Path,
    packs: bool = True,
) -> PackRead | None:
    """Start reading the pack of ``project``'s buf.lock if the fetch will want it: the store at
    ``store_root`` lacks most of the lock's modules as buf.lock pins them (pack_worth_reading).
    None otherwise, and on anything unexpected (the fetch then says what it is). When the
    store lacks one module only (a lock of one, googleapis), that module's manifest is the
    fetch's first read: it starts now instead, on registries that can (opened from a URL), and
    the fetch's read of it takes the answer. ``packs`` False (the fetch reads none): only that."""
    try:
        if not (project / BUF_YAML).is_file():
            return None  # the fetch says so
        deps = read_buf_lock(project / BUF_LOCK).deps
        team = validate_team_name(team)
        if any(dep.digest is None for dep in deps):
            return None  # the fetch asks the BSR for digests, then decides
        missing = _missing(store_root, deps)
        if not (packs and pack_worth_reading(len(missing), len(deps))):
            start = getattr(type(registry), "start_manifest_read", None)
            if len(missing) == 1 and start is not None:
                repo = module_repository(team, missing[0].module, namespace)
                start(registry, repo, missing[0].commit)
            return None
        wanted = {f"{d.module}:{d.commit}": d for d in deps}
        return PackRead(registry, pack_repository(team, namespace), pack_tag(deps), wanted)
    except (BSRTeamCacheError, OSError, ValueError, RuntimeError):  # RuntimeError: no thread
        return None


def _missing(store_root: Path, deps: tuple[LockedDep, ...] | list[LockedDep]) -> list[LockedDep]:
    """Those of ``deps`` the fetch may not find in the store: all but the entries recorded with
    the digest buf.lock pins, or with none recorded (the fetch reads and checks those). None of
    them when an index is there but cannot be read at once (locked, unreadable, another
    schema): then no read is started, and the fetch decides."""
    if not (store_root / INDEX_FILE).exists():  # a path refused raises: no read, as below
        return list(deps)  # a new machine (and sqlite3 loads after the request has left)
    import sqlite3

    from bsr_team_cache.store import index

    db = index.open_existing(store_root, wait=_INDEX_WAIT)
    if db is None:
        return []
    try:
        found = index.select_recorded(db, ((str(d.module), d.commit) for d in deps))
    except sqlite3.Error:
        return []
    finally:
        db.close()
    missing = []
    for dep in deps:
        recorded = found.get((str(dep.module), dep.commit))
        if recorded is None or recorded[1 if dep.pins_b4 else 0] not in (None, str(dep.digest)):
            missing.append(dep)
    return missing
