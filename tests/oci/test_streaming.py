"""Large files layers streamed from the team registry into the local store and buf's cache
(oci/streaming.py): the same files and blobs as the in-memory path, the same refusals with the
same messages, and nothing left behind (no store entry, no buf cache entry, no temporary file,
no staging directory) when anything is wrong."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
import zlib
from pathlib import Path

import pytest

from bsr_team_cache.bufcache.v3 import module_entry_dir
from bsr_team_cache.domain.buflock import LockedDep
from bsr_team_cache.domain.digest import b4_from_contents, b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import (
    ContentTooLargeError,
    DigestMismatchError,
    InvalidContentError,
    MissingBlobError,
)
from bsr_team_cache.oci import streaming
from bsr_team_cache.oci.artifact import (
    LAYER_MEDIA_TYPE,
    ModuleArtifact,
    ModuleDepRecord,
    StreamedModule,
    pull_module,
    push_module,
)
from bsr_team_cache.oci.base import Descriptor, RegistryBackend, sha256_digest
from bsr_team_cache.oci.compression import GZIP_LAYER_MEDIA_TYPE, zstd_module
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.layer import files_layer
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.fetch import write_cache_entry
from bsr_team_cache.team.stream_sinks import layer_sinks

BIG = parse_module_name("localhost:8443/acme/big")
MONEY = parse_module_name("localhost:8443/acme/money")
COMMIT = "0123456789abcdef0123456789abcdef"
MONEY_DEP = ModuleDepRecord(MONEY, "2bb75b8cc22842fa8841c641fb25d3a6", b5_from_contents({}))
REPO = "teams/t/dependencies/localhost-8443/acme/big"
# Streamed from this size on, in these tests (the real threshold needs ~30 MB of .proto text).
THRESHOLD = 64 << 10


@pytest.fixture(autouse=True)
def _small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "STREAM_LAYER_BYTES", THRESHOLD)


def big_files(seed: int = 1) -> dict[str, bytes]:
    """~1.3 MB in 150 files of 15 directories, one file of 3 MiB (handed on in pieces), a
    README and a LICENSE; random bytes, so the layer is as large as the files."""
    rng = random.Random(seed)
    files = {
        f"acme/big/d{i % 15}/v1/f{i}.proto": rng.randbytes(rng.randrange(1, 17_000))
        for i in range(150)
    }
    files["acme/big/huge.proto"] = rng.randbytes(3 << 20)
    files["README.md"] = b"# big\n"
    files["LICENSE"] = b"MIT\n"
    return files


def artifact_of(files: dict[str, bytes], **changes: object) -> ModuleArtifact:
    fields: dict = {
        "module": BIG,
        "commit": COMMIT,
        "digest": b5_from_contents(files, [MONEY_DEP.digest]),
        "deps": (MONEY_DEP,),
        "files": files,
        "create_time": "2024-01-01T00:00:00+00:00",
    }
    fields.update(changes)
    return ModuleArtifact(**fields)


def with_layer(artifact: ModuleArtifact, layer: bytes) -> ModuleArtifact:
    """The artifact, pushed with ``layer`` as its files layer (whatever it holds)."""
    return ModuleArtifact(**{**artifact.__dict__, "layer": layer, "layer_of": 0})


def dep_of(artifact: ModuleArtifact, *, b4: bool = False) -> LockedDep:
    return LockedDep(artifact.module, artifact.commit, artifact.b4 if b4 else artifact.digest)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def leftovers(store_dir: Path, cache: Path) -> list[str]:
    """Temporary files of the store and staging directories of buf's cache."""
    found = [p.name for p in (store_dir / "tmp").iterdir()]
    parent = module_entry_dir(cache, BIG, COMMIT).parent
    found += [p.name for p in parent.glob(".*")] if parent.exists() else []
    return found


def streamed_pull(
    registry: RegistryBackend, store: LocalStore, cache: Path, dep: LockedDep
) -> ModuleArtifact | StreamedModule | None:
    return pull_module(registry, REPO, dep.module, dep.commit, sinks=layer_sinks(store, cache, dep))


@pytest.fixture(params=["oci-layout", "distribution"])
def registry(request, tmp_path: Path, distribution: DistributionServer) -> RegistryBackend:
    if request.param == "oci-layout":
        return OCILayoutRegistry(tmp_path / "registry")
    return HTTPRegistry(f"{distribution.url}/stream-{tmp_path.name[-20:].lower()}")


