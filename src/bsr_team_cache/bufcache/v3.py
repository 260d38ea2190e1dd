"""buf's v3 cache layout (buf >= 1.32), as buf's bufmodulestore writes it.

``$BUF_CACHE_DIR/v3/modules/b5/<registry>/<owner>/<name>/<commit>/`` holds ``files/…`` and
``module.yaml`` (b4 entries, for v1 buf.lock projects, live under ``shake256/`` and also hold a
v1 module's own ``v1_buf_yaml/buf.yaml`` and ``v1_buf_lock/buf.lock``). buf treats the presence
of ``module.yaml`` as "entry valid" and takes a file lock at
``v3/modulelocks/b5/<registry>/<owner>/<name>/<commit>.lock``. We build the entry in a temp
directory, write ``module.yaml`` last and rename the directory into place, so neither buf nor a
killed fetch ever sees half an entry; where an entry is already there (buf writing it, or a
half-written one to replace) we decide under buf's lock. buf calls this layout internal, so the
layouts we know are listed in KNOWN_LAYOUTS and anything else is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from bsr_team_cache._fs import inside, new_temp_dir, write_all
from bsr_team_cache._testhooks import reached
from bsr_team_cache.bufcache.layout import (  # noqa: F401 - also this module's API
    ENTRY_KINDS,
    FIRST_V3_VERSION,
    KNOWN_LAYOUTS,
    MODULE_YAML,
    buf_cache_dir,
    check_buf_layout,
    entry_dir_of,
    installed_buf_version,
    parse_buf_version,
)
from bsr_team_cache.domain._yamlnodes import scalar_text
from bsr_team_cache.domain.digest import B5, V1_CONFIG_FILES, Digest
from bsr_team_cache.domain.files import validate_file_set
from bsr_team_cache.domain.moduleref import ModuleName, validate_commit_id
from bsr_team_cache.errors import BSRTeamCacheError


def _digest_dir(digest_type: str) -> str:
    if digest_type not in ENTRY_KINDS:
        raise BSRTeamCacheError(f"no buf cache layout for digest type {digest_type!r}")
    return digest_type  # "b5", or "shake256" for b4 (v1 buf.lock projects)


def module_entry_dir(
    cache_dir: Path, module: ModuleName, commit: str, digest_type: str = B5
) -> Path:
    """The entry's directory, built from a validated name and commit and checked to stay
    inside ``cache_dir`` (nothing outside an entry is ever written or removed)."""
    validate_commit_id(commit)
    parts = (module.registry, module.owner, module.name)
    if any(not p or "/" in p or p in (".", "..") for p in parts):
        raise BSRTeamCacheError(f"refusing to write module {str(module)!r} into buf's cache")
    kind = _digest_dir(digest_type)
    return entry_dir_of(cache_dir, kind, module.registry, module.owner, module.name, commit)


def _module_yaml(deps: Iterable[tuple[ModuleName, str, Digest]], v1_files: Iterable[str]) -> str:
    """buf's module.yaml; every value is emitted as a YAML scalar that reads back as itself,
    so no value can add keys. A b4 entry of a v1 module also names its v1 buf.yaml/buf.lock."""
    lines = ["version: v1", "files_dir: files"]
    ordered = sorted(deps, key=lambda d: str(d[0]))
    if ordered:
        lines.append("deps:")
        for name, commit, digest in ordered:
            lines += [
                f"  - name: {scalar_text(str(name))}",
                f"    commit: {scalar_text(validate_commit_id(commit))}",
                f"    digest: {scalar_text(str(digest))}",
            ]
    for name in V1_CONFIG_FILES:
        if name in v1_files:
            key = f"v1_{name.replace('.', '_')}_file"  # v1_buf_yaml_file, v1_buf_lock_file
            lines.append(f"{key}: {_v1_path(name)}")
    return "\n".join(lines) + "\n"


def _v1_path(name: str) -> str:
    return f"v1_{name.replace('.', '_')}/{name}"  # v1_buf_yaml/buf.yaml, v1_buf_lock/buf.lock


def entry_complete(cache_dir: Path, module: ModuleName, commit: str, digest_type: str = B5) -> bool:
    """buf's test of an entry: its module.yaml is there (buf re-verifies the files' digest
    against buf.lock when it reads them, so a complete entry is never rebuilt)."""
    return os.path.exists(module_entry_dir(cache_dir, module, commit, digest_type) / MODULE_YAML)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_new(path: str, pieces: Iterable[bytes]) -> None:
    """A new file (never one that exists, nor through a link) holding ``pieces``: one open,
    one write per piece (usually one), one close."""
    fd = os.open(path, _NEW_FILE, 0o666)
    try:
        for piece in pieces:
            write_all(fd, piece)
    finally:
        os.close(fd)


# A module with this many files is written by several threads (file creation is kernel work,
# done without the GIL): googleapis' ~4,000 files take about half the time on two cores.
_THREADED_WRITE_FILES = 256
_WRITER_THREADS = 4


class EntryWriter:
    """One entry of buf's cache, built in a new staging directory beside where it goes: files
    are added as they come (``add``, from any thread, e.g. as a streamed layer yields them;
    or all at once, ``add_all``), then ``commit`` writes module.yaml last and renames the
    directory into place (buf never sees half an entry), or ``discard`` removes it. Paths
    added must be valid module file paths (domain/files.py; the layer reader and
    ``write_module`` check them): the staging directory is ours and new, files are created
    exclusively and never through a link, so nothing lands outside it."""

    def __init__(
        self, cache_dir: Path, module: ModuleName, commit: str, digest_type: str = B5
    ) -> None:
        self.cache_dir = cache_dir
        self.module = module
        self.commit_id = commit
        self.digest_type = digest_type
        self.entry = inside(cache_dir, module_entry_dir(cache_dir, module, commit, digest_type))
        _make_dirs(self.entry.parent)
        try:
            self.staging = new_temp_dir(self.entry.parent, f".{commit}.")
        except FileNotFoundError:  # removed since we made it (buf's cache cleared meanwhile)
            _made_dirs.discard(str(self.entry.parent))
            _make_dirs(self.entry.parent)
            self.staging = new_temp_dir(self.entry.parent, f".{commit}.")
        self._files = os.path.join(self.staging, "files")
        os.mkdir(self._files)
        self._made = {self._files}  # directories of the staging tree that exist

    @classmethod
    def open(
        cls, cache_dir: Path, module: ModuleName, commit: str, digest_type: str = B5
    ) -> EntryWriter | None:
        """A writer for the entry, or None if a complete entry (with module.yaml) is there."""
        if entry_complete(cache_dir, module, commit, digest_type):
            return None
        return cls(cache_dir, module, commit, digest_type)

    def _parent_made(self, path: str) -> None:
        """Make the directories of ``path`` (under ``files/``) that are not there yet: one
        mkdir each, once."""
        missing = []
        parent = os.path.dirname(path)
        while parent not in self._made:
            if parent == self.staging or len(parent) < len(self.staging):
                raise BSRTeamCacheError(f"refusing to write {path}: outside {self._files}")
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):  # another thread made it meanwhile
                os.mkdir(directory)
            self._made.add(directory)

    def add(self, path: str, pieces: Iterable[bytes]) -> None:
        """The file ``path`` (relative to ``files/``) with the bytes of ``pieces``."""
        full = os.path.join(self._files, path)
        self._parent_made(full)
        _write_new(full, pieces)

    def add_all(self, files: dict[str, bytes]) -> None:
        """Every file of a module held in memory; a large module by several threads."""
        paths = list(files)
        workers = 1  # the CPUs are counted (files read) only for a module large enough
        if len(paths) >= _THREADED_WRITE_FILES:
            from bsr_team_cache._cpus import usable_cpus

            workers = min(_WRITER_THREADS, usable_cpus())
        if workers < 2:
            for rel in paths:
                self.add(rel, (files[rel],))
            return
        from bsr_team_cache._threads import ContextThreadPool  # only for large modules

        def write_share(start: int) -> None:
            for rel in paths[start::workers]:
                self.add(rel, (files[rel],))

        with ContextThreadPool(workers) as pool:
            for done in [pool.submit(write_share, i) for i in range(workers)]:
                done.result()

    def commit(
        self,
        deps: Iterable[tuple[ModuleName, str, Digest]],
        v1_files: dict[str, bytes] | None = None,
    ) -> bool:
        """Write the v1 module's own files (a b4 entry) and module.yaml, then rename the entry
        into place; False if a valid entry was there already. The staging directory is gone
        afterwards either way."""
        v1_files = v1_files or {}
        try:
            if not set(v1_files) <= set(V1_CONFIG_FILES):
                raise BSRTeamCacheError(
                    f"{self.module}:{self.commit_id}: unexpected v1 files {sorted(v1_files)}"
                )
            for name, data in v1_files.items():
                full = os.path.join(self.staging, _v1_path(name))
                os.makedirs(os.path.dirname(full), exist_ok=True)
                _write_new(full, (data,))
            reached("bufcache.files-written")
            module_yaml = _module_yaml(deps, v1_files).encode()
            _write_new(os.path.join(self.staging, MODULE_YAML), (module_yaml,))
            reached("bufcache.before-rename")
            return self._rename_into_place()
        finally:
            self.discard()

    def _rename_into_place(self) -> bool:
        entry = self.entry
        # The common case, an entry nobody has begun: one atomic rename and no lock (a rename
        # never replaces a directory that has content). If buf or another fetch got there
        # first, decide under buf's lock.
        if not os.path.lexists(entry):
            try:
                os.rename(self.staging, entry)
                return True
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        with _entry_lock(self.cache_dir, self.module, self.commit_id, self.digest_type):
            if (entry / MODULE_YAML).exists():
                return False
            if entry.is_symlink():  # never follow it: remove the link itself
                entry.unlink()
            elif entry.exists():  # a half-written entry without module.yaml: replace it
                import shutil  # here: shutil loads bz2 and lzma, which a fetch never needs

                shutil.rmtree(entry)
            os.rename(self.staging, entry)
            return True

    def discard(self) -> None:
        """Remove the staging directory, if it is still there (safe to call again)."""
        if os.path.lexists(self.staging):
            import shutil

            shutil.rmtree(self.staging, ignore_errors=True)


def write_module(
    cache_dir: Path,
    module: ModuleName,
    commit: str,
    files: dict[str, bytes],
    deps: Iterable[tuple[ModuleName, str, Digest]],
    *,
    digest_type: str = B5,
    v1_files: dict[str, bytes] | None = None,
) -> bool:
    """Write one entry (b5, or with ``digest_type`` "shake256" a b4 entry, with the v1 module's
    own buf.yaml/buf.lock); False if a valid entry (with module.yaml) was already there."""
    v1_files = v1_files or {}
    if entry_complete(cache_dir, module, commit, digest_type):
        return False
    validate_file_set(files, f"{module}:{commit}")
    if not set(v1_files) <= set(V1_CONFIG_FILES):
        raise BSRTeamCacheError(f"{module}:{commit}: unexpected v1 files {sorted(v1_files)}")
    writer = EntryWriter(cache_dir, module, commit, digest_type)
    try:
        writer.add_all(files)
    except BaseException:
        writer.discard()
        raise
    return writer.commit(deps, v1_files)


# Directories known to exist (entries' parents): each is created once per process.
_made_dirs: set[str] = set()


def _make_dirs(path: Path) -> None:
    key = str(path)
    if key not in _made_dirs:
        path.mkdir(parents=True, exist_ok=True)
        _made_dirs.add(key)


@contextlib.contextmanager
def _entry_lock(
    cache_dir: Path, module: ModuleName, commit: str, digest_type: str
) -> Iterator[None]:
    """buf's own lock of an entry (``v3/modulelocks/...``), held exclusively."""
    lock_path = inside(
        cache_dir,
        cache_dir
        / "v3"
        / "modulelocks"
        / _digest_dir(digest_type)
        / module.registry
        / module.owner
        / module.name
        / f"{commit}.lock",
    )
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
