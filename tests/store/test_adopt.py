"""The local store adopting a streamed layer (LocalStore.temp_blob, LocalStore.adopt): the blob
as it arrived, renamed into place, the manifest ``encode_module`` would make, one index row made
visible at the end; a blob that could not be written is not adopted, and nothing is left."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import StoreError
from bsr_team_cache.oci.artifact import ModuleArtifact, StreamedModule, encode_module
from bsr_team_cache.oci.base import Descriptor, sha256_digest
from bsr_team_cache.oci.compression import media_type_of
from bsr_team_cache.oci.layer import files_layer
from bsr_team_cache.oci.streaming import LayerSinks
from bsr_team_cache.store import LocalStore
from bsr_team_cache.store.local import TempBlob

PETS = parse_module_name("localhost:8443/acme/pets")
COMMIT = "ab" * 16
FILES = {"acme/pets/v1/pet.proto": b'syntax = "proto3";\n' * 500, "LICENSE": b"MIT\n"}


def _artifact() -> ModuleArtifact:
    return ModuleArtifact(
        PETS, COMMIT, b5_from_contents(FILES), (), dict(FILES), "2024-01-01T00:00:00+00:00"
    )


def _streamed(store: LocalStore, layer: bytes, blob: TempBlob | None = None) -> StreamedModule:
    """What pull_module returns for the artifact once its layer has streamed into ``blob``."""
    artifact = _artifact()
    if blob is None:
        blob = store.temp_blob()
        for start in range(0, len(layer), 1000):  # as chunks arrive
            blob.write(memoryview(layer)[start : start + 1000])
    return StreamedModule(
        module=artifact.module,
        commit=artifact.commit,
        digest=artifact.digest,
        deps=artifact.deps,
        create_time=artifact.create_time,
        labels=artifact.labels,
        b4=None,
        v1_files={},
        layer=Descriptor(media_type_of(layer), sha256_digest(layer), len(layer)),
        size=artifact.size,
        sinks=LayerSinks(blob, None),
    )


def test_an_adopted_blob_is_the_entry_put_would_make(tmp_path: Path) -> None:
    layer = files_layer(FILES)
    with LocalStore(tmp_path / "streamed") as store, LocalStore(tmp_path / "put") as other:
        module = _streamed(store, layer)
        with store.batch():
            store.adopt(module)
            assert not store.contains(PETS, COMMIT)  # visible when the batch commits
        other.put(_artifact())

        assert store.get(PETS, COMMIT) == _artifact()
        assert list((store.root / "tmp").iterdir()) == []
        # Blobs, manifest and index row are those of the in-memory path, byte for byte.
        assert sorted(p.name for p in (store.root / "blobs" / "sha256").iterdir()) == sorted(
            p.name for p in (other.root / "blobs" / "sha256").iterdir()
        )
        query = "SELECT manifest, blobs, size, digest, b4, files_bytes FROM entries"
        assert store._db.execute(query).fetchall() == other._db.execute(query).fetchall()
        (manifest,) = store._db.execute("SELECT manifest FROM entries").fetchone()
        assert manifest == encode_module(_artifact()).manifest_digest


def test_a_layer_already_stored_is_kept_and_the_copy_dropped(tmp_path: Path) -> None:
    layer = files_layer(FILES)
    with LocalStore(tmp_path / "store") as store:
        store.put(_artifact())
        blob = store.root / "blobs" / "sha256" / sha256_digest(layer).removeprefix("sha256:")
        before = blob.stat().st_ino
        os.utime(blob, (1, 1))

        store.adopt(_streamed(store, layer))

        assert blob.stat().st_ino == before and blob.stat().st_mtime > 1  # young again
        assert list((store.root / "tmp").iterdir()) == []
        assert store.get(PETS, COMMIT) == _artifact()


def test_a_blob_that_could_not_be_written_is_not_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = files_layer(FILES)
    with LocalStore(tmp_path / "store") as store:
        blob = store.temp_blob()
        blob.write(layer[:100])
        with monkeypatch.context() as patched:

            def full(fd: int, data: object) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

            patched.setattr(os, "write", full)
            blob.write(layer[100:])  # the transfer goes on; the blob is dropped
        assert list((store.root / "tmp").iterdir()) == []

        with pytest.raises(StoreError, match="No space left on device"):
            store.adopt(_streamed(store, layer, blob))

        assert not store.contains(PETS, COMMIT)
        assert list((store.root / "blobs" / "sha256").iterdir()) == []


def test_only_a_blob_staged_in_this_store_is_adopted(tmp_path: Path) -> None:
    layer = files_layer(FILES)
    with LocalStore(tmp_path / "a") as a, LocalStore(tmp_path / "b") as b:
        module = _streamed(a, layer)
        with pytest.raises(StoreError, match="was not staged"):
            b.adopt(module)
        module.discard()
        assert list((a.root / "tmp").iterdir()) == []
        assert not b.contains(PETS, COMMIT)
        assert b.entries() == []