@pytest.mark.parametrize("threads", [0, 3])  # files hashed and written inline, or by threads
def test_a_large_layer_streams_into_the_store_and_buf_cache(
    registry, tmp_path: Path, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "_FILE_THREADS", threads)
    artifact = artifact_of(big_files())
    push_module(registry, REPO, artifact)
    store, cache = LocalStore(tmp_path / "store"), tmp_path / "cache"
    dep = dep_of(artifact)

    got = streamed_pull(registry, store, cache, dep)

    assert isinstance(got, StreamedModule)
    assert (got.digest, got.deps, got.size) == (artifact.digest, artifact.deps, artifact.size)
    # Checked, and nothing visible yet: one temporary file, one staging directory.
    assert not store.contains(BIG, COMMIT)
    assert not module_entry_dir(cache, BIG, COMMIT).exists()
    assert len(leftovers(store.root, cache)) == 2
    store.adopt(got)
    assert write_cache_entry(cache, dep, got)
    got.discard()  # nothing left to remove

    assert leftovers(store.root, cache) == []
    assert store.get(BIG, COMMIT) == artifact  # read back whole, verified
    layer_blob = store.root / "blobs" / "sha256" / got.layer.digest.removeprefix("sha256:")
    assert layer_blob.read_bytes() == files_layer(artifact.files)  # kept as it arrived
    # buf's entry is what the in-memory path writes, byte for byte.
    write_cache_entry(tmp_path / "in-memory", dep, artifact)
    assert tree(module_entry_dir(cache, BIG, COMMIT)) == tree(
        module_entry_dir(tmp_path / "in-memory", BIG, COMMIT)
    )
    assert tree(module_entry_dir(cache, BIG, COMMIT) / "files") == artifact.files


def test_small_layers_and_callers_without_sinks_read_layers_whole(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "registry")
    small = artifact_of({"a/v1/a.proto": b'syntax = "proto3";\n'})
    push_module(registry, REPO, small)
    store, cache = LocalStore(tmp_path / "store"), tmp_path / "cache"
    assert streamed_pull(registry, store, cache, dep_of(small)) == small
    big = artifact_of(big_files())
    push_module(registry, REPO, big)
    assert pull_module(registry, REPO, BIG, COMMIT) == big
    assert leftovers(store.root, cache) == []


def test_a_b4_entry_of_a_streamed_module_holds_its_v1_files(tmp_path: Path) -> None:
    files = big_files()
    v1_files = {"buf.yaml": b"version: v1\n"}
    money = ModuleDepRecord(MONEY, MONEY_DEP.commit, MONEY_DEP.digest, b4_from_contents({}))
    artifact = artifact_of(
        files, deps=(money,), b4=b4_from_contents(files, v1_files), v1_files=v1_files
    )
    registry = OCILayoutRegistry(tmp_path / "registry")
    push_module(registry, REPO, artifact)
    store, cache = LocalStore(tmp_path / "store"), tmp_path / "cache"
    dep = dep_of(artifact, b4=True)

    got = streamed_pull(registry, store, cache, dep)

    assert isinstance(got, StreamedModule) and got.has_b4
    store.adopt(got)
    assert write_cache_entry(cache, dep, got)
    write_cache_entry(tmp_path / "in-memory", dep, artifact)
    entry = module_entry_dir(cache, BIG, COMMIT, "shake256")
    assert tree(entry) == tree(module_entry_dir(tmp_path / "in-memory", BIG, COMMIT, "shake256"))
    assert (entry / "v1_buf_yaml" / "buf.yaml").read_bytes() == b"version: v1\n"
    assert store.get(BIG, COMMIT) == artifact
    assert leftovers(store.root, cache) == []


def test_a_complete_buf_cache_entry_is_left_alone_and_the_store_still_fills(
    tmp_path: Path,
) -> None:
    artifact = artifact_of(big_files())
    registry = OCILayoutRegistry(tmp_path / "registry")
    push_module(registry, REPO, artifact)
    store, cache = LocalStore(tmp_path / "store"), tmp_path / "cache"
    dep = dep_of(artifact)
    write_cache_entry(cache, dep, artifact)
    module_yaml = module_entry_dir(cache, BIG, COMMIT) / "module.yaml"
    before = module_yaml.stat().st_mtime_ns

    got = streamed_pull(registry, store, cache, dep)

    assert isinstance(got, StreamedModule) and got.sinks.files is None
    store.adopt(got)
    assert not write_cache_entry(cache, dep, got)
    assert module_yaml.stat().st_mtime_ns == before
    assert store.get(BIG, COMMIT) == artifact
    assert leftovers(store.root, cache) == []


def _layer_path(root: Path, artifact: ModuleArtifact) -> Path:
    return root / REPO / "blobs" / "sha256" / sha256_digest(files_layer(artifact.files))[7:]


