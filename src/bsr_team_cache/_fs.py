"""Writing files so that no reader ever sees half of one: a temp file beside the target (or in
``tmp_dir``, on the same filesystem), then an atomic rename."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bsr_team_cache.errors import DigestMismatchError


def atomic_write(
    path: Path, data: bytes, *, tmp_dir: Path | None = None, fsync: bool = False
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_verified(dest: Path, chunks: Iterable[bytes], digest: str, where: str) -> int:
    """Stream ``chunks`` into ``dest``, hashing as they come; rename into place only if they
    hash to ``digest`` (``sha256:…``). Returns the size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        hasher, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for block in chunks:
                hasher.update(block)
                out.write(block)
                size += len(block)
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            raise DigestMismatchError(
                f"{where}: blob {digest} is corrupt (its content hashes to {actual})"
            )
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return size


def file_chunks(path: Path, start: int = 0, length: int | None = None) -> Iterable[bytes]:
    """A file's bytes (or a range of them) in 1 MiB blocks."""
    with open(path, "rb") as f:
        f.seek(start)
        remaining = length
        while remaining is None or remaining > 0:
            block = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not block:
                return
            if remaining is not None:
                remaining -= len(block)
            yield block
