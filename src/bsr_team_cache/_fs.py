"""Writing files so that no reader ever sees half of one: a temp file beside the target (or in
``tmp_dir``, on the same filesystem), then an atomic rename."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from bsr_team_cache.errors import (
    ConfigError,
    ContentTooLargeError,
    DigestMismatchError,
    InvalidContentError,
    UsageError,
)

T = TypeVar("T")

_PRIVATE_NEW = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def new_temp_file(directory: Path | str, prefix: str) -> tuple[int, str]:
    """A new file of this user only (0600) in ``directory``, named ``prefix`` and random
    hex digits: (fd, path). As tempfile.mkstemp makes it (exclusive create, never through a
    link), without loading tempfile and with it shutil, bz2, lzma and random (~5 ms of a
    cold fetch)."""
    return _new_name(directory, prefix, lambda path: (os.open(path, _PRIVATE_NEW, 0o600), path))


def new_temp_dir(directory: Path | str, prefix: str) -> str:
    """A new directory of this user only (0700) in ``directory``, as new_temp_file names it."""
    return _new_name(directory, prefix, lambda path: (os.mkdir(path, 0o700), path)[1])


def _new_name(directory: Path | str, prefix: str, make: Callable[[str], T]) -> T:
    """``make(path)`` for the first free random name (``make`` raises FileExistsError)."""
    for _ in range(100):
        try:
            return make(os.path.join(directory, prefix + os.urandom(6).hex()))
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(directory))


def touch_existing(path: Path) -> bool:
    """Whether ``path`` exists; if so its time is now, so that a collector of old blobs spares
    it (a link's own time: nothing beyond it is touched). A file we may not touch (another
    user's, on a shared filesystem) is still there: exists, untouched."""
    try:
        os.utime(path, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(path)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """All of ``data`` to ``fd`` (os.write may write less than it was given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(
    path: Path,
    data: bytes,
    *,
    tmp_dir: Path | None = None,
    fsync: bool = False,
    make_parent: bool = True,
) -> None:
    """``path`` holding ``data``, written to a temp file and renamed into place. Without
    ``make_parent`` the caller knows the directory exists (a store writes two blobs per module
    into one directory: no mkdir each time)."""
    if make_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(tmp_dir or path.parent, f".{path.name}.")
    try:
        try:  # the fd itself, not a file object: no stat, seek or terminal probe per write
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_verified(dest: Path, chunks: Iterable[bytes], digest: str, where: str) -> int:
    """Stream ``chunks`` into ``dest``, hashing as they come; rename into place only if they
    hash to ``digest`` (``sha256:…``). Returns the size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(dest.parent, f".{dest.name}.")
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


def inside(root: Path, path: Path, error: type[Exception] = UsageError) -> Path:
    """``path`` if it lies under ``root`` (lexically) and no directory between them is a
    symbolic link; else UsageError. Paths we write are built from validated parts: this is
    the second line, so that no mistake and no planted link sends a write elsewhere."""
    root_text = os.path.normpath(os.path.abspath(root))
    path_text = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([root_text, path_text]) != root_text:
        raise error(f"refusing to use {path}: it is outside {root}")
    current = root_text
    for part in os.path.relpath(path_text, root_text).split(os.sep):
        if part in ("", "."):
            continue
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise error(f"refusing to use {current}: it is a symbolic link")
    return Path(path_text)


def open_regular_file(path: Path, max_bytes: int, *, follow_links: bool = False) -> int:
    """A descriptor of ``path`` opened for reading if it is a regular file (never a link, unless
    ``follow_links``, never a FIFO or device) of at most ``max_bytes``; else the file is closed
    and the error raised."""
    nofollow = 0 if follow_links else os.O_NOFOLLOW
    fd = os.open(path, os.O_RDONLY | nofollow | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidContentError(f"{path}: not a regular file")
        if info.st_size > max_bytes:
            raise ContentTooLargeError(f"{path}: {info.st_size} bytes exceeds {max_bytes}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(path: Path, max_bytes: int, *, follow_links: bool = False) -> bytes:
    """A regular file's bytes (never a link, unless ``follow_links``, never a FIFO or device),
    refused beyond ``max_bytes``."""
    fd = open_regular_file(path, max_bytes, follow_links=follow_links)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ContentTooLargeError(f"{path}: grew beyond {max_bytes} bytes while read")
    return data


def read_private_file(path: Path, what: str, max_bytes: int) -> bytes:
    """A private key file's bytes (``what`` names it in messages): a regular file (links
    followed: mounted secrets are links), refused beyond ``max_bytes`` and, as ssh refuses it,
    when it is this user's and group or others may read it (a file of another owner, such as a
    secret mounted read-only, is not ours to fix). ConfigError says which file and what to do."""
    try:
        fd = open_regular_file(path, max_bytes, follow_links=True)
    except OSError as exc:
        raise ConfigError(path, f"cannot read the {what} ({exc.strerror or exc})") from None
    except ContentTooLargeError:  # (an InvalidContentError too: first)
        raise ConfigError(path, f"the {what} is larger than {max_bytes} bytes") from None
    except InvalidContentError:
        raise ConfigError(path, f"the {what} is not a regular file") from None
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077 and info.st_uid == os.getuid():
            raise ConfigError(
                path,
                f"the {what} is readable by others (mode {mode:04o}); it must be private:"
                f" chmod 600 {path} (a mounted secret: mode 0400)",
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(path, f"cannot read the {what} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError(path, f"the {what} is larger than {max_bytes} bytes")
    return data


def append_lines(path: Path, lines: list[str]) -> None:
    """Append ``lines`` to ``path`` in one write under a shared lock. A reader that moves the
    file aside takes the exclusive lock first; an append that opened the file before the move
    notices (the path no longer names its file) and appends to the new one instead."""
    import fcntl  # here: only the commands that record import it

    data = "".join(line + "\n" for line in lines).encode()
    if not data:
        return
    for _ in range(10):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.write(fd, data)
                return
        finally:
            os.close(fd)  # also releases the lock
    raise OSError(f"{path}: kept being moved aside while appending")