def _nothing_left(store: LocalStore, cache: Path) -> None:
    assert not store.contains(BIG, COMMIT)
    assert store.stats().entries == 0
    assert not module_entry_dir(cache, BIG, COMMIT).exists()
    assert leftovers(store.root, cache) == []


def _flip_a_byte(blob: bytes) -> bytes:
    data = bytearray(blob)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def _same_files_other_bytes(blob: bytes) -> bytes:
    """The same tar compressed otherwise, padded with zeros to the blob's size: every file
    checks out, only the blob's sha256 tells."""
    z = zstd_module()
    options = {
        z.CompressionParameter.compression_level: 12,
        z.CompressionParameter.content_size_flag: 0,
    }
    other = z.compress(z.decompress(blob), options=options)
    assert len(other) <= len(blob)
    return other.ljust(len(blob), b"\0")


@pytest.mark.parametrize("corrupt", [_flip_a_byte, _same_files_other_bytes])
def test_a_corrupt_layer_is_refused_as_when_read_whole_and_leaves_nothing_behind(
    tmp_path: Path, corrupt
) -> None:
    artifact = artifact_of(big_files())
    registry = OCILayoutRegistry(tmp_path / "registry")
    push_module(registry, REPO, artifact)
    blob = _layer_path(tmp_path / "registry", artifact)
    blob.write_bytes(corrupt(blob.read_bytes()))
    store, cache = LocalStore(tmp_path / "store"), tmp_path / "cache"
    with pytest.raises(DigestMismatchError) as whole:
        pull_module(registry, REPO, BIG, COMMIT)

    with pytest.raises(DigestMismatchError) as streamed:
        streamed_pull(registry, store, cache, dep_of(artifact))

    assert str(streamed.value) == str(whole.value)
    assert "is corrupt (its content hashes to" in str(streamed.value)
    _nothing_left(store, cache)


def test_files_that_do_not_hash_to_the_pinned_digest_leave_nothing_behind(
    tmp_path: Path,
) -> None:
    files = big_files()
    claimed = artifact_of(big_files(seed=2))  # the digest of other files
    planted = artifact_of(files, digest=claimed.digest)
    registry = OCILayoutRegistry(tmp_path / "registry")
    push_module(registry, REPO, planted)
    store, cache = LocalStore(tmp_path / "store"), tmp_path / "cache"

    with pytest.raises(DigestMismatchError, match=f"files hash to {artifact_of(files).digest}"):
        streamed_pull(registry, store, cache, dep_of(claimed))

    _nothing_left(store, cache)


