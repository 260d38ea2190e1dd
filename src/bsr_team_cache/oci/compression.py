"""How a module's files layer (a tar) is compressed: zstd as written now, gzip as written
before (and read still), and the media types that say which.

zstd is what teams' layers are written with: on real .proto text it is ~10% smaller than gzip
at the level used, and it decompresses about 3x faster, which a large module's cold fetch
spends on every byte. The level is fixed and moderate: one zstd library makes the same layer
from the same files on every machine (another version of it may make other bytes, each
verified alike), and a layer made again here (one a peer padded: oci/layer.py) costs about
what gzip did, whoever sends it.

Decompressing is bounded like gzip's (oci/layer.py counts output, and its ratio to input, at
every step), and a zstd frame may not ask for a window over 4 MiB: a forged frame cannot make
a reader allocate more than that for it. Where this Python has no zstd (a 3.14 built without
it; the backport not installed), layers are written as gzip and a zstd layer cannot be read
(an invalid layer: the fetch takes the module elsewhere).
"""

from __future__ import annotations

import functools
import sys
import zlib
from typing import Any, Protocol

GZIP_LAYER_MEDIA_TYPE = "application/vnd.buf.module.files.v1.tar+gzip"
ZSTD_LAYER_MEDIA_TYPE = "application/vnd.buf.module.files.v1.tar+zstd"
# ocicrypt's rule (plain type + "+encrypted"): skopeo 1.9 decrypts it, though it encrypts only
# the standard layer types.
ENCRYPTED_SUFFIX = "+encrypted"
PLAIN_LAYER_MEDIA_TYPES = (ZSTD_LAYER_MEDIA_TYPE, GZIP_LAYER_MEDIA_TYPE)
ENCRYPTED_LAYER_MEDIA_TYPES = tuple(t + ENCRYPTED_SUFFIX for t in PLAIN_LAYER_MEDIA_TYPES)
LAYER_MEDIA_TYPES = PLAIN_LAYER_MEDIA_TYPES + ENCRYPTED_LAYER_MEDIA_TYPES

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# ~26 ms per MiB of tar, as gzip's level 6. Higher levels save a few % more at several times
# the time (17: 4%, 4x), which every machine that makes a layer again would pay.
_LEVEL = 12
# zstd's own default limit for decoders is 2**27; level 12 needs 2**22 (4 MiB).
WINDOW_LOG_MAX = 22


class DecompressError(Exception):
    """The data is not a stream of the codec (or asks for more than a reader gives it)."""


class UnsupportedCodecError(DecompressError):
    """This Python cannot decompress the codec at all: nothing is wrong with the data."""


class Decompressor(Protocol):
    """zlib's decompress object, as far as layer.py uses it, and whether it wants more input
    (zstd's may hold input it has not decoded yet: it is then called with none)."""

    unconsumed_tail: bytes

    @property
    def needs_input(self) -> bool: ...

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int) -> bytes: ...


def is_encrypted(media_type: str) -> bool:
    return media_type.endswith(ENCRYPTED_SUFFIX)


def plain_media_type(media_type: str) -> str:
    return media_type.removesuffix(ENCRYPTED_SUFFIX)


def media_type_of(layer: bytes) -> str:
    """The plain media type of a files layer this program made or decoded (by its first bytes:
    both formats start with a magic number)."""
    return ZSTD_LAYER_MEDIA_TYPE if layer.startswith(_ZSTD_MAGIC) else GZIP_LAYER_MEDIA_TYPE


def without_extras(head: bytes, media_type: str) -> bool:
    """A layer's first bytes as the writer makes them: a zstd frame (its header has no room
    for extras), or gzip without optional fields (a name or comment a peer could make any
    size)."""
    if media_type == ZSTD_LAYER_MEDIA_TYPE:
        return head.startswith(_ZSTD_MAGIC)
    return head[:3] == b"\x1f\x8b\x08" and head[3:4] == b"\0"  # deflate, FLG 0


def file_extension(media_type: str) -> str:
    """How a layer of ``media_type`` (plain or encrypted) would end as a file: ".tar.zst" or
    ".tar.gz" (for the title annotation tools show)."""
    return ".tar.zst" if plain_media_type(media_type) == ZSTD_LAYER_MEDIA_TYPE else ".tar.gz"


def codec_name(media_type: str) -> str:
    """What a plain files layer of ``media_type`` is compressed with: "zstd" or "gzip"."""
    return "zstd" if media_type == ZSTD_LAYER_MEDIA_TYPE else "gzip"


_NEEDED = (
    "CompressionParameter",
    "DecompressionParameter",
    "ZstdDecompressor",
    "ZstdError",
    "compress",
)


