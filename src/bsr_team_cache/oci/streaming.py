"""A large files layer read as it arrives, never whole in memory.

Each chunk of the blob goes to the local store's temporary file as it comes (the layer kept as
it arrived), into the same strict reader as oci/layer.py (regular files only, sizes within the
module limits, the decompression-bomb ratio, every path checked by domain/files.py rules), and
each file, once complete, into buf's cache staging directory and through shake256 (what b5 and
b4 are made of). Nothing is made visible here: the caller (``pull_module``) checks the blob's
sha256 (the registry backend's ``open_blob`` does, after its last chunk), the file set's b5
(and b4) against the artifact's config, and only then hands the result on; the store and buf's
cache rename what was staged into place. Whatever fails, the sinks are discarded: no temporary
file or staging directory is left behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from bsr_team_cache.domain.digest import DIGEST_LENGTH
from bsr_team_cache.errors import DigestMismatchError, InvalidContentError
from bsr_team_cache.oci.base import Descriptor
from bsr_team_cache.oci.compression import PLAIN_LAYER_MEDIA_TYPES
from bsr_team_cache.oci.layer import (
    Inflater,
    layer_members,
    open_layer,
    skip_padding,
)

if TYPE_CHECKING:
    from bsr_team_cache.domain.digest import Digest
    from bsr_team_cache.domain.moduleref import ModuleName

# A plain files layer this large (compressed) is streamed; smaller ones are read whole, which
# is faster for them (one read, no staging on the way).
STREAM_LAYER_BYTES = 4 << 20
# A file is handed on in pieces of at most this size: a large file is never whole in memory.
FILE_PIECE_BYTES = 1 << 20
# Files are hashed and written by this many threads, in batches of about _BATCH_BYTES or
# _BATCH_FILES; at most _PENDING_BATCHES batches wait for them.
_FILE_THREADS = 3
_BATCH_BYTES = 256 << 10
_BATCH_FILES = 64
_PENDING_BATCHES = 16


class BlobSink(Protocol):
    """Where the blob's bytes go as they arrive (the local store's temporary file)."""

    def write(self, data: bytes | memoryview) -> None: ...

    def discard(self) -> None: ...


class FilesSink(Protocol):
    """Where each file goes once it is complete (buf's cache staging directory, see
    bufcache/v3.py's EntryWriter). ``path`` has been checked (a valid module path, not seen
    before in this layer)."""

    def add(self, path: str, pieces: Iterable[bytes]) -> None: ...

    def commit(
        self,
        deps: Iterable[tuple[ModuleName, str, Digest]],
        v1_files: dict[str, bytes] | None = None,
    ) -> bool:
        """Make the files visible (the entry renamed into place); False if it was there."""
        ...

    def discard(self) -> None: ...


class LayerSinks:
    """The places a streamed layer is written to; either may be absent (no local store, no buf
    cache to fill, or buf's entry already complete). Whoever holds them last discards them,
    unless they were committed (the store adopting the blob, buf's entry renamed into place)."""

    __slots__ = ("blob", "files")

    def __init__(self, blob: BlobSink | None = None, files: FilesSink | None = None) -> None:
        self.blob = blob
        self.files = files

    def discard(self) -> None:
        """Remove what was staged and not committed (safe to call more than once)."""
        try:
            if self.blob is not None:
                self.blob.discard()
        finally:
            if self.files is not None:
                self.files.discard()


OpenSinks = Callable[[], LayerSinks]


def verified_chunks(chunks: Iterable[bytes], digest: str, where: str) -> Iterator[bytes]:
    """``chunks`` passed on as they come, hashed; after the last one, a DigestMismatchError if
    they do not hash to ``digest`` (the message of oci/base.py's ``verify_blob``)."""
    hasher = hashlib.sha256()
    try:
        for chunk in chunks:
            hasher.update(chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # a source given up midway (its connection) is closed with this one
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest:
        raise DigestMismatchError(
            f"{where}: blob {digest} is corrupt (its content hashes to {actual})"
        )


class _TeeReader:
    """The blob's chunks as a file the layer reader pulls from; every chunk also goes to the
    blob sink when it is pulled. Remembers the layer's first bytes (its magic number)."""

    def __init__(self, chunks: Iterator[bytes], blob: BlobSink | None) -> None:
        self._chunks = chunks
        self._blob = blob
        self._chunk = memoryview(b"")
        self._pos = 0
        self.received = 0
        self.head = b""

    def _next_chunk(self) -> bool:
        for chunk in self._chunks:  # one chunk (empty ones skipped)
            if not chunk:
                continue
            if self._blob is not None:
                self._blob.write(chunk)
            if len(self.head) < 4:
                self.head += bytes(chunk[: 4 - len(self.head)])
            self.received += len(chunk)
            self._chunk, self._pos = memoryview(chunk), 0
            return True
        return False

    def read(self, n: int) -> memoryview:
        if self._pos >= len(self._chunk) and not self._next_chunk():
            return memoryview(b"")
        piece = self._chunk[self._pos : self._pos + n]
        self._pos += len(piece)
        return piece

    def drain(self, *, keep: bool = True) -> None:
        """Pull the rest of the blob through the digest check (and to the sink, unless it
        is not to be kept)."""
        if not keep:
            self._blob = None
        self._pos = len(self._chunk)
        while self._next_chunk():
            pass


def _pieces(inflater: Inflater, size: int, hasher: hashlib._Hash) -> Iterator[bytes]:
    """A file of ``size`` bytes in pieces of at most FILE_PIECE_BYTES, hashed as they go."""
    left = size
    while left:
        piece = inflater.take(min(left, FILE_PIECE_BYTES))
        hasher.update(piece)
        left -= len(piece)
        yield piece


class StreamedLayer:
    """What reading a layer found: each file's shake256, the files' bytes in all, and whether
    the layer is exactly its files (see ``decode_files_layer``)."""

    __slots__ = ("exact", "file_digests", "files_bytes")

    def __init__(self, file_digests: dict[str, bytes], files_bytes: int, exact: bool) -> None:
        self.file_digests = file_digests
        self.files_bytes = files_bytes
        self.exact = exact


class _FileWorkers:
    """Files hashed (shake256) and handed to the files sink by a few threads while the caller
    goes on reading the layer: hashing and file creation run without the GIL, so they overlap
    decompression. Files come in batches (fewer hand-offs); at most _PENDING_BATCHES of them
    wait, so memory stays bounded however fast the layer decompresses. The first error stops
    the work; ``submit`` or ``finish`` raises it."""

    def __init__(self, threads: int, files: FilesSink | None, digests: dict[str, bytes]) -> None:
        import queue
        import threading

        self._files = files
        self._digests = digests
        self._queue: queue.Queue[list[tuple[str, bytes]] | None] = queue.Queue(_PENDING_BATCHES)
        self._error: BaseException | None = None
        self._stopped = False
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        shake, files, digests = hashlib.shake_256, self._files, self._digests
        while (batch := self._queue.get()) is not None:
            if self._stopped:
                continue  # drained without working
            try:
                for path, content in batch:
                    digests[path] = shake(content).digest(DIGEST_LENGTH)
                    if files is not None:
                        files.add(path, (content,))
            except BaseException as exc:  # handed to the caller (submit, finish)
                self._error = self._error or exc
                self._stopped = True

    def submit(self, batch: list[tuple[str, bytes]]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def finish(self) -> None:
        """Wait for the work handed over; raise its first error."""
        self._join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop: what is not begun is dropped, what is under way ends; errors are dropped."""
        self._stopped = True
        self._join()

    def _join(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


def file_threads() -> int:
    """Threads that hash and write a streamed layer's files (none on one core)."""
    from bsr_team_cache._cpus import usable_cpus

    return 0 if usable_cpus() < 2 else _FILE_THREADS


def stream_files_layer(
    chunks: Iterator[bytes], descriptor: Descriptor, where: str, sinks: LayerSinks
) -> StreamedLayer:
    """Read the plain files layer ``descriptor`` names from ``chunks`` (a registry's
    ``open_blob``) to its end, checked as ``decode_files_layer`` checks: every chunk to
    ``sinks.blob``, every file to ``sinks.files`` as it completes. Raises what the reader or
    the blob's digest check raises (the digest first, as when a blob is read whole: content
    refused midway is read to its end, unwritten, to tell a corrupt blob from a bad one); the
    caller discards the sinks then (no thread writes into them any more by then)."""
    reader = _TeeReader(chunks, sinks.blob)
    digests: dict[str, bytes] = {}
    threads = file_threads()
    workers = _FileWorkers(threads, sinks.files, digests) if threads else None
    try:
        found = _read_layer(reader, descriptor.media_type, where, sinks.files, digests, workers)
        if workers is not None:
            workers.finish()
    except InvalidContentError:
        if workers is not None:
            workers.abandon()
        reader.drain(keep=False)  # a DigestMismatchError if the blob is corrupt
        raise
    except BaseException:
        if workers is not None:
            workers.abandon()
        raise
    reader.drain()
    if reader.received != descriptor.size:
        raise InvalidContentError(f"{where}: blob {descriptor.digest} is not {descriptor.size} B")
    return found


def _read_layer(
    reader: _TeeReader,
    media_type: str,
    where: str,
    files: FilesSink | None,
    digests: dict[str, bytes],
    workers: _FileWorkers | None,
) -> StreamedLayer:
    """The layer's files, each hashed into ``digests`` and given to ``files`` (by ``workers``
    if any; a file of more than FILE_PIECE_BYTES here, in pieces)."""
    inflater = open_layer(reader, where, media_type)  # type: ignore[arg-type]  # reads like a file
    shake = hashlib.shake_256
    batch: list[tuple[str, bytes]] = []
    batch_bytes = total = 0
    for path, size in layer_members(inflater, where):
        if size <= FILE_PIECE_BYTES:
            content = inflater.take(size)
            if workers is not None:
                batch.append((path, content))
                batch_bytes += size
                if batch_bytes >= _BATCH_BYTES or len(batch) >= _BATCH_FILES:
                    workers.submit(batch)
                    batch, batch_bytes = [], 0
            else:
                digests[path] = shake(content).digest(DIGEST_LENGTH)
                if files is not None:
                    files.add(path, (content,))
        else:
            hasher = shake()
            pieces = _pieces(inflater, size, hasher)
            if files is not None:
                files.add(path, pieces)
            for _ in pieces:  # whatever the sink left unread
                pass
            digests[path] = hasher.digest(DIGEST_LENGTH)
        skip_padding(inflater, size)
        total += size
    if batch and workers is not None:
        workers.submit(batch)
    exact = inflater.exact(reader.head)
    return StreamedLayer(digests, total, exact)


def streams(descriptor: Descriptor) -> bool:
    """Whether a files layer is read as it arrives: plain (an encrypted one is decrypted
    whole), not embedded in the manifest, and large enough to gain from it."""
    return (
        descriptor.media_type in PLAIN_LAYER_MEDIA_TYPES
        and descriptor.data is None
        and descriptor.size >= STREAM_LAYER_BYTES
    )
