"""The files layer of a module artifact: its files as a deterministic tar, zstd-compressed (gzip
as written before: oci/compression.py), and the one reader that turns such a layer (from the
team registry, a bundle or the local store) back into files, strictly and within bounds.

The reader accepts only what the writer makes: regular-file members (with PAX records for long
paths), in one zstd frame or one gzip stream, as the layer's media type says. It checks each
member's declared size against what is left of the module limit before reading it, stops
decompressing as soon as the output outgrows the input by more than any real text does (a
decompression bomb is refused after a few MiB, not after GiBs), and validates every path
(domain/files.py; and no file may be named like another's directory). Anything else is an
InvalidContentError. ``decode_files_layer`` holds the files it reads; ``open_layer`` and
``layer_members`` let a reader that does not (oci/streaming.py) take each file as it
completes, under the same checks, with the same messages.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import threading
from collections.abc import Iterator
from typing import BinaryIO

from bsr_team_cache.domain.digest import DOC_FILE_NAMES
from bsr_team_cache.domain.files import path_problem, validate_file_set
from bsr_team_cache.errors import ContentTooLargeError, InvalidContentError, UnreadableHereError
from bsr_team_cache.limits import INFLATE_RATIO, INFLATE_RATIO_FLOOR, limits
from bsr_team_cache.oci.compression import (
    DecompressError,
    UnsupportedCodecError,
    codec_name,
    compress_tar,
    decompressor,
    within_stored_size,
    without_extras,
)

BLOCK = 512
_STEP = 1 << 20  # at most this much output per decompression step
_INPUT_STEP = 64 << 10
MAX_PAX_BYTES = 64 << 10  # one PAX header (a long path needs a few hundred bytes)
MAX_METADATA_BYTES = 32 << 20  # all headers and PAX records of one layer
# What may follow the end-of-archive block in a layer that is kept as received: tar's record
# padding (zeros; 10 KiB for tarfile and GNU tar).
MAX_TRAILING_ZEROS = 64 << 10

# Layers read whole into memory that inflate past INFLATE_RATIO_FLOOR each hold one of these
# slots while they decode (and, inside ``holding_large_layers``, until that block ends, while
# their files are stored and placed): a peer cannot make 16 workers hold 16 modules of up to
# the module limit at once. A block holds at most one slot, so no holder ever waits for
# another slot and no wait can close a circle.
LARGE_LAYER_SLOTS = 2
_large_slots = threading.BoundedSemaphore(LARGE_LAYER_SLOTS)
_held_slots: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "held_large_layer_slots", default=None
)


@contextlib.contextmanager
def holding_large_layers() -> Iterator[None]:
    """Large layers decoded in this block keep their slot until it ends (one worker's module:
    pulled, stored, placed)."""
    held: list[bool] = []
    token = _held_slots.set(held)
    try:
        yield
    finally:
        _held_slots.reset(token)
        if held:
            _large_slots.release()


def _take_large_slot() -> bool:
    """Wait for a slot; True if the caller releases it (no block holds it for longer)."""
    held = _held_slots.get()
    if held:
        return False  # this block already has its slot
    _large_slots.acquire()
    if held is None:
        return True
    held.append(True)
    return False


def files_layer(files: dict[str, bytes]) -> bytes:
    """A byte-for-byte reproducible layer of the files (the same bytes from the same files and
    the same zstd library): a sorted tar without times or owners, zstd-compressed."""
    import tarfile  # only when a layer is made (a warm fetch reads none)

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files, key=str.encode):
            info = tarfile.TarInfo(path)
            info.size = len(files[path])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[path]))
    return compress_tar(raw.getvalue())


class Inflater:
    """Decompressed bytes on demand, counted against the limits as they are produced."""

    def __init__(self, source: BinaryIO, where: str, max_output: int, media_type: str) -> None:
        self._source = source
        self._where = where
        self._max_output = max_output
        self._media_type = media_type
        self._codec = codec_name(media_type)
        try:
            self._stream = decompressor(media_type)
        except UnsupportedCodecError as exc:
            raise UnreadableHereError(f"{where}: the files layer cannot be read ({exc})") from None
        # No tar records but the ones the writer makes (a PAX "path" for a long name): a
        # layer with others (junk a peer adds, up to MAX_METADATA_BYTES) is not kept.
        self.canonical = True
        self._input = b""
        self._buf = bytearray()
        self._pos = 0
        self.consumed = 0  # compressed bytes the decoder has taken in
        self.produced = 0

    def _more(self) -> bool:
        if self._stream.eof:
            return False  # what follows the compressed stream is never read
        if not self._input and self._stream.needs_input:
            self._input = self._source.read(_INPUT_STEP)
            if not self._input:
                raise InvalidContentError(f"{self._where}: the files layer ends early")
        fed = len(self._input)
        try:
            out = self._stream.decompress(self._input, _STEP)
        except DecompressError as exc:
            raise InvalidContentError(
                f"{self._where}: the files layer is not {self._codec} ({exc})"
            ) from None
        self._input = self._stream.unconsumed_tail
        self.consumed += fed - len(self._input)
        self.produced += len(out)
        if self.produced > self._max_output:
            raise ContentTooLargeError(
                f"{self._where}: the files layer expands beyond {self._max_output} bytes"
            )
        if self.produced > INFLATE_RATIO_FLOOR and self.produced > INFLATE_RATIO * max(
            1, self.consumed
        ):
            raise ContentTooLargeError(
                f"{self._where}: the files layer expands {self.produced // max(1, self.consumed)}"
                " times its compressed size (a decompression bomb)"
            )
        if self._pos > len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += out
        return True

    def exact(self, head: bytes) -> bool:
        """Whether the layer, read to the archive's end and starting with ``head``, is exactly
        its files as the writer makes them: no optional gzip fields, the rest of the layer only
        zeros (at most MAX_TRAILING_ZEROS of them), the compressed stream ending exactly where
        the layer does, no larger than what it holds stored uncompressed (not padded with empty
        blocks), and no tar records but the writer's."""
        if not without_extras(head, self._media_type):
            return False
        zeros = len(self._buf) - self._pos
        while not self._stream.eof:
            try:
                if zeros > MAX_TRAILING_ZEROS or not self._more():
                    return False
            except InvalidContentError:  # cut short, or not compressed, past the archive's end
                return False
            zeros = len(self._buf) - self._pos
        rest = self._buf[self._pos :]
        if zeros > MAX_TRAILING_ZEROS or rest.count(0) != len(rest):
            return False
        return (
            not self._stream.unused_data
            and not self._input
            and not self._source.read(1)
            and self.canonical
            and within_stored_size(self.consumed, self.produced)
        )

    def take(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            if not self._more():
                raise InvalidContentError(f"{self._where}: the files layer ends early")
        data = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return data


def _octal(field: bytes, where: str) -> int:
    if field[:1] and field[0] & 0x80:
        raise InvalidContentError(f"{where}: a tar header uses a base-256 number")
    text = field.rstrip(b"\0 ").lstrip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidContentError(f"{where}: a tar header holds a bad number") from None


def _checksum_ok(header: bytes) -> bool:
    stored = header[148:156].rstrip(b"\0 ").lstrip(b" ")
    try:
        expected = int(stored, 8)
    except ValueError:
        return False
    unsigned = sum(header) - sum(header[148:156]) + 8 * 0x20  # the field counts as 8 blanks
    if expected == unsigned:
        return True
    # Some old tars sum signed bytes.
    blanked = header[:148] + b" " * 8 + header[156:]
    return expected == unsigned - 256 * sum(1 for b in blanked if b > 127)


def _pax_records(data: bytes, where: str) -> dict[str, str]:
    """``"<len> <key>=<value>\\n"`` records."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 20)
        if space < 0:
            raise InvalidContentError(f"{where}: malformed PAX record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise InvalidContentError(f"{where}: malformed PAX record length") from None
        record = data[space + 1 : pos + length]
        if length <= space - pos or pos + length > len(data) or not record.endswith(b"\n"):
            raise InvalidContentError(f"{where}: malformed PAX record")
        key, eq, value = record[:-1].partition(b"=")
        if not eq:
            raise InvalidContentError(f"{where}: malformed PAX record")
        try:
            records[key.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidContentError(f"{where}: a PAX record is not UTF-8") from None
        pos += length
    return records


def _members(inflater: Inflater, where: str) -> Iterator[tuple[str, int]]:
    """(path, size) of each regular-file member; the caller reads ``size`` bytes next."""
    pax: dict[str, str] = {}
    metadata = 0
    while True:
        header = inflater.take(BLOCK)
        metadata += BLOCK
        if header == bytes(BLOCK):
            return  # end of archive: what follows (padding) is not read
        if not _checksum_ok(header):
            raise InvalidContentError(f"{where}: a tar header's checksum is wrong")
        kind = header[156:157]
        size = _octal(header[124:136], where)
        if kind in (b"x", b"g"):
            if size > MAX_PAX_BYTES:
                raise InvalidContentError(f"{where}: a PAX header of {size} bytes")
            data = inflater.take(-(-size // BLOCK) * BLOCK)[:size]
            metadata += len(data)
            if kind == b"x":
                pax = _pax_records(data, where)
            if kind == b"g" or set(pax) - {"path"}:
                inflater.canonical = False
        elif kind in (b"0", b"\0"):
            if "path" in pax:
                path = pax["path"]
            else:
                name = header[0:100].split(b"\0", 1)[0]
                if header[257:262] == b"ustar":
                    prefix = header[345:500].split(b"\0", 1)[0]
                    name = prefix + b"/" + name if prefix else name
                try:
                    path = name.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidContentError(f"{where}: a file name is not UTF-8") from None
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise InvalidContentError(f"{where}: a PAX size is not a number") from None
            pax = {}
            yield path, size
        else:
            raise InvalidContentError(
                f"{where}: the files layer holds a member of type {kind!r} (only regular files)"
            )
        if metadata > MAX_METADATA_BYTES:
            raise ContentTooLargeError(f"{where}: the files layer's headers exceed bounds")


def read_files_layer(data: bytes | BinaryIO, where: str, media_type: str) -> dict[str, bytes]:
    """The files of a layer, checked: regular files only, valid and unique paths, within the
    module limits (``limits()``)."""
    return decode_files_layer(data, where, media_type)[0]


def layer_members(inflater: Inflater, where: str) -> Iterator[tuple[str, int]]:
    """(path, size) of each file of a layer opened with ``open_layer``, checked before its
    bytes are read: within what is left of the module limits, a valid module path
    (domain/files.py), not seen before, not named like a directory of another file. The caller
    takes ``size`` bytes (at once, or in pieces) and then ``skip_padding`` before asking for
    the next; at the end, at most one doc file (``validate_file_set``'s rule and message)."""
    lim = limits()
    total = 0
    seen: set[str] = set()
    directories: set[str] = set()  # of the files so far: no file may be one of them
    docs: list[str] = []
    for path, size in _members(inflater, where):
        if size < 0 or total + size > lim.max_module_bytes:
            raise ContentTooLargeError(
                f"{where}: the module's files exceed {lim.max_module_bytes} bytes"
                " (raise --max-module-mb if this module is really that large)"
            )
        if len(seen) >= lim.max_module_files:
            raise ContentTooLargeError(
                f"{where}: the module has more than {lim.max_module_files} files"
            )
        if path in seen:
            raise InvalidContentError(f"{where}: file {path!r} appears twice")
        problem = path_problem(path)
        if problem is not None:
            raise InvalidContentError(f"{where}: unsafe file path {path!r}: {problem}")
        _no_file_is_a_directory(path, seen, directories, where)
        seen.add(path)
        if path in DOC_FILE_NAMES:
            docs.append(path)
        total += size
        yield path, size
    validate_file_set(docs, where)  # valid and unique already: only the one-doc-file rule


def _no_file_is_a_directory(path: str, files: set[str], directories: set[str], where: str) -> None:
    """Refuse a file named like a directory of another file (``a.proto`` and
    ``a.proto/b.proto``): no file system holds both. Records ``path``'s directories."""
    clash = path if path in directories else None
    parent = path.rpartition("/")[0]
    while clash is None and parent and parent not in directories:
        if parent in files:
            clash = parent
        directories.add(parent)
        parent = parent.rpartition("/")[0]
    if clash is not None:
        raise InvalidContentError(f"{where}: {clash!r} is both a file and a directory")


def skip_padding(inflater: Inflater, size: int) -> None:
    """Read past the zeros that fill a member of ``size`` bytes up to a whole block."""
    padding = -size % BLOCK
    if padding:
        inflater.take(padding)


def decode_files_layer(
    data: bytes | BinaryIO, where: str, media_type: str
) -> tuple[dict[str, bytes], bool]:
    """The files of a layer of plain ``media_type`` (as ``read_files_layer``), and whether the
    layer is exactly such files and nothing more: no optional gzip fields, nothing after the
    compressed stream, only tar's zero padding after the archive. Only such a layer is worth
    keeping as received; anything else a peer could pad out is made again from the files."""
    source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    inflater = open_layer(source, where, media_type)
    files: dict[str, bytes] = {}
    release = large = False
    try:
        for path, size in layer_members(inflater, where):
            if not large and inflater.produced + size > INFLATE_RATIO_FLOOR:
                large = True
                release = _take_large_slot()
            files[path] = inflater.take(size)
            skip_padding(inflater, size)
    finally:
        if release:
            _large_slots.release()
    header = data[:4] if isinstance(data, bytes | bytearray) else b""
    exact = inflater.exact(header)
    return files, exact


def open_layer(source: BinaryIO, where: str, media_type: str) -> Inflater:
    """A files layer of plain ``media_type`` to read with ``layer_members``, decompressed as it
    is read."""
    # Headers and padding come on top of the files' bytes: allow for them in the output bound.
    return Inflater(source, where, limits().max_module_bytes + MAX_METADATA_BYTES, media_type)
