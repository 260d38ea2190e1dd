"""The local store: this machine's content-addressed copy of module artifacts.

``ROOT/blobs/sha256/<hex>``   the artifact blobs: manifests (the config embedded) and layers
``ROOT/store.db``             SQLite: (module, commit) -> manifest, size, last use, digests as
                              verified when stored; labels
``ROOT/locks/``               one pair of lock files per module commit
``ROOT/tmp/``                 partial writes; stale ones are removed on open

Crash safety: a blob is written to ``tmp/`` and renamed into place; the index row that makes
an entry visible is inserted last, in one transaction (a fetch commits all its rows at once).
A ``kill -9`` at any point leaves at worst an unreferenced blob or temp file, never a visible
half entry.

Concurrency: ``fill`` locks give single-flight (N processes missing the same commit make one
upstream download: the first fills, the others wait and then hit). ``use`` locks are held
shared by fetches and taken exclusively, without waiting, by eviction, which skips busy
entries. Every read is verified (sha256 of each blob, b5 of the files).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bsr_team_cache._fs import (
    atomic_write,
    new_temp_file,
    read_regular_file,
    touch_existing,
    write_all,
)
from bsr_team_cache._records import record
from bsr_team_cache._testhooks import reached
from bsr_team_cache.domain.moduleref import ModuleName
from bsr_team_cache.errors import InvalidContentError, StoreError, UnreadableHereError
from bsr_team_cache.limits import limits
from bsr_team_cache.oci.base import Descriptor, sha256_digest, validate_oci_digest, verify_blob
from bsr_team_cache.store.index import (
    INDEX_FILE,
    SCHEMA_VERSION,
    connect,
    flocks,
    lock_key,
    schema_in_turn,
    select_indexed,
    select_kv,
    update_last_used,
    use_lock_path,
)

# The artifact codec is imported by the methods that read or write entries: a warm fetch asks
# the index only.
if TYPE_CHECKING:
    from bsr_team_cache.oci.artifact import ModuleArtifact, StreamedModule

_STALE_TMP_SECONDS = 3600
_BLOB_GRACE_SECONDS = 120
# "use" locks are striped: a fetch of thousands of deps holds at most this many files open.

F = TypeVar("F", bound=Callable[..., Any])


def _store_errors(method: F) -> F:
    """A full disk, a broken index or a permission problem is a StoreError: the fetch goes on
    without the store (with a warning) instead of failing or showing a traceback."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"local store: its index failed ({exc})") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise StoreError(f"local store: {where}{exc.strerror or exc}") from None

    return wrapper  # type: ignore[return-value]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    module TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    manifest TEXT NOT NULL,
    blobs TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    digest TEXT,
    b4 TEXT,
    files_bytes INTEGER,
    PRIMARY KEY (module, commit_id)
);
CREATE INDEX IF NOT EXISTS entries_last_used ON entries (last_used);
CREATE TABLE IF NOT EXISTS usage (
    fetch_id TEXT NOT NULL,
    time REAL NOT NULL,
    project TEXT NOT NULL,
    module TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    seconds REAL NOT NULL,
    bundle TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS usage_time ON usage (time);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    module TEXT NOT NULL,
    label TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    resolved_at REAL NOT NULL,
    PRIMARY KEY (module, label)
);
"""


@record(frozen=True)
class StoreEntry:
    module: str
    commit: str
    size: int
    last_used: float


@record(frozen=True)
class IndexedEntry:
    """What the index knows of an entry without reading it: its digests (as verified when it
    was stored) and the size of its files."""

    digest: str
    b4: str | None
    files_bytes: int


# Columns that schema 3 added to ``entries`` (stores made by older versions gain them empty).
_ADDED_COLUMNS = {"digest": "TEXT", "b4": "TEXT", "files_bytes": "INTEGER"}


@record
class StoreStats:
    entries: int
    bytes: int  # bytes of blobs on disk that entries reference


class LocalStore:
    def __init__(self, root: Path | str, *, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / "sha256"  # joined once: every blob path starts so
        self.max_bytes = max_bytes
        # Index writes waiting for ``flush``: rows of new entries (from any thread), uses.
        self._rows: list[tuple] = []
        self._batched = False
        self._touched: list[tuple[float, str, str]] = []
        self._pending_lock = threading.Lock()
        try:
            # Only this user: the store is trusted after verification, but need not be shared.
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for sub in ("blobs/sha256", "locks", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._db = connect(self.root / INDEX_FILE)
            self._open()
        except OSError as exc:
            raise StoreError(
                f"local store {self.root}: cannot use it ({exc.strerror or exc}); point"
                " --store-dir or BSR_TEAM_CACHE_DIR at a writable directory"
            ) from None
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"local store {self.root}: cannot use its index {self.root / 'store.db'} ({exc});"
                " is the disk full, or the directory read-only?"
            ) from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"local store {self.root}: its index {self.root / 'store.db'} is unreadable"
                f" ({exc}); remove the directory (it is only a cache) or use another --store-dir"
            ) from None
        self._remove_stale_temp_files()

    def _open(self) -> None:
        # A new store opened by several fetches at once is made once, the others waiting.
        schema_in_turn(self._db, self.root / "locks" / "index.lock", SCHEMA_VERSION, self._make)

    def _make(self, version: int) -> None:
        """The schema, or what this version adds to an older one, in one write."""
        with self._write():
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.root}: local store schema {version} is newer than this version"
                    f" understands ({SCHEMA_VERSION}); upgrade bsr-team-cache or use another"
                    " --store-dir"
                )
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)  # executescript would commit on its own
            have = {row[1] for row in self._db.execute("PRAGMA table_info(entries)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE entries ADD COLUMN {column} {kind}")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"local store {self.root}"

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _remove_stale_temp_files(self) -> None:
        cutoff = time.time() - _STALE_TMP_SECONDS
        for path in (self.root / "tmp").iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()

    # -- blobs ---------------------------------------------------------------------------
    def _blob_path(self, digest: str) -> Path:
        hex_value = validate_oci_digest(digest, self.describe())[len("sha256:") :]
        return self._blobs / hex_value

    def _read_blob(self, digest: str, max_bytes: int) -> bytes:
        try:
            data = read_regular_file(self._blob_path(digest), max_bytes)
        except FileNotFoundError:
            raise _MissingBlob(digest) from None
        return verify_blob(data, digest, self.describe())

    def _read_descriptor(self, descriptor: Descriptor) -> bytes:
        if descriptor.data is not None:
            return descriptor.data
        return self._read_blob(descriptor.digest, descriptor.size)

    def _write_blob(self, data: bytes, digest: str) -> None:
        path = self._blob_path(digest)
        # Already here (another entry's): young again, so GC spares it.
        if not touch_existing(path):
            try:  # blobs/sha256 is made when the store is opened
                atomic_write(path, data, tmp_dir=self.root / "tmp", make_parent=False)
            except FileNotFoundError:  # removed since (the store cleared meanwhile)
                atomic_write(path, data, tmp_dir=self.root / "tmp")

    # -- locks ---------------------------------------------------------------------------
    def _lock_path(self, module: ModuleName | str, commit: str, kind: str) -> Path:
        if kind == "use":
            return use_lock_path(self.root, str(module), commit)
        return self.root / "locks" / f"{lock_key(str(module), commit)}.{kind}"

    def filling(self, keys: Iterable[tuple[ModuleName, str]]) -> contextlib.AbstractContextManager:
        """Exclusive: one process at a time fetches a given commit from upstream. One file
        per key: callers hold these for a bounded batch of keys at a time."""
        return flocks((self._lock_path(m, c, "fill") for m, c in keys), fcntl.LOCK_EX)

    def using(self, keys: Iterable[tuple[ModuleName, str]]) -> contextlib.AbstractContextManager:
        """Shared: eviction leaves these entries alone while held (and, lock files being
        striped, some others too: it only ever spares more)."""
        return flocks((self._lock_path(m, c, "use") for m, c in keys), fcntl.LOCK_SH)

    # -- entries -------------------------------------------------------------------------
    @_store_errors
    def get(self, module: ModuleName, commit: str, *, touch: bool = True) -> ModuleArtifact | None:
        """The verified artifact, or None. A corrupt entry is dropped and reported. A read that
        is not a use (``touch=False``: sync pushing what is here) leaves the LRU order alone."""
        row = self._entry(module, commit, "manifest, blobs")
        if row is None:
            return None
        from bsr_team_cache.oci.artifact import decode_module

        where = f"{self.describe()}: {module}:{commit}"
        try:
            manifest = self._read_blob(row[0], limits().max_document_bytes)
            artifact = decode_module(manifest, self._read_descriptor, module, commit, where)
        except _MissingBlob:
            self._drop(module, commit)  # evicted underneath us: a plain miss
            return None
        except UnreadableHereError:
            raise  # nothing wrong with it: kept for the Pythons that can read it
        except InvalidContentError as exc:
            self._drop(module, commit)
            for digest in json.loads(row[1]):  # even if shared: a refetch rewrites them
                with contextlib.suppress(InvalidContentError):
                    self._blob_path(digest).unlink(missing_ok=True)
            raise type(exc)(f"{exc} (entry removed from the local store)") from None
        if touch:
            self.touch(module, commit)
        return artifact

    def _entry(self, module: ModuleName | str, commit: str, columns: str) -> tuple | None:
        """These columns (a constant of this class's) of the entry's index row, if there is one."""
        return self._db.execute(
            f"SELECT {columns} FROM entries WHERE module = ? AND commit_id = ?",
            (str(module), commit),
        ).fetchone()

    @_store_errors
    def contains(self, module: ModuleName, commit: str) -> bool:
        return self._entry(module, commit, "1") is not None

    @_store_errors
    def encoded(self, module: ModuleName, commit: str) -> tuple[bytes, bytes] | None:
        """The entry's manifest and files layer as stored, each checked against its digest but
        not decoded (a lock pack carries them; its readers check everything). None if the entry
        is absent or its blobs are not sound."""
        row = self._entry(module, commit, "manifest")
        if row is None:
            return None
        from bsr_team_cache.oci.artifact import module_layer_descriptor

        where = f"{self.describe()}: {module}:{commit}"
        try:
            manifest = self._read_blob(row[0], limits().max_document_bytes)
            return manifest, self._read_descriptor(module_layer_descriptor(manifest, where)[2])
        except (_MissingBlob, InvalidContentError):
            return None

    def put(self, artifact: ModuleArtifact) -> None:
        """Store a verified artifact: its blobs (the files layer as it arrived), then the index
        row that makes it visible. In a ``batch``, rows wait for its end (one transaction) and
        ``put`` may be called from worker threads."""
        self._put(artifact)
        if not self._batched:
            self.flush()

    @_store_errors
    def _put(self, artifact: ModuleArtifact) -> None:
        from bsr_team_cache.oci.artifact import encode_module

        encoded = encode_module(artifact)
        # The config is embedded in the manifest: it is not kept twice.
        blobs = [*encoded.external_blobs(), (encoded.manifest, encoded.manifest_digest)]
        for data, digest in blobs:
            self._write_blob(data, digest)
        reached("store.blobs-written")
        stored = sum(len(data) for data, _ in blobs)
        self._pend_row(artifact, encoded.manifest_digest, [d for _, d in blobs], stored)

    def _pend_row(
        self,
        entry: ModuleArtifact | StreamedModule,
        manifest_digest: str,
        blobs: list[str],
        stored_bytes: int,
    ) -> None:
        """Queue the index row that makes an entry visible (written at ``flush``)."""
        now = time.time()
        row = (
            str(entry.module),
            entry.commit,
            manifest_digest,
            json.dumps(blobs),
            stored_bytes,
            now,
            now,
            str(entry.digest),
            None if entry.b4 is None else str(entry.b4),
            entry.size,
        )
        with self._pending_lock:
            self._rows.append(row)

    @_store_errors
    def temp_blob(self) -> TempBlob:
        """A new temporary file in the store, for a blob written as it arrives (a streamed
        layer, oci/streaming.py): ``adopt`` moves it into place once it is verified."""
        return TempBlob(self.root / "tmp")

    def adopt(self, module: StreamedModule) -> None:
        """Store a verified streamed module: its layer as it arrived (the temporary file from
        ``temp_blob``, renamed into place), its manifest, then the index row that makes it
        visible, as ``put`` does."""
        self._adopt(module)
        if not self._batched:
            self.flush()

    @_store_errors
    def _adopt(self, module: StreamedModule) -> None:
        blob = module.sinks.blob
        if not isinstance(blob, TempBlob) or blob.directory != self.root / "tmp":
            raise StoreError(f"{self.describe()}: {module.module}:{module.commit} was not staged")
        blob.move_to(self._blob_path(module.layer.digest))
        from bsr_team_cache.oci.artifact import streamed_manifest

        manifest = streamed_manifest(module)
        manifest_digest = sha256_digest(manifest)
        self._write_blob(manifest, manifest_digest)
        reached("store.blobs-written")
        blobs = [module.layer.digest, manifest_digest]
        self._pend_row(module, manifest_digest, blobs, module.layer.size + len(manifest))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Index writes of the block (new entries, uses) in one transaction, at its end or at
        ``flush``: one commit per fetch instead of one per module. Entries become visible when
        flushed, so callers flush before releasing the fill locks that single-flight needs."""
        if self._batched:  # nested: the outer batch flushes
            yield
            return
        self._batched = True
        try:
            yield
        finally:
            try:
                self.flush()
            finally:
                self._batched = False

    @_store_errors
    def flush(self) -> None:
        """Commit the index rows and uses queued so far."""
        with self._pending_lock:
            rows, self._rows = self._rows, []
            touched, self._touched = self._touched, []
        if not rows and not touched:
            return
        # A blob shared with another entry may have been evicted (by another process) since
        # it was found present: such a row would name a missing blob. It is left out.
        rows = [
            r for r in rows if all(os.path.exists(self._blob_path(d)) for d in json.loads(r[3]))
        ]
        with self._write():  # the rows that make entries visible go in last
            self._db.executemany(
                "INSERT OR REPLACE INTO entries (module, commit_id, manifest, blobs, size,"
                " created, last_used, digest, b4, files_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?)",
                rows,
            )
            if rows:
                reached("store.row-written")
            update_last_used(self._db, touched)
        if rows and self.max_bytes is not None:
            self.evict(self.max_bytes)

    @_store_errors
    def indexed(
        self, keys: Iterable[tuple[ModuleName, str]]
    ) -> dict[tuple[str, str], IndexedEntry]:
        """The index's record of those entries that are here, without reading them (entries
        stored by versions that did not record digests are left out: they are read)."""
        found = select_indexed(self._db, ((str(m), c) for m, c in keys))
        return {key: IndexedEntry(*row) for key, row in found.items()}

    def touch(self, module: ModuleName | str, commit: str) -> None:
        """A use of the entry: it moves up in the LRU order (written with the batch)."""
        with self._pending_lock:
            self._touched.append((time.time(), str(module), commit))
        if not self._batched:
            self.flush()

    @_store_errors
    def entries(self) -> list[StoreEntry]:
        rows = self._db.execute(
            "SELECT module, commit_id, size, last_used FROM entries ORDER BY last_used DESC"
        ).fetchall()
        return [StoreEntry(*row) for row in rows]

    @_store_errors
    def stats(self) -> StoreStats:
        query = "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries"
        count, total = self._db.execute(query).fetchone()
        return StoreStats(count, total)

    def _drop(self, module: ModuleName | str, commit: str) -> list[str]:
        """Remove an entry's row, then its blobs that no other entry references."""
        with self._write():
            row = self._db.execute(
                "SELECT blobs FROM entries WHERE module = ? AND commit_id = ?",
                (str(module), commit),
            ).fetchone()
            self._db.execute(
                "DELETE FROM entries WHERE module = ? AND commit_id = ?", (str(module), commit)
            )
        digests = json.loads(row[0]) if row else []
        self._release_blobs(digests)
        return digests

    def _referenced(self) -> set[str]:
        referenced: set[str] = set()
        for (blobs,) in self._db.execute("SELECT blobs FROM entries"):
            referenced.update(json.loads(blobs))
        return referenced

    def _release_blobs(self, digests: list[str]) -> None:
        referenced = self._referenced()
        for digest in digests:
            if digest not in referenced:
                self._blob_path(digest).unlink(missing_ok=True)

    def _collect_garbage(self) -> None:
        """Delete blobs no entry references. Blobs younger than a few minutes are kept: another
        process may have written them and not yet inserted the row that references them."""
        referenced = {d[7:] for d in self._referenced()}
        young = time.time() - _BLOB_GRACE_SECONDS
        for path in self._blobs.iterdir():
            if path.name not in referenced:
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < young:
                        path.unlink()

    @_store_errors
    def evict(self, max_bytes: int) -> list[StoreEntry]:
        """Remove least-recently-used entries until at most ``max_bytes`` remain; entries
        that a running fetch holds are skipped."""
        evicted: list[StoreEntry] = []
        total = self.stats().bytes
        if total <= max_bytes:
            return evicted
        for module, commit, size, last_used in self._db.execute(
            "SELECT module, commit_id, size, last_used FROM entries ORDER BY last_used ASC"
        ).fetchall():
            if total <= max_bytes:
                break
            lock = open(self._lock_path(module, commit, "use"), "a+b")  # noqa: SIM115
            try:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use by a running fetch
                self._drop(module, commit)
                total -= size
                evicted.append(StoreEntry(module, commit, size, last_used))
            finally:
                lock.close()
        return evicted

    @_store_errors
    def clear(self) -> int:
        """Remove every entry (and label); returns how many entries there were."""
        count = self.stats().entries
        with self._write():
            digests = sorted(self._referenced())
            self._db.execute("DELETE FROM entries")
            self._db.execute("DELETE FROM labels")
        self._release_blobs(digests)
        self._collect_garbage()  # orphans of crashed writers, once they are old enough
        return count

    # -- labels --------------------------------------------------------------------------
    @_store_errors
    def remember_label(self, module: ModuleName, label: str, commit: str) -> None:
        with self._write():
            self._db.execute(
                "INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?)",
                (str(module), label, commit, time.time()),
            )

    @_store_errors
    def labels(self) -> list[tuple[str, str, str, float]]:
        """Every remembered (module, label, commit, resolved_at)."""
        return self._db.execute(
            "SELECT module, label, commit_id, resolved_at FROM labels ORDER BY module, label"
        ).fetchall()

    @_store_errors
    def label(self, module: ModuleName, label: str) -> tuple[str, float] | None:
        """(commit, resolved_at) last seen for a label, or None."""
        row = self._db.execute(
            "SELECT commit_id, resolved_at FROM labels WHERE module = ? AND label = ?",
            (str(module), label),
        ).fetchone()
        return (row[0], row[1]) if row else None

    # -- usage rows of older versions (read once, into the usage log), small cached values --
    @_store_errors
    def usage_events(self, since: float = 0.0) -> list[UsageEvent]:
        rows = self._db.execute(
            "SELECT fetch_id, time, project, module, commit_id, tier, bytes, seconds, bundle"
            " FROM usage WHERE time >= ? ORDER BY time",
            (since,),
        ).fetchall()
        return [UsageEvent(*row) for row in rows]

    @_store_errors
    def kv_get(self, key: str, max_age: float | None = None) -> str | None:
        return select_kv(self._db, key, max_age)

    @_store_errors
    def kv_put(self, key: str, value: str) -> None:
        with self._write():
            self._db.execute(
                "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, value, time.time())
            )


@record(frozen=True)
class UsageEvent:
    fetch_id: str
    time: float
    project: str
    module: str
    commit: str
    tier: str
    bytes: int
    seconds: float
    bundle: str = ""


class _MissingBlob(Exception):
    pass


class TempBlob:
    """A blob being written into the store's ``tmp/`` as it arrives (a BlobSink of
    oci/streaming.py). A write that fails (a full disk) drops the blob, not the transfer: the
    store then does not keep it (``move_to`` says why) and the fetch goes on."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        fd, self.path = new_temp_file(directory, ".layer.")
        self._fd: int | None = fd
        self._problem: str | None = None

    def write(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            return
        try:
            write_all(self._fd, data)
        except OSError as exc:
            self._problem = f"{self.path}: {exc.strerror or exc}"
            self.discard()

    def move_to(self, target: Path) -> None:
        """Rename the complete blob into place (or, if that blob is there already, make it
        young again and drop this copy)."""
        if self._fd is None:
            raise StoreError(f"local store: {self._problem or 'the blob was discarded'}")
        os.close(self._fd)
        self._fd = None
        if touch_existing(target):  # already here (another entry's): young again, GC spares it
            os.unlink(self.path)
        else:
            os.replace(self.path, target)

    def discard(self) -> None:
        """Close and remove the temporary file, if it is still there."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
