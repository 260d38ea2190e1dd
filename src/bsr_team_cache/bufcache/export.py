"""An include tree for ``protoc -I DIR``: the deps' ``.proto`` files, nothing else.

The export directory may be one the user also keeps other files in (a project directory, a
shared build output), and other users may have planted links in it, so the writer:

* writes ``.proto`` files only (what ``protoc -I`` reads; no README, LICENSE or buf.md);
* records what it wrote in ``.bsr-team-cache-export.json`` and refuses to overwrite any file
  it did not write itself, or that was changed since (the error says how to proceed);
* walks directories with ``O_NOFOLLOW`` from a descriptor of the export root, so it never
  follows a symbolic link below the root, and writes each file to a temporary name first and
  renames it into place, so no reader sees half a file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path

from bsr_team_cache.domain.files import path_problem
from bsr_team_cache.errors import BSRTeamCacheError, UsageError

RECORD = ".bsr-team-cache-export.json"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


class ExportError(UsageError):
    """The export directory holds something the export must not touch."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Exporter:
    """Adds modules' files to one export directory; ``close`` saves the record."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise ExportError(f"--export {self.root}: cannot use it ({exc.strerror})") from None
        self._written: dict[str, str] = self._read_record()
        self._this_run: dict[str, str] = {}

    def _read_record(self) -> dict[str, str]:
        try:
            fd = os.open(RECORD, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self._root_fd)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ExportError(f"{self.root / RECORD}: cannot read it ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            try:
                record = json.loads(f.read(64 << 20))
                files = record["files"]
                if isinstance(files, dict) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in files.items()
                ):
                    return dict(files)
            except (ValueError, KeyError, TypeError, RecursionError):
                pass
        raise ExportError(
            f"{self.root / RECORD}: not an export record; remove it (and the files it listed)"
            " or export into an empty directory"
        )

    def _directory(self, parts: list[str]) -> int:
        """A descriptor of root/parts..., made as needed, never through a symbolic link."""
        fd = os.dup(self._root_fd)
        try:
            for depth, part in enumerate(parts, start=1):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        where = "/".join(parts[:depth])
                        raise ExportError(
                            f"--export {self.root}: {where} is a symbolic link or a file, not a"
                            " directory of ours; remove it or export elsewhere"
                        ) from None
                    raise
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def add(self, files: dict[str, bytes], origin: str) -> int:
        """Write ``files``' .proto files; returns how many were written or already right."""
        count = 0
        for rel in sorted(files):
            if not rel.endswith(".proto"):
                continue
            if path_problem(rel) is not None:  # validated upstream; a second line here
                raise BSRTeamCacheError(f"{origin}: unsafe file path {rel!r}")
            self._write(rel, files[rel], origin)
            count += 1
        return count

    def _write(self, rel: str, content: bytes, origin: str) -> None:
        digest = _sha256(content)
        previous = self._this_run.get(rel)
        if previous is not None and previous != digest:
            raise BSRTeamCacheError(
                f"--export: {rel} comes from two modules with different content ({origin}"
                " and another dep); buf refuses such a set of deps too"
            )
        *dirs, name = rel.split("/")
        dir_fd = self._directory(dirs)
        try:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                current = self._existing(dir_fd, name, rel)
                if current == digest:
                    self._written[rel] = self._this_run[rel] = digest
                    return
            tmp = f".{name}.{os.urandom(6).hex()}.tmp"
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd
            )
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(content)
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                os.unlink(tmp, dir_fd=dir_fd)
                raise
            self._written[rel] = self._this_run[rel] = digest
        finally:
            os.close(dir_fd)

    def _existing(self, dir_fd: int, name: str, rel: str) -> str:
        """The digest of a file already at ``rel``, if the export wrote it and it is unchanged;
        else ExportError."""
        hint = (
            "remove it, or export into a directory of its own (e.g. --export"
            f" {self.root / 'bsr-deps'})"
        )
        recorded = self._written.get(rel)
        if recorded is None:
            raise ExportError(
                f"--export: {self.root / rel} exists and was not written by bsr-team-cache; {hint}"
            )
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
        except OSError:
            raise ExportError(
                f"--export: {self.root / rel} is not a regular file; {hint}"
            ) from None
        with os.fdopen(fd, "rb") as f:
            current = _sha256(f.read())
        if current != recorded:
            raise ExportError(
                f"--export: {self.root / rel} was changed since it was exported; {hint}"
            )
        return current

    def close(self) -> None:
        """Save the record of what the export holds (atomically)."""
        try:
            data = json.dumps({"files": dict(sorted(self._written.items()))}, indent=1).encode()
            tmp = f".{RECORD}.{os.urandom(6).hex()}.tmp"
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                0o644,
                dir_fd=self._root_fd,
            )
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, RECORD, src_dir_fd=self._root_fd, dst_dir_fd=self._root_fd)
        finally:
            os.close(self._root_fd)

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def export_files(root: Path, files: dict[str, bytes], origin: str) -> None:
    """Export one module's files (the design document's download_dependency)."""
    with Exporter(root) as exporter:
        exporter.add(files, origin)
