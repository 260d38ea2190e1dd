"""A module's file set: which paths a module may hold, by buf's and the BSR's rules.

Every path that arrives from the team registry or the BSR is checked here before anything is
stored, published or written: it must be what the BSR accepts for a file (relative, normalized,
``/``-separated, no ``.``/``..`` components, no backslash, no control characters, no ``%``, at
most 4096 characters; buf.registry.module.v1.File) and part of a module's digest file set
(``.proto`` files anywhere, ``LICENSE`` and one doc file at the root; buf's getStorageMatcher).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bsr_team_cache.domain.digest import DOC_FILE_NAMES, LICENSE_FILE_NAME
from bsr_team_cache.errors import InvalidContentError

MAX_PATH_LENGTH = 4096
MAX_COMPONENT_BYTES = 255  # a longer name cannot be created on common file systems
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\%]")


def path_problem(path: object) -> str | None:
    """Why ``path`` cannot be a module file, or None when it can."""
    if not isinstance(path, str) or not path:
        return "empty or not a string"
    if len(path) > MAX_PATH_LENGTH:
        return f"longer than {MAX_PATH_LENGTH} characters"
    bad = _FORBIDDEN.search(path)
    if bad is not None:
        return f"contains {bad.group()!r} (control characters, '\\\\' and '%' are not allowed)"
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            return "not a normalized relative path (empty, '.' or '..' component, or a leading '/')"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            return f"a component is longer than {MAX_COMPONENT_BYTES} bytes"
    if path.endswith(".proto"):
        return None
    if len(parts) == 1 and (path == LICENSE_FILE_NAME or path in DOC_FILE_NAMES):
        return None
    return "not a .proto file, LICENSE or a doc file at the module root"


def validate_file_set(paths: Iterable[str], where: str) -> None:
    """Every path is a valid module file, no path repeats, at most one doc file."""
    seen: set[str] = set()
    docs = []
    for path in paths:
        problem = path_problem(path)
        if problem is not None:
            raise InvalidContentError(f"{where}: unsafe file path {path!r}: {problem}")
        if path in seen:
            raise InvalidContentError(f"{where}: file {path!r} appears twice")
        seen.add(path)
        if path in DOC_FILE_NAMES:
            docs.append(path)
    if len(docs) > 1:
        raise InvalidContentError(f"{where}: more than one doc file ({', '.join(sorted(docs))})")
