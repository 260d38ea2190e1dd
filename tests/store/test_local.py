"""The local store: verified reads, atomic writes, single-flight locks, LRU eviction."""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import DigestMismatchError, StoreError, UnreadableHereError
from bsr_team_cache.oci import compression
from bsr_team_cache.oci.artifact import ModuleArtifact, encode_module
from bsr_team_cache.oci.base import sha256_digest
from bsr_team_cache.store import LocalStore, default_store_dir


def _artifact(name: str, commit_byte: str, payload: bytes = b"", size: int = 0) -> ModuleArtifact:
    files = {f"{name}/v1/x.proto": b'syntax = "proto3";\n' + payload + os.urandom(size)}
    return ModuleArtifact(
        parse_module_name(f"buf.build/acme/{name}"),
        commit_byte * 32,
        b5_from_contents(files),
        (),
        files,
        "2026-01-01T00:00:00Z",
    )


def test_put_get_round_trip_and_default_dir(tmp_path: Path) -> None:
    artifact = _artifact("pets", "a")
    with LocalStore(tmp_path / "s") as store:
        assert store.get(artifact.module, artifact.commit) is None
        store.put(artifact)
        got = store.get(artifact.module, artifact.commit)
        assert got == artifact
        encoded = encode_module(artifact)  # the config is embedded in the manifest
        blobs = len(encoded.manifest) + len(encoded.layer)
        assert (store.stats().entries, store.stats().bytes) == (1, blobs)
    assert default_store_dir({"BSR_TEAM_CACHE_DIR": "/x/y"}) == Path("/x/y")
    assert default_store_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/bsr-team-cache")


def test_corrupt_blob_is_reported_dropped_and_refillable(tmp_path: Path) -> None:
    artifact = _artifact("pets", "a", size=2000)
    with LocalStore(tmp_path) as store:
        store.put(artifact)
        for blob in (tmp_path / "blobs" / "sha256").iterdir():
            if blob.stat().st_size > 500:
                data = bytearray(blob.read_bytes())
                data[100] ^= 1
                blob.write_bytes(bytes(data))
        with pytest.raises(DigestMismatchError, match=r"corrupt.*removed from the local store"):
            store.get(artifact.module, artifact.commit)
        assert store.get(artifact.module, artifact.commit) is None  # now a plain miss
        store.put(artifact)  # the corrupt blob was deleted, so it is really rewritten
        assert store.get(artifact.module, artifact.commit) == artifact


