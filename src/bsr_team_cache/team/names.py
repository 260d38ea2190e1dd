"""Names that become parts of OCI repository names (a team's, a bundle's), and where a lock's
pack lives. Its own module: every fetch checks the team name (the team configuration's module
costs a warm fetch ~8 ms), and a cold fetch asks for its pack before the pack codec loads."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bsr_team_cache.errors import UsageError
from bsr_team_cache.oci.url import in_namespace

if TYPE_CHECKING:
    from bsr_team_cache.domain.buflock import LockedDep

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


def pack_repository(team: str, namespace: str = "") -> str:
    return in_namespace(namespace, f"teams/{team}/packs")


def pack_tag(deps: Sequence[LockedDep]) -> str:
    """``lock-<hex>``: the SHA-256 of the lock's pins (module, commit, digest), in any order."""
    pins = sorted(f"{d.module}:{d.commit}@{d.digest}" for d in deps)
    return "lock-" + hashlib.sha256("\n".join(pins).encode()).hexdigest()
