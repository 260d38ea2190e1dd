"""The embedded backend: OCI image layouts on disk, one per repository.

``ROOT/<repository>/`` is a standard image layout (``oci-layout``, ``index.json``,
``blobs/sha256/…``) with tags as ``org.opencontainers.image.ref.name`` annotations, so
``skopeo inspect oci:ROOT/<repository>:<tag>`` reads it. Usable on a shared filesystem:
blobs are written to a temp file and renamed, and ``index.json`` is rewritten under a file lock.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from bsr_team_cache._fs import (
    atomic_write,
    file_chunks,
    inside,
    open_regular_file,
    read_regular_file,
    touch_existing,
    write_verified,
)
from bsr_team_cache.errors import (
    ConflictError,
    ContentTooLargeError,
    InvalidContentError,
    MissingBlobError,
    RegistryError,
)
from bsr_team_cache.limits import limits
from bsr_team_cache.oci.base import (
    OCI_INDEX,
    parse_json,
    sha256_digest,
    validate_oci_digest,
    verify_blob,
)

REF_NAME = "org.opencontainers.image.ref.name"
# index.json holds one entry (~250 B) per tag; this allows ~250,000 tags in one repository.
MAX_INDEX_BYTES = 64 << 20
_CHUNK_BYTES = 1 << 20  # what open_blob yields at a time


F = TypeVar("F", bound=Callable[..., Any])


def _filesystem_errors(method: F) -> F:
    """A directory that cannot be used is a registry problem (the fetch falls back to the
    next tier and says why), not a crash."""

    @functools.wraps(method)
    def wrapper(self: OCILayoutRegistry, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            where = exc.filename or self.root
            raise RegistryError(
                f"team registry {self.describe()}: {where}: {exc.strerror or exc}"
            ) from None

    return wrapper  # type: ignore[return-value]


class OCILayoutRegistry:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._checked: dict[str, Path] = {}  # repository -> its directory, links checked
        self._indexes: dict[str, tuple[bytes, dict]] = {}  # repository -> index.json, parsed

    def describe(self) -> str:
        return f"oci-layout:{self.root}"

    def _repo_dir(self, repo: str) -> Path:
        parts = repo.split("/")
        if any(p in ("", ".", "..") or "\x00" in p for p in parts):
            raise RegistryError(f"invalid repository name {repo!r}")
        # Members share this directory: a planted link must not send reads or writes elsewhere.
        return inside(self.root, self.root / repo, InvalidContentError)

    def _blob_path(self, repo: str, digest: str) -> Path:
        hex_value = validate_oci_digest(digest, f"{self.describe()}/{repo}")[len("sha256:") :]
        return inside(
            self.root, self._repo_dir(repo) / "blobs" / "sha256" / hex_value, InvalidContentError
        )

    def _init(self, repo: str) -> Path:
        directory = self._repo_dir(repo)
        if not (directory / "oci-layout").exists():
            atomic_write(directory / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        return directory

    @contextmanager
    def _index_lock(self, repo: str) -> Iterator[None]:
        directory = self._init(repo)
        with open(directory / ".index.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_index(self, repo: str) -> dict:
        path = self._repo_dir(repo) / "index.json"
        if not path.exists():
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        data = read_regular_file(path, MAX_INDEX_BYTES)
        cached = self._indexes.get(repo)
        if cached is not None and cached[0] == data:
            # Parsed once per content (a prune reads every tag of a long index); a copy of the
            # top level: writers replace "manifests", they never change an entry.
            return {**cached[1]}
        index = parse_json(data, str(path), "index.json")
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not all(
            isinstance(m, dict)
            and isinstance(m.get("annotations", {}), dict)
            and isinstance(m.get("mediaType", ""), str)
            for m in entries
        ):
            raise InvalidContentError(f"{path}: corrupt index.json (no list of manifests)")
        self._indexes[repo] = (data, index)
        return {**index}

    # -- RegistryBackend -----------------------------------------------------------------
    @_filesystem_errors
    def blob_exists(self, repo: str, digest: str) -> bool:
        """Whether the blob is here; one that is becomes young again (a pusher asks before it
        names the blob in a manifest: collect_garbage must not take it meanwhile)."""
        return touch_existing(self._blob_path(repo, digest))

    @_filesystem_errors
    def read_blob(self, repo: str, digest: str, max_bytes: int | None = None) -> bytes:
        path = self._blob_path(repo, digest)
        limit = limits().max_module_bytes if max_bytes is None else max_bytes
        try:
            data = read_regular_file(path, limit)
        except FileNotFoundError:
            raise MissingBlobError(f"{self.describe()}: {repo}: blob {digest} not found") from None
        return verify_blob(data, digest, f"{self.describe()}/{repo}")

    @_filesystem_errors
    def open_blob(self, repo: str, digest: str, max_bytes: int) -> Iterator[bytes]:
        """The blob in 1 MiB chunks, read from the regular file that holds it (never a link),
        refused beyond ``max_bytes``; verified after the last chunk."""
        from bsr_team_cache.oci.streaming import verified_chunks

        path = self._blob_path(repo, digest)
        try:
            fd = open_regular_file(path, max_bytes)
        except FileNotFoundError:
            raise MissingBlobError(f"{self.describe()}: {repo}: blob {digest} not found") from None
        chunks = self._file_chunks(fd, path, max_bytes)
        return verified_chunks(chunks, digest, f"{self.describe()}/{repo}")

    def _file_chunks(self, fd: int, path: Path, max_bytes: int) -> Iterator[bytes]:
        """The open file's bytes (then closed); at most ``max_bytes`` of them."""
        read = 0
        try:
            while chunk := os.read(fd, _CHUNK_BYTES):
                read += len(chunk)
                if read > max_bytes:
                    raise ContentTooLargeError(f"{path}: grew beyond {max_bytes} bytes while read")
                yield chunk
        except OSError as exc:
            raise RegistryError(
                f"team registry {self.describe()}: {path}: {exc.strerror or exc}"
            ) from None
        finally:
            os.close(fd)

    @_filesystem_errors
    def push_blob(self, repo: str, data: bytes, digest: str) -> None:
        verify_blob(data, digest, "push")
        self._init(repo)
        path = self._blob_path(repo, digest)
        if not touch_existing(path):
            atomic_write(path, data)

    @_filesystem_errors
    def read_blob_to(self, repo: str, digest: str, dest: Path) -> int:
        source = self._blob_path(repo, digest)
        if not source.is_file():
            raise MissingBlobError(f"{self.describe()}: {repo}: blob {digest} not found")
        return write_verified(dest, file_chunks(source), digest, f"{self.describe()}/{repo}")

    @_filesystem_errors
    def push_blob_file(self, repo: str, path: Path, digest: str) -> None:
        self._init(repo)
        target = self._blob_path(repo, digest)
        if not touch_existing(target):
            write_verified(target, file_chunks(path), digest, f"push {path}")

    @_filesystem_errors
    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        source = self._blob_path(from_repo, digest)
        if not source.exists():
            return False
        self._init(repo)
        target = self._blob_path(repo, digest)
        if touch_existing(target):
            return True
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.mount")
        try:
            os.link(source, tmp)  # a hard link shares the bytes, like a registry mount
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        touch_existing(target)  # the link keeps the source's time: young here, as a new blob is
        return True

    @_filesystem_errors
    def push_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        return self._tag(repo, reference, data, media_type, check=False, expected=None)

    @_filesystem_errors
    def replace_manifest(
        self, repo: str, tag: str, data: bytes, media_type: str, expected: str | None
    ) -> str:
        return self._tag(repo, tag, data, media_type, check=True, expected=expected)

    def _tag(
        self,
        repo: str,
        reference: str,
        data: bytes,
        media_type: str,
        *,
        check: bool,
        expected: str | None,
    ) -> str:
        digest = sha256_digest(data)
        self.push_blob(repo, data, digest)
        with self._index_lock(repo):  # the check and the write are one step for every writer
            index = self._read_index(repo)
            if check:
                current = next(
                    (
                        m["digest"]
                        for m in index["manifests"]
                        if m.get("annotations", {}).get(REF_NAME) == reference
                    ),
                    None,
                )
                if current != expected:
                    raise ConflictError(
                        f"{self.describe()}/{repo}:{reference} changed meanwhile"
                        f" ({expected} -> {current})"
                    )
            manifests = [
                m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != reference
            ]
            manifests.append(
                {
                    "mediaType": media_type,
                    "digest": digest,
                    "size": len(data),
                    "annotations": {REF_NAME: reference},
                }
            )
            index["manifests"] = manifests
            atomic_write(
                self._repo_dir(repo) / "index.json",
                json.dumps(index, indent=2, sort_keys=True).encode(),
            )
        return digest

    @_filesystem_errors
    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        cap = limits().max_document_bytes
        if reference.startswith("sha256:"):
            if not self._blob_path(repo, reference).exists():
                return None
            data = self.read_blob(repo, reference, cap)
            found = parse_json(data, f"{self.describe()}/{repo}@{reference}", "manifest")
            media_type = found.get("mediaType", "") if isinstance(found, dict) else ""
            return data, media_type if isinstance(media_type, str) else ""
        for entry in self._read_index(repo)["manifests"]:
            if entry.get("annotations", {}).get(REF_NAME) == reference:
                try:
                    return self.read_blob(repo, entry.get("digest"), cap), entry.get(
                        "mediaType", ""
                    )
                except MissingBlobError:
                    raise InvalidContentError(
                        f"{self.describe()}/{repo}:{reference}: the tagged manifest is missing"
                    ) from None
        return None

    @_filesystem_errors
    def list_tags(self, repo: str) -> list[str]:
        manifests = self._read_index(repo)["manifests"]
        names = [m.get("annotations", {}).get(REF_NAME) for m in manifests]
        return sorted({t for t in names if isinstance(t, str) and t})  # a member wrote the index

    @_filesystem_errors
    def delete_manifest(self, repo: str, digest: str) -> None:
        with self._index_lock(repo):
            index = self._read_index(repo)
            index["manifests"] = [m for m in index["manifests"] if m.get("digest") != digest]
            atomic_write(
                self._repo_dir(repo) / "index.json",
                json.dumps(index, indent=2, sort_keys=True).encode(),
            )

    @_filesystem_errors
    def collect_garbage(self, repo: str, grace_seconds: float = 3600.0) -> int:
        """Remove the repository's blobs that no manifest of its index refers to, directly or
        through an index, a subject or a config (as Distribution's ``garbage-collect`` does for
        a registry); the bytes freed. Blobs younger than ``grace_seconds`` are kept: a push
        writes or touches its blobs (``blob_exists`` refreshes one it finds) before the manifest
        that names them. A manifest that cannot be read keeps every blob (InvalidContentError:
        nothing is removed on a guess). Only files named as blobs are, and the directory is
        opened without following a link at any step."""
        import time

        with self._index_lock(repo):
            referenced = self._referenced(repo)
            fd = self._open_blob_dir(repo)
            if fd is None:
                return 0
            try:
                cutoff, freed = time.time() - grace_seconds, 0
                with os.scandir(fd) as entries:
                    for entry in entries:
                        if not _BLOB_NAME.fullmatch(entry.name):
                            continue
                        if f"sha256:{entry.name}" in referenced:
                            continue
                        info = entry.stat(follow_symlinks=False)
                        if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                            os.unlink(entry.name, dir_fd=fd)
                            freed += info.st_size
            finally:
                os.close(fd)
            return freed

    def _referenced(self, repo: str) -> set[str]:
        """Every digest the repository's manifests need: theirs, their configs', layers',
        subjects' and (for an index) its manifests' and what those need."""
        cap = limits().max_document_bytes
        pending = [m.get("digest") for m in self._read_index(repo)["manifests"]]
        manifests: set[str] = set()
        referenced: set[str] = set()
        while pending:
            digest = pending.pop()
            where = f"{self.describe()}/{repo}@{str(digest)[:80]}"
            if not isinstance(digest, str):
                raise InvalidContentError(f"{where}: a manifest digest is not a string")
            if digest in manifests:
                continue
            if len(manifests) >= _MAX_WALKED:
                raise InvalidContentError(f"{where}: more than {_MAX_WALKED} manifests")
            manifests.add(digest)
            manifest = parse_json(self.read_blob(repo, digest, cap), where, "manifest")
            if not isinstance(manifest, dict):
                raise InvalidContentError(f"{where}: not a manifest")
            children = []
            for key in ("layers", "manifests", "blobs"):
                value = manifest.get(key, [])
                if not isinstance(value, list):
                    raise InvalidContentError(f"{where}: {key} is not a list")
                children += [(key, d) for d in value]
            children += [(k, manifest[k]) for k in ("config", "subject") if k in manifest]
            for key, descriptor in children:
                named = descriptor.get("digest") if isinstance(descriptor, dict) else None
                if not isinstance(named, str):
                    raise InvalidContentError(f"{where}: a {key} descriptor without a digest")
                if key in ("manifests", "subject"):
                    pending.append(named)
                else:
                    referenced.add(named)
        return referenced | manifests

    def _open_blob_dir(self, repo: str) -> int | None:
        """A descriptor of ``<repo>/blobs/sha256``, each directory opened without following a
        link (one swapped in meanwhile fails the open); None if there is none."""
        parts = [*repo.split("/"), "blobs", "sha256"]
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts:
                try:
                    child = os.open(part, _DIR_NO_LINK, dir_fd=fd)
                except FileNotFoundError:
                    return None
                os.close(fd)
                fd = child
            found, fd = fd, -1
            return found
        finally:
            if fd >= 0:
                os.close(fd)


_BLOB_NAME = re.compile(r"[0-9a-f]{64}")
_DIR_NO_LINK = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_MAX_WALKED = 100_000