def test_an_entry_this_python_cannot_decompress_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zstd entry read by a Python without zstd: an error for this read (the fetch asks the
    next tier), not a corrupt entry: the Pythons that can still find it."""
    artifact = _artifact("pets", "a")
    with LocalStore(tmp_path) as store:
        store.put(artifact)
        with monkeypatch.context() as patched:
            patched.setattr(compression, "zstd_module", lambda: None)
            with pytest.raises(UnreadableHereError, match="this Python has no zstd bindings"):
                store.get(artifact.module, artifact.commit)
        assert store.stats().entries == 1
        assert store.get(artifact.module, artifact.commit) == artifact


def test_missing_blob_is_a_miss(tmp_path: Path) -> None:
    artifact = _artifact("pets", "a")
    with LocalStore(tmp_path) as store:
        store.put(artifact)
        for blob in (tmp_path / "blobs" / "sha256").iterdir():
            blob.unlink()
        assert store.get(artifact.module, artifact.commit) is None
        assert store.stats().entries == 0


def test_lru_eviction_keeps_the_store_under_the_limit(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as store:
        artifacts = [_artifact(f"m{i}", "abcdef0123"[i], size=20_000) for i in range(6)]
        for a in artifacts:
            store.put(a)
            time.sleep(0.01)
        store.get(artifacts[0].module, artifacts[0].commit)  # the oldest becomes the newest
        one = max(e.size for e in store.entries())
        evicted = store.evict(3 * one)
        assert [e.module for e in evicted] == [str(a.module) for a in artifacts[1:4]]
        assert store.stats().bytes <= 3 * one
        remaining = {e.module for e in store.entries()}
        assert remaining == {str(artifacts[i].module) for i in (0, 4, 5)}
        on_disk = sum(p.stat().st_size for p in (tmp_path / "blobs" / "sha256").iterdir())
        assert on_disk <= 3 * one


def test_max_bytes_evicts_on_put(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "probe") as probe:  # entries of equal size: measure one
        probe.put(_artifact("m9", "f", size=20_000))
        one = probe.stats().bytes
    limit = 2 * one + one // 2
    with LocalStore(tmp_path / "store", max_bytes=limit) as store:
        for i in range(5):
            store.put(_artifact(f"m{i}", "abcdef"[i], size=20_000))
        assert store.stats().bytes <= limit  # (gzip of random bytes varies by a few bytes)
        assert [e.module for e in store.entries()] == ["buf.build/acme/m4", "buf.build/acme/m3"]


def test_eviction_skips_entries_in_use(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as store:
        old, new = _artifact("old", "a", size=20_000), _artifact("new", "b", size=20_000)
        store.put(old)
        time.sleep(0.01)
        store.put(new)
        with store.using([(old.module, old.commit)]):
            evicted = store.evict(0)
        assert [e.module for e in evicted] == [str(new.module)]
        assert store.get(old.module, old.commit) == old


def _hold_fill_lock(root: str, ready, release) -> None:
    store = LocalStore(root)
    with store.filling([(parse_module_name("buf.build/acme/pets"), "a" * 32)]):
        ready.set()
        release.wait(10)


def test_fill_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_fill_lock, args=(str(tmp_path), ready, release))
    proc.start()
    try:
        assert ready.wait(20)
        with LocalStore(tmp_path) as store:
            lock_path = store._lock_path(parse_module_name("buf.build/acme/pets"), "a" * 32, "fill")
            with open(lock_path, "a+b") as f, pytest.raises(BlockingIOError):
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        release.set()
        proc.join(20)


def test_stale_temp_files_are_removed_and_orphans_never_visible(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as store:
        store.put(_artifact("pets", "a"))
    stale = tmp_path / "tmp" / "partial"
    stale.write_bytes(b"half a blob")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / "tmp" / "in-progress"
    fresh.write_bytes(b"another process is writing")
    with LocalStore(tmp_path) as store:
        assert not stale.exists() and fresh.exists()
        assert store.stats().entries == 1


def test_clear_and_labels(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as store:
        a = _artifact("pets", "a")
        store.put(a)
        store.remember_label(a.module, "main", a.commit)
        commit, when = store.label(a.module, "main")
        assert commit == a.commit and when <= time.time()
        assert store.clear() == 1
        assert store.label(a.module, "main") is None
        assert store.stats().entries == 0
        assert list((tmp_path / "blobs" / "sha256").iterdir()) == []


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    LocalStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "store.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match="schema 99 is newer"):
        LocalStore(tmp_path)


def test_index_row_names_all_blobs(tmp_path: Path) -> None:
    """The row names every blob file of the entry: the files layer and the manifest (the
    config travels inside the manifest: it is not kept twice)."""
    artifact = _artifact("pets", "a")
    with LocalStore(tmp_path) as store:
        store.put(artifact)
        (blobs,) = store._db.execute("SELECT blobs FROM entries").fetchone()
    encoded = encode_module(artifact)
    assert json.loads(blobs) == [sha256_digest(encoded.layer), encoded.manifest_digest]
    on_disk = {p.name for p in (tmp_path / "blobs" / "sha256").iterdir()}
    assert on_disk == {d.removeprefix("sha256:") for d in json.loads(blobs)}


def test_unusable_directories_and_corrupt_index_are_clear_errors(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    with pytest.raises(StoreError, match=r"cannot use it .*BSR_TEAM_CACHE_DIR"):
        LocalStore(a_file / "store")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "store.db").write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(StoreError, match=r"store\.db is unreadable .*only a cache"):
        LocalStore(broken)


def test_the_files_layer_is_kept_as_it_arrived(tmp_path: Path) -> None:
    """A layer from another writer (here: another gzip level) is stored byte for byte, not
    compressed again: its digest is the one the registry names."""
    import gzip
    import io
    import tarfile

    artifact = _artifact("pets", "a", size=3000)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in artifact.files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    foreign = gzip.compress(raw.getvalue(), compresslevel=1)
    assert foreign != encode_module(artifact).layer
    arrived = ModuleArtifact(**{**artifact.__dict__, "layer": foreign})
    with LocalStore(tmp_path) as store:
        store.put(arrived)
        (blobs,) = store._db.execute("SELECT blobs FROM entries").fetchone()
        layer_digest = "sha256:" + hashlib.sha256(foreign).hexdigest()
        assert layer_digest in json.loads(blobs)
        got = store.get(artifact.module, artifact.commit)
    assert got == artifact and got.layer == foreign


def test_a_batch_commits_its_entries_at_once_from_any_thread(tmp_path: Path) -> None:
    """Entries put in a batch (from worker threads) are invisible to other processes until
    the batch is flushed, then all visible; uses are recorded with them."""
    artifacts = [_artifact(f"m{i}", "abcdef"[i]) for i in range(6)]
    with LocalStore(tmp_path) as store, LocalStore(tmp_path) as other:
        store.put(artifacts[0])
        old_use = other.entries()[0].last_used
        with store.batch():
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(store.put, artifacts[1:]))
            assert store.get(artifacts[0].module, artifacts[0].commit) is not None  # a use
            assert [e.module for e in other.entries()] == ["buf.build/acme/m0"]
            assert other.entries()[0].last_used == old_use
            store.flush()
            assert len(other.entries()) == 6
            store.put(_artifact("late", "f"))
        assert len(other.entries()) == 7  # the end of the batch flushes the rest
        m0 = next(e for e in other.entries() if e.module == "buf.build/acme/m0")
        assert m0.last_used > old_use  # the use in the batch was written with it
        indexed = other.indexed((a.module, a.commit) for a in artifacts)
    assert {k: (v.digest, v.files_bytes) for k, v in indexed.items()} == {
        (str(a.module), a.commit): (str(a.digest), a.size) for a in artifacts
    }


def test_a_store_of_the_previous_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    """Schema 2 had no digests in the index: its entries stay readable, and are read (not
    trusted from the index) until stored again."""
    artifact = _artifact("pets", "a")
    with LocalStore(tmp_path) as store:
        store.put(artifact)
    db = sqlite3.connect(tmp_path / "store.db")
    for column in ("digest", "b4", "files_bytes"):
        db.execute(f"ALTER TABLE entries DROP COLUMN {column}")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    with LocalStore(tmp_path) as store:
        assert store.indexed([(artifact.module, artifact.commit)]) == {}
        assert store.get(artifact.module, artifact.commit) == artifact
        store.put(artifact)
        assert set(store.indexed([(artifact.module, artifact.commit)])) == {
            (str(artifact.module), artifact.commit)
        }
        (version,) = store._db.execute("PRAGMA user_version").fetchone()
    assert version == 3


def _open_store(root: str) -> None:
    with LocalStore(root) as store:
        store.entries()


def _open_event_log(root: str) -> None:
    from bsr_team_cache.usage.log import EventLog

    with EventLog(Path(root) / "events.db") as log:
        log.db.execute("SELECT count(*) FROM events").fetchone()


def _open_new(opener, root: str, start, failures) -> None:
    start.wait()
    try:
        opener(root)
    except Exception as exc:  # reported to the test, which fails on any
        failures.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("opener", [_open_store, _open_event_log])
def test_a_new_index_opened_by_several_processes_at_once_is_made_once(tmp_path, opener):
    """SQLite may refuse a second connection at once (no waiting) while the first turns a new
    database to WAL: every opener of a new store (or usage log) must still get it, none a
    'database is locked'."""
    ctx = multiprocessing.get_context("fork")
    failures = ctx.Queue()
    for round_ in range(16):
        root = str(tmp_path / f"store-{round_}")
        start = ctx.Barrier(6)
        procs = [
            ctx.Process(target=_open_new, args=(opener, root, start, failures)) for _ in range(6)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0] * 6
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == []
