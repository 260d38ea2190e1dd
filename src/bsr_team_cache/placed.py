"""A fetch that finds every module buf.lock pins already in place, without the fetch machinery.

"In place" is what the full fetch's first step asks of each module (team/fetch.py,
``_already_placed``): the local store holds it, recorded with the digest buf.lock pins, and
buf's cache entry for it is complete (buf verifies that digest against the files when it reads
them). That is every run of a build after its first, so this path reads only what that needs —
buf.lock's bytes, the store's memo of their last parse, the store's index, one ``stat`` per
module — records the use as the full fetch does (the LRU order, a usage event per module, an
audit record), and loads none of the domain types, artifact codec, registry or BSR clients.

Anything else — a module missing, recorded with another digest or with an incomplete entry, a
buf.lock not parsed before (no memo, or a memo of other bytes), a store of another schema, an
error of any kind — and ``fetch_if_placed`` returns None having written nothing: the full fetch
runs, and it says what is wrong.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from bsr_team_cache._fs import read_regular_file
from bsr_team_cache.bufcache.layout import ENTRY_KINDS, MODULE_YAML, entry_dir_of
from bsr_team_cache.errors import BSRTeamCacheError, StoreError, UsageError
from bsr_team_cache.store.index import (
    flocks,
    lock_memo_key,
    open_existing,
    select_indexed,
    select_kv,
    update_last_used,
    use_lock_path,
)
from bsr_team_cache.team.names import validate_team_name
from bsr_team_cache.usage.events import LOCAL
from bsr_team_cache.usage.record import ModuleResult, record_modules

# domain.bufyaml.BUF_YAML and domain.buflock.BUF_LOCK (modules this path does not load).
BUF_YAML, BUF_LOCK = "buf.yaml", "buf.lock"
LOCK_VERSIONS = ("v1beta1", "v1", "v2")
# The memo holds what the full fetch parsed and validated; this checks it again only as far as
# the paths it names depend on it: three plain name parts, a commit id.
_NAME_PART = re.compile(r"[^/\x00]+")
_COMMIT = re.compile(r"[0-9a-f]{32}")
_DIGEST = re.compile(r"(?:b5|shake256):[0-9a-f]{128}")
# A buf.lock larger than this is left to the full fetch (thousands of deps take well under 1 MiB).
_LOCK_MAX_BYTES = 16 << 20
# How long the use is waited for when another process writes the index; then the full fetch
# runs (which waits as long as any store write does).
_BUSY_MS = 2000


class PlacedFetch(NamedTuple):
    modules: list[ModuleResult]
    seconds: float  # the fetch, as the full fetch's report counts it (recording excluded)
    warnings: list[str]  # from recording (a log that could not be written)


def fetch_if_placed(
    project: Path,
    *,
    store_root: Path,
    buf_cache: Path,
    team: str,
    member: str,
    before_use: Callable[[], object] | None = None,
) -> PlacedFetch | None:
    """The fetch of ``project``'s deps if every one is in place (recorded as the full fetch
    records it); None, with nothing written, if the full fetch must run. ``before_use`` is
    called once every dep is found in place, before the use is recorded (what it raises
    passes through, nothing written)."""
    started = time.time()
    if not (project / BUF_YAML).is_file():
        return None
    try:
        validate_team_name(team)
    except UsageError:
        return None  # the full fetch says what is wrong, after what it checks first
    db = open_existing(store_root, wait=_BUSY_MS / 1000)
    if db is None:
        return None
    try:
        with contextlib.closing(db):
            pins = _memo_pins(db, project / BUF_LOCK)
            if pins is None:
                return None
            # Held, as the full fetch holds them, until the use is recorded: eviction skips
            # these entries meanwhile.
            uses = (use_lock_path(store_root, name, commit) for name, commit, _, _ in pins)
            with flocks(uses, fcntl.LOCK_SH):
                modules = _placed(db, pins, buf_cache)
                if modules is None:
                    return None
                if before_use is not None:
                    before_use()
                now = time.time()
                db.execute("BEGIN IMMEDIATE")  # waits _BUSY_MS at most (open_existing's wait)
                try:
                    update_last_used(db, [(now, m.name, m.commit) for m in modules])
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
    except (sqlite3.Error, OSError, StoreError):
        return None  # the full fetch reports it (as a warning: the store is an optimisation)
    seconds = time.time() - started
    warnings: list[str] = []
    record_modules(store_root, modules, warnings, started, team=team, member=member,
                   operation="fetch", project=str(project.resolve()))  # fmt: skip
    return PlacedFetch(modules, seconds, warnings)


def _placed(
    db: sqlite3.Connection, pins: list[tuple[str, str, str, str]], buf_cache: Path
) -> list[ModuleResult] | None:
    t0 = time.time()
    indexed = select_indexed(db, [(name, commit) for name, commit, _, _ in pins])
    modules = []
    for name, commit, digest, kind in pins:
        row = indexed.get((name, commit))
        if row is None:
            return None
        recorded_b5, recorded_b4, files_bytes = row
        if (recorded_b4 if kind == "shake256" else recorded_b5) != digest:
            return None
        entry = entry_dir_of(buf_cache, kind, *name.split("/"), commit)
        if not os.path.exists(entry / MODULE_YAML):
            return None
        modules.append(
            ModuleResult(name, commit, LOCAL, files_bytes, time.time() - t0, digest=digest)
        )
    return modules


def _memo_pins(db: sqlite3.Connection, lock_path: Path) -> list[tuple[str, str, str, str]] | None:
    """(module, commit, digest, entry kind) of each dep, from the store's memo of buf.lock's
    last parse (team/resolve.py writes it) if the memo is of these bytes; None otherwise, or if
    a dep has no digest (the full fetch asks the BSR for it)."""
    try:  # a FIFO never blocks, a device is never read; links followed as ``is_file`` does
        data = read_regular_file(lock_path, _LOCK_MAX_BYTES, follow_links=True)
    except (OSError, BSRTeamCacheError):
        return None
    memo = select_kv(db, lock_memo_key(lock_path))
    if memo is None:
        return None
    try:
        value = json.loads(memo)
        if value["sha256"] != hashlib.sha256(data).hexdigest():
            return None
        lock = value["lock"]
        if lock["version"] not in LOCK_VERSIONS:
            return None
        pins = []
        for name, commit, digest in lock["deps"]:
            if not (_plain_name(name) and isinstance(commit, str) and isinstance(digest, str)):
                return None
            kind = digest.partition(":")[0]
            if not (_COMMIT.fullmatch(commit) and _DIGEST.fullmatch(digest)):
                return None
            assert kind in ENTRY_KINDS
            pins.append((name, commit, digest, kind))
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return pins


def _plain_name(name: object) -> bool:
    """registry/owner/name, each part a plain file name (an entry's path is built of them)."""
    if not isinstance(name, str):
        return False
    parts = name.split("/")
    return len(parts) == 3 and all(_NAME_PART.fullmatch(p) and p not in (".", "..") for p in parts)