@functools.cache  # (a failed import is looked for again at every call: ~50 us)
def zstd_module():
    """The zstd bindings: the standard library's (3.14+), else their backport; None if this
    Python has neither (or what answers to the name is not them)."""
    try:
        if sys.version_info >= (3, 14):
            from compression import zstd  # type: ignore[import-not-found]
        else:
            from backports import zstd  # type: ignore[import-not-found,no-redef]
    except ImportError:
        return None
    return zstd if all(hasattr(zstd, name) for name in _NEEDED) else None


# What layers are written as: "gzip" while a team has members on versions that read only gzip
# (layer_compression; set by the CLI from the settings, or by a library caller).
_writing = "zstd"


def write_layers_as(codec: str) -> None:
    """Write layers as ``codec`` ("zstd" or "gzip") from now on, in this process."""
    global _writing
    if codec not in ("zstd", "gzip"):
        raise ValueError(f"layers are written as zstd or gzip, not {codec!r}")
    _writing = codec


def compress_tar(tar: bytes) -> bytes:
    """The files layer for ``tar``: one zstd frame (its content size in its header); gzip
    where so configured (write_layers_as) or where this Python has no zstd."""
    zstd = zstd_module() if _writing == "zstd" else None
    if zstd is None:
        import gzip

        return gzip.compress(tar, compresslevel=6, mtime=0)
    # The window as level 12 takes it anyway, set so that no zstd version makes frames that
    # readers (WINDOW_LOG_MAX) refuse.
    parameter = zstd.CompressionParameter
    options = {parameter.compression_level: _LEVEL, parameter.window_log: WINDOW_LOG_MAX}
    return zstd.compress(tar, options=options)


def within_stored_size(compressed: int, content: int) -> bool:
    """Whether ``compressed`` bytes are no more than ``content`` bytes stored uncompressed take
    in either format (zstd's raw blocks: 3 bytes a 128 KiB block; deflate's stored ones: 5 a
    64 KiB block), which is the most any compressor makes. More means padding: empty blocks,
    which both formats allow any number of."""
    return compressed <= content + (content >> 12) + 1024


def decompressor(media_type: str) -> Decompressor:
    """A decompressor for a plain files layer of ``media_type`` (one of
    PLAIN_LAYER_MEDIA_TYPES)."""
    if media_type == ZSTD_LAYER_MEDIA_TYPE:
        return _ZstdStream()
    if media_type == GZIP_LAYER_MEDIA_TYPE:
        return _GzipStream()
    raise ValueError(f"not a files layer media type: {media_type!r}")


class _Stream:
    """What both codecs' decompress objects say alike."""

    _decoder: Any  # zlib's decompress object, or zstd's decompressor

    @property
    def eof(self) -> bool:
        return self._decoder.eof

    @property
    def unused_data(self) -> bytes:
        return self._decoder.unused_data


class _GzipStream(_Stream):
    """One gzip stream (wbits 31: nothing else)."""

    needs_input = True  # what zlib has not taken is in unconsumed_tail

    def __init__(self) -> None:
        self._decoder = zlib.decompressobj(wbits=31)

    @property
    def unconsumed_tail(self) -> bytes:
        return self._decoder.unconsumed_tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            return self._decoder.decompress(data, max_length)
        except zlib.error as exc:
            raise DecompressError(str(exc)) from None


class _ZstdStream(_Stream):
    """One zstd frame, with zlib's contract: input it has not taken is in ``unconsumed_tail``.
    zstd's decompressor keeps input it could not decode yet itself, and says so (needs_input
    False); new input is then left to the caller until it has drained that, so what it holds
    stays bounded by one call's input."""

    def __init__(self) -> None:
        zstd = zstd_module()
        if zstd is None:
            raise UnsupportedCodecError("this Python has no zstd bindings")
        self._error = zstd.ZstdError
        try:
            self._decoder = zstd.ZstdDecompressor(
                options={zstd.DecompressionParameter.window_log_max: WINDOW_LOG_MAX}
            )
        except self._error as exc:
            raise DecompressError(str(exc)) from None
        self.unconsumed_tail = b""

    @property
    def needs_input(self) -> bool:
        return self._decoder.needs_input

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            if self._decoder.needs_input:
                self.unconsumed_tail = b""
                return self._decoder.decompress(data, max_length)
            self.unconsumed_tail = data
            out = self._decoder.decompress(b"", max_length)
        except (self._error, EOFError) as exc:
            raise DecompressError(str(exc)) from None
        if not out and not self._decoder.needs_input and not self._decoder.eof:
            # Never expected; without it, a caller waiting for output would ask forever.
            raise DecompressError("the decoder makes no progress")
        return out
