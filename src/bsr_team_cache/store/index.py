"""Where the local store is, and its SQLite index as a warm fetch reads it: which entries are
here with which digests, the memos kept beside them, and a use of an entry. Light on purpose
(sqlite3 only: no artifact codec, no domain types): LocalStore runs these statements, and a
fetch finding every module in place (placed.py) needs no more than this."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from bsr_team_cache.errors import StoreError
from bsr_team_cache.store import INDEX_FILE

SCHEMA_VERSION = 3
# Files that ``use`` locks are striped over (eviction skips an entry whose stripe is held).
USE_LOCK_STRIPES = 64
# Keys per statement (SQLite's parameter limit is 32,766; two per key).
_CHUNK = 400


def lock_key(module: str, commit: str) -> str:
    """The name part of an entry's lock files."""
    return hashlib.sha256(f"{module}:{commit}".encode()).hexdigest()[:32]


def use_stripe(module: str, commit: str) -> int:
    """The "use" lock stripe of an entry (entries of a stripe are spared together)."""
    return int(lock_key(module, commit)[:8], 16) % USE_LOCK_STRIPES


def use_lock_path(root: Path, module: str, commit: str) -> Path:
    """The file a fetch holds shared while it uses the entry (LocalStore.using)."""
    return root / "locks" / f"stripe-{use_stripe(module, commit):02d}.use"


def connect(path: Path, wait: float = 60.0) -> sqlite3.Connection:
    """The index at ``path``, as every user of it opens it (autocommit: transactions are
    explicit; waiting up to ``wait`` seconds for another process's write)."""
    db = sqlite3.connect(path, timeout=wait, isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def schema_in_turn(
    db: sqlite3.Connection, lock_path: Path, schema_version: int, make: Callable[[int], None]
) -> None:
    """``make(version found)`` unless the database at ``db`` has ``schema_version``, after
    turning it to WAL, holding ``lock_path`` (exclusive): one process at a time. Two connections
    turning one new database to WAL at once can have one refused at once, without waiting
    (SQLite's deadlock avoidance), whatever the timeout; the common case (the schema there,
    WAL set when it was made, which persists) writes nothing and takes no lock."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == schema_version:
        return
    with flocks([lock_path], fcntl.LOCK_EX):
        db.execute("PRAGMA journal_mode=WAL")
        (version,) = db.execute("PRAGMA user_version").fetchone()  # made meanwhile?
        if version != schema_version:
            make(version)


@contextlib.contextmanager
def flocks(paths: Iterable[Path], mode: int) -> Iterator[None]:
    """``flock`` (``mode``) on each of ``paths`` (made if missing) while the block runs. Taken
    in sorted order: two processes locking overlapping sets cannot deadlock. StoreError if one
    cannot be opened or locked."""
    with contextlib.ExitStack() as held:
        for path in sorted(set(paths)):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                held.callback(os.close, fd)  # closing releases the lock
                fcntl.flock(fd, mode)
            except OSError as exc:
                raise StoreError(
                    f"local store: cannot lock {path}: {exc.strerror or exc}"
                ) from None
        yield


def open_existing(root: Path, wait: float = 60.0) -> sqlite3.Connection | None:
    """The index of the store at ``root`` if there is one of this schema version that can be
    read within ``wait`` seconds, else None (LocalStore makes and upgrades stores, and says
    what is wrong with one; this never writes a schema)."""
    path = root / INDEX_FILE
    try:
        if not path.is_file():
            return None
        db = connect(path, wait)
    except (OSError, sqlite3.Error):
        return None
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error:
        db.close()
        return None
    if version != SCHEMA_VERSION:
        db.close()
        return None
    return db


def select_indexed(
    db: sqlite3.Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str | None, int]]:
    """(digest, b4, files_bytes) of those (module, commit) entries that are here (entries stored
    by versions that did not record digests are left out: they are read)."""
    rows = _select(db, keys, " AND digest IS NOT NULL AND files_bytes IS NOT NULL")
    return {(module, commit): (digest, b4, size) for module, commit, digest, b4, size in rows}


def select_recorded(
    db: sqlite3.Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """(digest, b4) of every one of those (module, commit) entries that is here; None where the
    version that stored it did not record that digest."""
    return {(module, commit): (digest, b4) for module, commit, digest, b4, _ in _select(db, keys)}


def _select(
    db: sqlite3.Connection, keys: Iterable[tuple[str, str]], condition: str = ""
) -> Iterator[tuple[str, str, str | None, str | None, int | None]]:
    wanted = list(keys)
    for start in range(0, len(wanted), _CHUNK):  # bounded statement size
        chunk = wanted[start : start + _CHUNK]
        query = (
            "SELECT module, commit_id, digest, b4, files_bytes FROM entries WHERE"
            f" (module, commit_id) IN (VALUES {', '.join(['(?, ?)'] * len(chunk))}){condition}"
        )
        yield from db.execute(query, [x for pair in chunk for x in pair])


def update_last_used(db: sqlite3.Connection, uses: Iterable[tuple[float, str, str]]) -> None:
    """Record uses (time, module, commit): the entries move up in the LRU order. Within the
    caller's transaction."""
    db.executemany("UPDATE entries SET last_used = ? WHERE module = ? AND commit_id = ?", uses)


def lock_memo_key(lock_path: Path) -> str:
    """The kv key of the memo of a buf.lock's last parse (team/resolve.py writes it)."""
    return f"buf.lock:{lock_path.resolve()}"


def select_kv(db: sqlite3.Connection, key: str, max_age: float | None = None) -> str | None:
    row = db.execute("SELECT value, updated FROM kv WHERE key = ?", (key,)).fetchone()
    if row is None or (max_age is not None and time.time() - row[1] > max_age):
        return None
    return row[0]