def _tar_gz(members: list[tuple[str, bytes]], *, symlink: bool = False) -> bytes:
    """A tar+gzip of ``members`` (and, with ``symlink``, then a link to /etc/passwd)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            link = tarfile.TarInfo("acme/big/link.proto")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    return gzip.compress(raw.getvalue(), mtime=0)


def _bomb(size: int, compressor, files: int) -> bytes:
    """A files layer of ``files`` valid files (enough to be streamed, few enough for the zeros
    to outgrow them), then one of ``size`` zeros (within the module limit on its own), made
    without holding it: ``compressor`` is zlib's or zstd's streaming one."""
    parts = []
    for name, data in sorted(big_files().items())[:files]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        parts.append(compressor.compress(info.tobuf(tarfile.PAX_FORMAT) + data))
        parts.append(compressor.compress(bytes(-len(data) % 512)))
    info = tarfile.TarInfo("bomb/v1/zeros.proto")
    info.size = size
    parts.append(compressor.compress(info.tobuf(tarfile.PAX_FORMAT)))
    zeros = bytes(1 << 20)
    parts += [compressor.compress(zeros) for _ in range(size >> 20)]
    parts += [compressor.compress(bytes(1024)), compressor.flush()]
    return b"".join(parts)


@pytest.mark.parametrize(
    ("what", "layer", "message"),
    [
        (
            "a path out of the module",
            lambda: _tar_gz([*sorted(big_files().items())[:80], ("../../escaped.proto", b"x")]),
            "unsafe file path '../../escaped.proto'",
        ),
        (
            "a file named like a directory of another",
            lambda: _tar_gz(
                [
                    *sorted(big_files().items())[:80],
                    ("acme/big/x.proto/y.proto", b"y"),
                    ("acme/big/x.proto", b"x"),
                ]
            ),
            "'acme/big/x.proto' is both a file and a directory",
        ),
        (
            "a directory named like a file before it",
            lambda: _tar_gz(
                [
                    *sorted(big_files().items())[:80],
                    ("acme/big/x.proto", b"x"),
                    ("acme/big/x.proto/y.proto", b"y"),
                ]
            ),
            "'acme/big/x.proto' is both a file and a directory",
        ),
        (
            "a link member",
            lambda: _tar_gz(sorted(big_files().items())[:80], symlink=True),
            "only regular files",
        ),
        (
            "a decompression bomb",
            lambda: _bomb(64 << 20, zlib.compressobj(9, zlib.DEFLATED, 31), 5),
            "times its compressed size (a decompression bomb)",
        ),
        (
            "a zstd decompression bomb",
            lambda: _bomb(64 << 20, zstd_module().ZstdCompressor(level=3), 40),
            "times its compressed size (a decompression bomb)",
        ),
    ],
)
def test_a_bad_member_is_refused_mid_stream_as_the_in_memory_reader_refuses_it(
    tmp_path: Path, what: str, layer, message: str
) -> None:
    data = layer()
    assert len(data) >= THRESHOLD, what
    artifact = with_layer(artifact_of(big_files()), data)
    registry = OCILayoutRegistry(tmp_path / "registry")
    push_module(registry, REPO, artifact)
    store, cache = LocalStore(tmp_path / "store"), tmp_path / "cache"
    with pytest.raises(InvalidContentError) as whole:
        pull_module(registry, REPO, BIG, COMMIT)  # the in-memory reader

    with pytest.raises(InvalidContentError) as streamed:
        streamed_pull(registry, store, cache, dep_of(artifact))

    assert message in str(whole.value)
    assert str(streamed.value) == str(whole.value)
    assert type(streamed.value) is type(whole.value)
    _nothing_left(store, cache)
    assert not (tmp_path / "escaped.proto").exists()


def test_a_layer_that_is_more_than_its_files_is_read_again_whole_for_the_store(
    tmp_path: Path,
) -> None:
    """Bytes after the zstd frame: buf's files check out, but the store keeps only a layer
    made again from the files (as the in-memory path does), so the layer is read whole."""
    artifact = artifact_of(big_files())
    padded = files_layer(artifact.files) + b"hidden"
    registry = OCILayoutRegistry(tmp_path / "registry")
    push_module(registry, REPO, with_layer(artifact, padded))
    store, cache = LocalStore(tmp_path / "store"), tmp_path / "cache"

    got = streamed_pull(registry, store, cache, dep_of(artifact))

    assert isinstance(got, ModuleArtifact) and got == artifact and got.layer is None
    assert leftovers(store.root, cache) == []
    # Without a store there is nothing to make again: the streamed files serve buf's cache.
    alone = pull_module(
        registry, REPO, BIG, COMMIT, sinks=layer_sinks(None, cache, dep_of(artifact))
    )
    assert isinstance(alone, StreamedModule) and alone.sinks.blob is None
    assert write_cache_entry(cache, dep_of(artifact), alone)
    assert tree(module_entry_dir(cache, BIG, COMMIT) / "files") == artifact.files


def test_only_large_plain_layers_that_are_not_embedded_stream() -> None:
    size = streaming.STREAM_LAYER_BYTES
    digest = "sha256:" + "0" * 64
    for plain in (LAYER_MEDIA_TYPE, GZIP_LAYER_MEDIA_TYPE):
        assert streaming.streams(Descriptor(plain, digest, size))
        assert not streaming.streams(Descriptor(plain, digest, size - 1))
        assert not streaming.streams(Descriptor(plain + "+encrypted", digest, size))
        assert not streaming.streams(Descriptor(plain, digest, size, data=b"x"))
    assert not streaming.streams(Descriptor("application/octet-stream", digest, size))


def test_open_blob_streams_verified_chunks_within_bounds(registry, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(5 << 20)
    digest = sha256_digest(data)
    registry.push_blob(REPO, data, digest)

    assert registry.blob_exists(REPO, digest)  # a HEAD of more than the document limit
    chunks = list(registry.open_blob(REPO, digest, len(data)))
    assert b"".join(chunks) == data
    assert len(chunks) == 5  # 1 MiB at a time: never the whole blob in one piece
    with pytest.raises(ContentTooLargeError):
        b"".join(registry.open_blob(REPO, digest, len(data) - 1))
    with pytest.raises(MissingBlobError):
        b"".join(registry.open_blob(REPO, "sha256:" + "1" * 64, 10))


def test_open_blob_says_a_blob_is_corrupt_after_its_last_chunk(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "registry")
    data = random.Random(4).randbytes(2 << 20)
    digest = sha256_digest(data)
    registry.push_blob(REPO, data, digest)
    path = tmp_path / "registry" / REPO / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.write_bytes(_flip_a_byte(data))
    received = []

    with pytest.raises(DigestMismatchError, match=f"blob {digest} is corrupt"):
        for chunk in registry.open_blob(REPO, digest, len(data)):
            received.append(chunk)

    assert len(b"".join(received)) == len(data)
