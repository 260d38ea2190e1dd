"""Where buf keeps its module cache, and which layout the installed buf reads: what a fetch
needs before it knows whether anything is to be written (light: no domain types, no YAML, so
that a fetch finding every entry in place loads little; v3.py writes the entries)."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from bsr_team_cache.errors import BSRTeamCacheError

# The digest types buf keeps entries under: b5, and shake256 (b4) for v1 buf.lock projects
# (domain.digest's B5 and SHAKE256).
ENTRY_KINDS = ("b5", "shake256")
# buf's test of an entry: this file is there (written last).
MODULE_YAML = "module.yaml"

KNOWN_LAYOUTS = ("v3",)
# buf wrote v1 (<1.17), v2 (1.17-1.31) and v3 (>=1.32) caches; only v3 holds b5 module entries.
FIRST_V3_VERSION = (1, 32, 0)


def parse_buf_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _on_path(name: str) -> str | None:
    """The first executable ``name`` in $PATH's directories, as ``shutil.which`` finds it
    (every fetch looks for buf: this spares it shutil's imports, ~2 ms); named so that running
    it runs that file (``./buf`` for an empty entry, where which says ``buf``)."""
    path = os.environ.get("PATH")
    if path is None:
        path = os.defpath
    if not path:
        return None  # PATH set and empty: nothing, as which (never the current directory)
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or os.curdir, name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def installed_buf_version(
    buf: str | None = None, memo: Path | None = None
) -> tuple[str, tuple[int, int, int] | None] | None:
    """(path, version) of the buf on PATH (or $BUF_BIN), or None when there is none.
    ``memo`` remembers the answer per binary (path, size, mtime): no process per fetch."""
    return _version_lookup(buf, memo)()


def start_layout_check(buf: str | None = None, memo: Path | None = None) -> LayoutCheck:
    """``check_buf_layout``, begun now: when ``memo`` does not know this buf, ``buf --version``
    starts running in the background (30-60 ms on a new machine, which the fetch's loading and
    first request then overlap). Calling the result waits for it and returns, or raises, what
    ``check_buf_layout`` does; ``discard`` stops a check whose answer is no longer wanted."""
    return LayoutCheck(_version_lookup(buf, memo))


def check_buf_layout(buf: str | None = None, memo: Path | None = None) -> str:
    """The cache layout the installed buf reads; refuse clearly if we do not write it."""
    return start_layout_check(buf, memo)()


class LayoutCheck:
    def __init__(self, lookup: _Lookup) -> None:
        self._lookup = lookup

    def __call__(self) -> str:
        return _layout(self._lookup())

    def discard(self) -> None:
        self._lookup.discard()


_VERSION_SECONDS = 30
_VERSION_MAX_BYTES = 64 * 1024  # `buf --version` prints one short line
_MEMO_MAX_BYTES = 4096

_Found = tuple[str, tuple[int, int, int] | None]


class _Lookup:
    """What ``installed_buf_version`` returns, as a call: answered at once, or when the
    ``buf --version`` started here has answered (then remembered in the memo)."""

    def __init__(self, found: _Found | None = None) -> None:
        self._found = found

    def __call__(self) -> _Found | None:
        return self._found

    def discard(self) -> None:
        """Nothing runs for an answer known at once."""


class _Asking(_Lookup):
    """``buf --version`` running in its own session (so that a wrapper's children are stopped
    with it), its output read up to _VERSION_MAX_BYTES within _VERSION_SECONDS. The answer, or
    the error, is kept: a second call says the same."""

    def __init__(self, buf: str, child: _Child, memo: Path | None, key: str) -> None:
        super().__init__()
        self._buf, self._child, self._memo, self._key = buf, child, memo, key
        self._failure: BSRTeamCacheError | None = None
        self._done = False

    def __call__(self) -> _Found | None:
        if not self._done:
            self._done = True
            try:
                output, status = self._read()
            except BSRTeamCacheError as exc:
                self._failure = exc
            except BaseException:  # interrupted: leave no process or descriptor behind
                self.discard()
                raise
            else:
                version = parse_buf_version(output.decode("utf-8", "replace"))
                if status == 0 and version is not None and self._memo is not None:
                    _remember(self._memo, self._key, version)
                self._found = (self._buf, version)
        if self._failure is not None:
            raise self._failure
        return self._found

    def _read(self) -> tuple[bytes, int]:
        import select
        import time

        child, chunks, size = self._child, [], 0
        until = time.monotonic() + _VERSION_SECONDS
        poll = select.poll()
        poll.register(child.output, select.POLLIN)
        while size <= _VERSION_MAX_BYTES:
            left = until - time.monotonic()
            if left <= 0 or not poll.poll(left * 1000):
                self.discard()
                raise BSRTeamCacheError(
                    f"cannot tell the version of {self._buf} (buf --version did not finish"
                    f" within {_VERSION_SECONDS} s); pass --no-buf-cache, or set BUF_BIN to"
                    " a working buf"
                )
            chunk = os.read(child.output, 8192)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > _VERSION_MAX_BYTES:
            self.discard()  # one line expected: the first bytes hold the version if any
            return b"".join(chunks)[:_VERSION_MAX_BYTES], -1
        child.close_output()
        # Its output closed: buf is exiting (or a child of a wrapper kept nothing open).
        while (status := child.poll()) is None:
            if time.monotonic() >= until:
                self.discard()
                return b"".join(chunks), -1
            time.sleep(0.002)
        return b"".join(chunks), status

    def discard(self) -> None:
        """Stop the process (and whatever it started) if it still runs, and reap it."""
        self._child.stop()


class _Child:
    """``argv`` started (_proc.spawn): stdin from /dev/null, stdout and stderr to one pipe
    (``output``)."""

    def __init__(self, argv: list[str]) -> None:
        from bsr_team_cache._proc import spawn

        self.status: int | None = None
        self.output, write_end = os.pipe()  # both ends close on exec
        try:
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self.pid = spawn(argv, stdin=null, stdout=write_end, stderr=write_end,
                                 env=dict(os.environ))  # fmt: skip
            finally:
                os.close(null)
        except BaseException:
            os.close(self.output)
            raise
        finally:
            os.close(write_end)

    def poll(self) -> int | None:
        """Its exit code once it has ended (and is reaped), else None."""
        if self.status is None:
            from bsr_team_cache._proc import reap

            self.status = reap(self.pid, wait=False)
        return self.status

    def close_output(self) -> None:
        if self.output >= 0:
            os.close(self.output)
            self.output = -1

    def stop(self) -> None:
        """Kill its session if it is not reaped yet, and reap it."""
        if self.poll() is None:
            from bsr_team_cache._proc import kill_and_reap

            self.status = kill_and_reap(self.pid)
        self.close_output()


def _version_lookup(buf: str | None, memo: Path | None) -> _Lookup:
    buf = buf or os.environ.get("BUF_BIN") or "buf"
    if os.sep not in buf:  # a bare name (BUF_BIN=buf): looked up on PATH, never in "."
        buf = _on_path(buf)
    if not buf:
        return _Lookup()
    try:
        st = os.stat(buf)
    except OSError:
        return _Lookup()
    key = f"{os.path.realpath(buf)}:{st.st_size}:{st.st_mtime_ns}"
    if memo is not None:
        known = _recall(memo, key)
        if known is not None:
            return _Lookup((buf, known))
    try:
        child = _Child([buf, "--version"])
    except OSError:
        return _Lookup()
    return _Asking(buf, child, memo, key)


def _recall(memo: Path, key: str) -> tuple[int, int, int] | None:
    """The version the memo holds for ``key``; None if it holds none that is sound (a memo is
    only ever a hint: anything odd in it and buf is asked again)."""
    from bsr_team_cache._fs import read_regular_file

    try:
        cached = json.loads(read_regular_file(memo, _MEMO_MAX_BYTES))
    except (OSError, ValueError, RecursionError, BSRTeamCacheError):
        return None
    if not isinstance(cached, dict) or cached.get("key") != key:
        return None
    version = cached.get("version")
    if (
        isinstance(version, list)
        and len(version) == 3
        and all(type(part) is int and 0 <= part < 1_000_000 for part in version)
    ):
        return (version[0], version[1], version[2])
    return None


def _remember(memo: Path, key: str, version: tuple[int, int, int]) -> None:
    with contextlib.suppress(OSError):
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "version": version}))
        os.replace(tmp, memo)


def _layout(found: tuple[str, tuple[int, int, int] | None] | None) -> str:
    if found is None:
        return "v3"  # no buf here (e.g. a protoc-only job): write the current layout
    path, version = found
    if version is None:
        raise BSRTeamCacheError(
            f"cannot tell the version of {path} (buf --version printed no version); pass"
            " --no-buf-cache, or set BUF_BIN to a working buf"
        )
    if version < FIRST_V3_VERSION:
        shown = ".".join(map(str, version))
        raise BSRTeamCacheError(
            f"{path} is buf {shown}, whose module cache layout predates v3 (buf >= 1.32);"
            " this version of bsr-team-cache writes only the v3 layout. Upgrade buf, or pass"
            " --no-buf-cache and use --export"
        )
    return "v3"


def buf_cache_dir(env: dict[str, str] | None = None) -> Path:
    """``$BUF_CACHE_DIR``, else ``$XDG_CACHE_HOME/buf``, else ``~/.cache/buf`` (as buf does)."""
    env = dict(os.environ) if env is None else env
    if env.get("BUF_CACHE_DIR"):
        return Path(env["BUF_CACHE_DIR"])
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "buf"
    return Path(env.get("HOME", str(Path.home()))) / ".cache" / "buf"


def entry_dir_of(
    cache_dir: Path, kind: str, registry: str, owner: str, name: str, commit: str
) -> Path:
    """``v3/modules/<kind>/<registry>/<owner>/<name>/<commit>`` under ``cache_dir``; the parts
    are the caller's to have validated (v3.module_entry_dir does)."""
    return cache_dir / "v3" / "modules" / kind / registry / owner / name / commit
