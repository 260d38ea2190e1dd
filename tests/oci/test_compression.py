"""Files layers in zstd (as written) and gzip (as written before): both read, each only as its
media type says, within the same bounds; zstd frames asking for a large window are refused."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from bsr_team_cache.errors import ContentTooLargeError, InvalidContentError
from bsr_team_cache.oci import compression
from bsr_team_cache.oci.compression import (
    GZIP_LAYER_MEDIA_TYPE,
    WINDOW_LOG_MAX,
    ZSTD_LAYER_MEDIA_TYPE,
    file_extension,
    media_type_of,
)
from bsr_team_cache.oci.layer import decode_files_layer, files_layer

FILES = {
    "acme/pets/v1/pet.proto": b'syntax = "proto3";\npackage acme.pets.v1;\nmessage Pet {}\n' * 40,
    "buf.md": b"# pets\n",
    "acme/pets/v1/food.proto": b'syntax = "proto3";\npackage acme.pets.v1;\nmessage Food {}\n',
}


def zstd():
    return compression.zstd_module()


def tar_of(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size = len(files[path])
            tar.addfile(info, io.BytesIO(files[path]))
    return raw.getvalue()


def decode_window_log(frame: bytes) -> int:
    """The window a zstd frame asks for, as a power of two (its content size, rounded up, for a
    single-segment frame)."""
    descriptor = frame[4]
    if descriptor & 0x20:  # single segment: the window is the content
        size_bytes = {0: 1, 1: 2, 2: 4, 3: 8}[descriptor >> 6]
        size = int.from_bytes(frame[5 : 5 + size_bytes], "little") + (256 if size_bytes == 2 else 0)
        return max(1, size - 1).bit_length()
    return 10 + (frame[5] >> 3)


def one_zero_file_tar_head(size: int) -> bytes:
    """A tar header for one regular file of ``size`` bytes (its content to follow)."""
    info = tarfile.TarInfo("zeros.proto")
    info.size = size
    return info.tobuf(format=tarfile.PAX_FORMAT)


def test_layers_are_zstd_the_same_bytes_from_the_same_files_and_read_back_exact() -> None:
    layer = files_layer(FILES)
    assert layer[:4] == b"\x28\xb5\x2f\xfd"
    assert media_type_of(layer) == ZSTD_LAYER_MEDIA_TYPE
    assert files_layer(dict(reversed(FILES.items()))) == layer
    files, exact = decode_files_layer(layer, "here", ZSTD_LAYER_MEDIA_TYPE)
    assert files == FILES
    assert exact is True
    # The tar inside is the one the writer makes: sorted, no times, no owners.
    with tarfile.open(fileobj=io.BytesIO(zstd().decompress(layer))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(FILES, key=str.encode)
    assert {(m.mtime, m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0, 0o644)}


def test_gzip_layers_written_before_are_read_and_kept_as_they_are() -> None:
    layer = gzip.compress(tar_of(FILES), mtime=0)
    assert media_type_of(layer) == GZIP_LAYER_MEDIA_TYPE
    files, exact = decode_files_layer(layer, "here", GZIP_LAYER_MEDIA_TYPE)
    assert files == FILES
    assert exact is True


@pytest.mark.parametrize(
    ("made_as", "said", "codec"),
    [("zstd", GZIP_LAYER_MEDIA_TYPE, "gzip"), ("gzip", ZSTD_LAYER_MEDIA_TYPE, "zstd")],
)
def test_a_layer_is_read_only_as_its_media_type_says(made_as: str, said: str, codec: str) -> None:
    layer = files_layer(FILES) if made_as == "zstd" else gzip.compress(tar_of(FILES))
    with pytest.raises(InvalidContentError, match=f"here: the files layer is not {codec} "):
        decode_files_layer(layer, "here", said)


def test_what_follows_the_zstd_frame_makes_the_layer_inexact() -> None:
    layer = files_layer(FILES)
    for extra in (b"junk", zstd().compress(b"\0" * 1024)):
        files, exact = decode_files_layer(layer + extra, "here", ZSTD_LAYER_MEDIA_TYPE)
        assert files == FILES
        assert exact is False


def test_a_zstd_layer_cut_short_is_refused() -> None:
    layer = files_layer(FILES)
    with pytest.raises(InvalidContentError, match="here: the files layer ends early"):
        decode_files_layer(layer[: len(layer) // 2], "here", ZSTD_LAYER_MEDIA_TYPE)


def test_a_skippable_frame_is_not_a_layer() -> None:
    skippable = b"\x50\x2a\x4d\x18" + (8).to_bytes(4, "little") + b"\0" * 8
    with pytest.raises(InvalidContentError, match="here: the files layer"):
        decode_files_layer(skippable + files_layer(FILES), "here", ZSTD_LAYER_MEDIA_TYPE)


def test_a_zstd_bomb_is_refused_after_a_few_mib() -> None:
    # One file of 200 MiB of zeros (within the 256 MiB module limit): ~10 KB of zstd.
    size = 200 << 20
    compressor = zstd().ZstdCompressor(level=3)
    out = [compressor.compress(one_zero_file_tar_head(size))]
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(compressor.compress(chunk))
    out.append(compressor.flush())
    layer = b"".join(out)
    assert len(layer) < 64 << 10
    # zstd takes the whole layer at once; 1 MiB comes out per step: refused at the first step
    # past 16 MiB.
    ratio = (17 << 20) // len(layer)
    expected = f"here: the files layer expands {ratio} times its compressed size"
    with pytest.raises(ContentTooLargeError, match=expected):
        decode_files_layer(layer, "here", ZSTD_LAYER_MEDIA_TYPE)


def test_a_zstd_frame_asking_for_a_window_over_4_mib_is_refused() -> None:
    z = zstd()
    size = 12 << 20
    options = {z.CompressionParameter.window_log: WINDOW_LOG_MAX + 2}
    compressor = z.ZstdCompressor(options=options)
    layer = compressor.compress(one_zero_file_tar_head(size) + bytes(size), compressor.FLUSH_FRAME)
    with pytest.raises(InvalidContentError, match="here: the files layer is not zstd"):
        decode_files_layer(layer, "here", ZSTD_LAYER_MEDIA_TYPE)
    # The same content within the window limit is a layer.
    within = z.compress(one_zero_file_tar_head(size) + bytes(size) + bytes(1024), level=3)
    files, _ = decode_files_layer(within, "here", ZSTD_LAYER_MEDIA_TYPE)
    assert files == {"zeros.proto": bytes(size)}


def test_layers_are_one_zstd_frame_at_level_12_with_their_content_size() -> None:
    z = zstd()
    for tar in (tar_of(FILES), bytes(2 << 20), bytes(9 << 20)):
        layer = compression.compress_tar(tar)
        assert layer == z.compress(tar, level=12)  # the window set is level 12's own
        assert z.get_frame_info(layer).decompressed_size == len(tar)
        assert decode_window_log(layer) <= WINDOW_LOG_MAX


def test_without_zstd_layers_are_written_as_gzip_and_zstd_ones_are_invalid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zstd_layer = files_layer(FILES)
    monkeypatch.setattr(compression, "zstd_module", lambda: None)
    layer = files_layer(FILES)
    assert media_type_of(layer) == GZIP_LAYER_MEDIA_TYPE
    assert decode_files_layer(layer, "here", GZIP_LAYER_MEDIA_TYPE) == (FILES, True)
    with pytest.raises(
        InvalidContentError,
        match=r"here: the files layer cannot be read \(this Python has no zstd bindings\)",
    ):
        decode_files_layer(zstd_layer, "here", ZSTD_LAYER_MEDIA_TYPE)


def test_a_name_that_is_not_the_zstd_bindings_counts_as_none(tmp_path) -> None:
    """A ``backports``/``compression`` package of the current directory (``python -m``) is
    not taken for the bindings."""
    import sys

    roots = ("backports", "compression")
    package = tmp_path / ("compression" if sys.version_info >= (3, 14) else "backports")
    (package / "zstd").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "zstd" / "__init__.py").write_text("")
    saved = {name: m for name, m in sys.modules.items() if name.split(".")[0] in roots}
    sys.path.insert(0, str(tmp_path))
    compression.zstd_module.cache_clear()
    try:
        for name in saved:
            del sys.modules[name]
        assert compression.zstd_module() is None
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.split(".")[0] in roots]:
            del sys.modules[name]
        sys.modules.update(saved)
        compression.zstd_module.cache_clear()
    assert compression.zstd_module() is not None  # the real ones, for the tests after this


def test_tar_records_a_peer_adds_make_a_layer_inexact() -> None:
    """Global PAX headers, or PAX records other than a long name's path (what the writer
    makes), can carry anything up to MAX_METADATA_BYTES: such a layer is made again."""
    long_name = "acme/pets/v1/" + "x" * 120 + ".proto"
    files = {**FILES, long_name: b'syntax = "proto3";\n'}
    layer = files_layer(files)
    assert decode_files_layer(layer, "here", ZSTD_LAYER_MEDIA_TYPE) == (files, True)
    for extra in ({"comment": "j" * 4000}, None):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            if extra is None:  # a global header
                junk = tarfile.TarInfo("junk")
                junk.type = tarfile.XGLTYPE
                junk.pax_headers = {"comment": "j" * 4000}
                tar.addfile(junk)
            for path in sorted(files, key=str.encode):
                info = tarfile.TarInfo(path)
                info.size = len(files[path])
                info.pax_headers = dict(extra or {})
                tar.addfile(info, io.BytesIO(files[path]))
        padded = zstd().compress(raw.getvalue(), level=12)
        assert decode_files_layer(padded, "here", ZSTD_LAYER_MEDIA_TYPE) == (files, False)


def _raw_block(data: bytes, last: bool) -> bytes:
    return (len(data) << 3 | int(last)).to_bytes(3, "little") + data


def test_a_layer_padded_with_empty_blocks_is_not_kept_as_it_arrived() -> None:
    """Both formats allow any number of empty blocks (zstd: 3 bytes, deflate: 5): 100 KB of
    them around 10 KB of files decode to the right files, but such a layer is made again."""
    tar = tar_of(FILES)
    assert len(tar) < 128 << 10  # one raw block
    frame = b"\x28\xb5\x2f\xfd" + b"\x00" + b"\x50"  # no content size; a 1 MiB window
    for empty_blocks, exact in ((0, True), (3, True), (40_000, False)):
        layer = frame + _raw_block(b"", False) * empty_blocks + _raw_block(tar, True)
        assert decode_files_layer(layer, "here", ZSTD_LAYER_MEDIA_TYPE) == (FILES, exact)
    import zlib

    for empty_blocks, exact in ((0, True), (25_000, False)):
        deflate = zlib.compressobj(0, zlib.DEFLATED, 31)
        parts = [deflate.compress(tar), deflate.flush(zlib.Z_SYNC_FLUSH)]  # byte-aligned now
        parts.append(b"\x00\x00\x00\xff\xff" * empty_blocks)  # empty stored blocks
        layer = b"".join([*parts, deflate.flush()])
        assert decode_files_layer(layer, "here", GZIP_LAYER_MEDIA_TYPE) == (FILES, exact)


def test_names_of_layers_as_files() -> None:
    assert file_extension(ZSTD_LAYER_MEDIA_TYPE) == ".tar.zst"
    assert file_extension(ZSTD_LAYER_MEDIA_TYPE + "+encrypted") == ".tar.zst"
    assert file_extension(GZIP_LAYER_MEDIA_TYPE) == ".tar.gz"


def test_a_zstd_decoder_that_makes_no_progress_is_an_error() -> None:
    """Never seen; a decoder that neither gives output nor asks for input would otherwise
    be asked forever."""

    class Stuck:
        needs_input = False
        eof = False
        unused_data = b""

        def decompress(self, data: bytes, max_length: int) -> bytes:
            return b""

    stream = compression.decompressor(ZSTD_LAYER_MEDIA_TYPE)
    stream._decoder = Stuck()  # type: ignore[attr-defined]
    with pytest.raises(compression.DecompressError, match="the decoder makes no progress"):
        stream.decompress(b"more", 1 << 20)
    assert stream.unconsumed_tail == b"more"  # not taken: the caller still holds it


def test_a_team_that_writes_gzip_while_members_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    """layer_compression = "gzip" (resolve_team_options sets it from the settings): the layers
    this process makes are gzip, for members on versions that read only gzip."""
    monkeypatch.setattr(compression, "_writing", "zstd")
    from bsr_team_cache.cli.options import resolve_team_options

    monkeypatch.setenv("BSR_TEAM_CACHE_LAYER_COMPRESSION", "gzip")
    resolve_team_options({})
    layer = files_layer(FILES)
    assert media_type_of(layer) == GZIP_LAYER_MEDIA_TYPE
    assert layer == gzip.compress(tar_of(FILES), compresslevel=6, mtime=0)
    compression.write_layers_as("zstd")
    assert media_type_of(files_layer(FILES)) == ZSTD_LAYER_MEDIA_TYPE
    with pytest.raises(ValueError, match="layers are written as zstd or gzip, not 'lz4'"):
        compression.write_layers_as("lz4")
