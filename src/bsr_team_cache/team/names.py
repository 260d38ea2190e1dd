"""Names that become parts of OCI repository names (a team's, a bundle's). Its own module: every
fetch checks the team name, and the team configuration's module costs a warm fetch ~8 ms."""

from __future__ import annotations

import re

from bsr_team_cache.errors import UsageError

_REPO_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def validate_repository_name(what: str, value: str, max_length: int) -> str:
    """A name that becomes part of OCI repository names (a team's, a bundle's)."""
    if not _REPO_NAME_RE.match(value or "") or len(value) > max_length:
        raise UsageError(
            f"invalid {what} name {value!r}: use lowercase letters, digits and single '.', '_'"
            f" or '-' between them (it becomes part of OCI repository names), at most"
            f" {max_length} characters"
        )
    return value


def validate_team_name(team: str) -> str:
    return validate_repository_name("team", team, 64)
