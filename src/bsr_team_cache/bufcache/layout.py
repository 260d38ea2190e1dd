"""Where buf keeps its module cache, and which layout the installed buf reads: what a fetch
needs before it knows whether anything is to be written (light: no domain types, no YAML, so
that a fetch finding every entry in place loads little; v3.py writes the entries)."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
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
    (every fetch looks for buf: this spares it shutil's imports, ~2 ms)."""
    for directory in os.get_exec_path():
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


def start_layout_check(buf: str | None = None, memo: Path | None = None) -> Callable[[], str]:
    """``check_buf_layout``, begun now: when ``memo`` does not know this buf, ``buf --version``
    starts running in the background (30-60 ms on a new machine, which the fetch's loading and
    first request then overlap). Calling the result waits for it and returns, or raises, what
    ``check_buf_layout`` does."""
    lookup = _version_lookup(buf, memo)
    return lambda: _layout(lookup())


def check_buf_layout(buf: str | None = None, memo: Path | None = None) -> str:
    """The cache layout the installed buf reads; refuse clearly if we do not write it."""
    return start_layout_check(buf, memo)()


_VERSION_SECONDS = 30


def _version_lookup(
    buf: str | None, memo: Path | None
) -> Callable[[], tuple[str, tuple[int, int, int] | None] | None]:
    """What ``installed_buf_version`` returns, as a call: answered at once if there is no buf
    or ``memo`` knows it, else when the ``buf --version`` started here has answered."""
    buf = buf or os.environ.get("BUF_BIN") or _on_path("buf")
    if not buf:
        return lambda: None
    try:
        st = os.stat(buf)
    except OSError:
        return lambda: None
    key = f"{os.path.realpath(buf)}:{st.st_size}:{st.st_mtime_ns}"
    if memo is not None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            cached = json.loads(memo.read_text())
            if cached.get("key") == key:
                known = (buf, tuple(cached["version"]) if cached["version"] else None)
                return lambda: known  # type: ignore[return-value]
    import subprocess  # only when the version is not remembered

    try:
        child = subprocess.Popen(
            [buf, "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError:
        return lambda: None
    answer: list[tuple[str, tuple[int, int, int] | None]] = []

    def wait() -> tuple[str, tuple[int, int, int] | None]:
        if not answer:
            try:
                out, err = child.communicate(timeout=_VERSION_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
                raise BSRTeamCacheError(
                    f"cannot tell the version of {buf} (buf --version did not finish within"
                    f" {_VERSION_SECONDS} s); pass --no-buf-cache, or set BUF_BIN to a working buf"
                ) from None
            version = parse_buf_version(out + err)
            if memo is not None:
                _remember(memo, key, version)
            answer.append((buf, version))
        return answer[0]

    return wait


def _remember(memo: Path, key: str, version: tuple[int, int, int] | None) -> None:
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
