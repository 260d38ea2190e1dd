"""``bsr-team-cache fetch`` without click: the hot command's start-up pays neither for click
(~50 ms) nor for its parser's error machinery.

``parse`` reads argv with the command's Param table (the one its click command is built from)
and accepts only what it reads exactly as click would; for anything else (-h/--help, an unknown
option, a bad value, a second argument, ``--``) it returns None, and the caller hands argv to
click, which answers with its usual message. So what a user sees does not change.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from bsr_team_cache import _startup
from bsr_team_cache.cli.options import FLAG, NON_NEGATIVE_FLOAT, PATH, POSITIVE_INT, TEXT, Param
from bsr_team_cache.errors import BSRTeamCacheError

# Set by a shell asking for completions, which click answers.
COMPLETION_VARIABLE = "_BSR_TEAM_CACHE_COMPLETE"


def _convert(kind: str, text: str) -> object | None:
    """``text`` converted as click's type for ``kind`` converts it; None where click refuses
    it (or might: a NaN is left to click)."""
    if kind == TEXT:
        return text
    if kind == PATH:
        return Path(text)
    try:
        number = int(text) if kind == POSITIVE_INT else float(text)
    except ValueError:
        return None
    if kind == POSITIVE_INT:
        return number if number >= 1 else None
    if kind == NON_NEGATIVE_FLOAT:
        return number if number >= 0 else None
    raise ValueError(f"unknown kind of value {kind!r}")


def _default(param: Param) -> object:
    # click converts a default through the parameter's type, as it does a given value.
    return _convert(param.kind, param.default) if isinstance(param.default, str) else param.default


def parse(params: Sequence[Param], argv: Sequence[str]) -> dict[str, object] | None:
    """The command function's keyword arguments for ``argv``, as click would pass them; None
    for any argv that this parser does not read exactly as click would."""
    by_flag = {flag: param for param in params for flag in param.flags}
    given: dict[str, object] = {}
    arguments: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token in ("-", "--"):
            return None
        if not token.startswith("-"):
            arguments.append(token)
            continue
        # click splits "--name=value" of long options only ("-q=x" is an error there).
        name, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
        param = by_flag.get(name)
        if param is None:
            return None
        if param.kind == FLAG:
            if equals:
                return None
            given[param.name] = True
            continue
        if not equals:
            value = next(tokens, None)  # whatever it looks like, as click takes it
            if value is None:
                return None
        converted = _convert(param.kind, value)
        if converted is None:
            return None
        given[param.name] = converted  # an option given twice: the last one counts, as in click
    positionals = [param for param in params if not param.flags]
    if len(arguments) > len(positionals):
        return None
    for param, text in zip(positionals, arguments, strict=False):
        converted = _convert(param.kind, text)
        if converted is None:
            return None
        given[param.name] = converted
    return {p.name: given[p.name] if p.name in given else _default(p) for p in params}


def error_exit_code(exc: BSRTeamCacheError | OSError) -> int:
    """Print ``exc`` as one line on stderr (no traceback); the exit code it stands for."""
    if isinstance(exc, BSRTeamCacheError):
        message, code = str(exc), exc.exit_code
    else:  # a file or directory we were given cannot be used
        where = f"{exc.filename}: " if exc.filename else ""
        message, code = f"{where}{exc.strerror or exc}", 1
    sys.stderr.write(f"bsr-team-cache: error: {message}\n")
    sys.stderr.flush()
    return code


def _silence_broken_pipe() -> None:
    # The reader of stdout went away: what is still buffered, and the flush at exit, go to
    # /dev/null instead of raising again (click does the same).
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):  # ValueError: no real descriptor (captured)
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run_command(command: Callable[[], object]) -> int:
    """Run ``command`` with the CLI's error handling (cli.main's, without click): the exit
    code."""
    try:
        command()
    except BSRTeamCacheError as exc:
        return error_exit_code(exc)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            _silence_broken_pipe()
            return 1
        return error_exit_code(exc)
    except (KeyboardInterrupt, EOFError):
        # The blank line closes the terminal's ^C echo.
        sys.stderr.write("\nbsr-team-cache: aborted\n")
        sys.stderr.flush()
        return 130
    return 0


def run_fetch(argv: Sequence[str], *, whole_process: bool = False) -> int | None:
    """``bsr-team-cache fetch ARGV``: the exit code, or None if click must answer argv.

    ``whole_process``: this process runs this one command and exits (the console script), so
    the objects its imports make live until exit (``_startup.loading``), and it exits here,
    with the command's code (``exit_now``)."""
    if os.environ.get(COMPLETION_VARIABLE):
        return None
    from bsr_team_cache.cli import fetch

    values = parse(fetch.PARAMS, argv)
    if values is None:
        return None
    if whole_process:
        _startup.SHORT_LIVED = True  # what it loads from now on is kept until exit
    code = run_command(lambda: fetch.fetch_command(**values))
    if whole_process:
        exit_now(code)
    return code


def exit_now(code: int) -> NoReturn:
    """End the process without Python's teardown of the ~300 modules a fetch loads (20-40 ms of
    it). Nothing needs it: every file the fetch wrote is closed, the store's index committed and
    closed, its thread pools shut down; the standard streams are flushed here."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone: as at a normal exit
            stream.flush()
    os._exit(code)
