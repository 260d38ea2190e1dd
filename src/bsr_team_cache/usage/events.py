"""Usage events: one per module a fetch, warm, bundle pull or sync asked for, with the tier that
served it. The schema (``docs/usage-events.md``), its JSON-lines form, and the one validator
that every way in (recording, ``usage import``, team chunks) goes through."""

from __future__ import annotations

import hashlib
import math
import os
import re
from datetime import UTC, datetime
from typing import NamedTuple

from bsr_team_cache.errors import BSRTeamCacheError

LOCAL, TEAM, BUNDLE, BSR = "local", "team", "bundle", "bsr"
TIERS = (LOCAL, TEAM, BUNDLE, BSR)  # codes 0..3 in the log and in chunks
FETCH, WARM, BUNDLE_PULL, SYNC = "fetch", "warm", "bundle", "sync"
OPERATIONS = (FETCH, WARM, BUNDLE_PULL, SYNC)

# CI systems' ids of one build (or workflow run): every job of a build shares it, so the
# modules a build needs group together even when several jobs fetch.
BUILD_ID_VARIABLES = (
    "GITHUB_RUN_ID",
    "CI_JOB_ID",
    "BUILDKITE_BUILD_ID",
    "CIRCLE_WORKFLOW_ID",
    "BUILD_TAG",  # Jenkins
)
REQUIRED = ("time", "member", "build", "module", "commit", "tier", "bytes", "seconds")
OPTIONAL = ("team", "host", "fetch", "project", "bundle", "fetch_seconds", "operation")
FIELDS = REQUIRED + OPTIONAL

MAX_TEXT = 256  # member, host, build, fetch, bundle, team
MAX_PROJECT = 1024
MAX_BYTES = 1 << 40
MAX_SECONDS = 7 * 24 * 3600.0  # longer than any command may run
# Times from 2000 to 2200: a clock or a writer outside that is wrong, not early or late.
MIN_TIME, MAX_TIME = 946_684_800.0, 7_258_118_400.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EventError(BSRTeamCacheError):
    """An event that does not follow the schema (``field`` names what is wrong)."""

    exit_code = 2

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class UsageEvent(NamedTuple):
    """One module a command asked for. (A named tuple: recording is on every fetch's path,
    and a dataclass of this size costs milliseconds to define at each start-up.)"""

    time: float  # seconds since the epoch, UTC
    member: str
    build: str
    module: str  # registry/owner/name
    commit: str
    tier: str
    bytes: int
    seconds: float  # this module's share of the fetch
    team: str = ""
    host: str = ""
    fetch: str = ""  # one id per command run
    project: str = ""
    bundle: str = ""  # "<name>:<version>" when a bundle served it
    fetch_seconds: float = 0.0  # the whole command's wall time (0: unknown)
    operation: str = FETCH

    @property
    def key(self) -> str:
        return f"{self.module}:{self.commit}"

    def event_id(self) -> int:
        """A signed 64-bit id of what makes the event itself (not how it was measured): the
        same event merged twice, from a chunk and from its compaction, counts once."""
        return event_id(
            self.time, self.member, self.host, self.build, self.fetch, self.module,
            self.commit, self.tier, self.operation,
        )  # fmt: skip

    def to_json(self) -> dict:
        out: dict = {"time": format_time(self.time)}
        for name in FIELDS[1:]:
            value = getattr(self, name)
            if name in REQUIRED or value:
                out[name] = round(value, 6) if isinstance(value, float) else value
        return out


def event_id(
    time: float,
    member: str,
    host: str,
    build: str,
    fetch: str,
    module: str,
    commit: str,
    tier: str,
    operation: str,
) -> int:
    text = "\0".join(
        (f"{round(time * 1e6)}", member, host, build, fetch, module, commit, tier, operation)
    )
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def format_time(seconds: float) -> str:
    """RFC 3339 in UTC with microseconds: ``2026-11-26T16:24:02.123456Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object, field: str = "time") -> float:
    """An RFC 3339 time with its zone (``Z`` or ``+hh:mm``) as seconds since the epoch."""
    if not isinstance(value, str) or len(value) < 19 or value[10:11] not in ("T", "t", " "):
        raise EventError(field, "expected an RFC 3339 time such as 2026-11-26T09:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise EventError(field, f"{value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise EventError(field, f"{value!r} has no zone: add Z (UTC) or an offset like +01:00")
    return check_time(parsed.timestamp(), field)


def check_time(seconds: float, field: str = "time") -> float:
    if not (MIN_TIME <= seconds <= MAX_TIME):
        raise EventError(field, "outside the years 2000 to 2200")
    return seconds


def check_text(value: object, field: str, *, limit: int = MAX_TEXT, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise EventError(field, "expected a string")
    if not value and not empty:
        raise EventError(field, "must not be empty")
    if len(value) > limit or _CONTROL.search(value):
        raise EventError(field, f"longer than {limit} characters or has control characters")
    return value


def check_module(value: object, field: str = "module") -> str:
    if not isinstance(value, str):
        raise EventError(field, "expected a module name registry/owner/name")
    # Imported by the readers of events: a fetch that only records them does not load it.
    from bsr_team_cache.domain.moduleref import parse_module_name

    try:
        parse_module_name(value)
    except BSRTeamCacheError as exc:
        raise EventError(field, str(exc)) from None
    return value


def check_commit(value: object, field: str = "commit") -> str:
    from bsr_team_cache.domain.moduleref import is_commit_id

    if not is_commit_id(value):
        raise EventError(field, "expected a commit id (32 lowercase hex digits)")
    return value  # type: ignore[return-value]


def check_choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise EventError(field, f"expected one of {', '.join(choices)}")
    return value  # type: ignore[return-value]


def check_bytes(value: object, field: str = "bytes") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_BYTES:
        raise EventError(field, f"expected an integer from 0 to {MAX_BYTES}")
    return value


def check_seconds(value: object, field: str = "seconds") -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_SECONDS
    ):
        raise EventError(field, f"expected a number of seconds from 0 to {MAX_SECONDS:g}")
    return float(value)


def parse_event(obj: object) -> UsageEvent:
    """An event from its JSON form (a line of ``usage export``); raises EventError naming the
    field. Required: time, member, build, module, commit, tier, bytes, seconds."""
    if not isinstance(obj, dict):
        raise EventError("event", "expected a JSON object")
    for name in REQUIRED:
        if name not in obj:
            raise EventError(name, "missing (required)")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise EventError(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    return UsageEvent(
        time=parse_time(obj["time"]),
        member=check_text(obj["member"], "member", empty=False),
        build=check_text(obj["build"], "build", empty=False),
        module=check_module(obj["module"]),
        commit=check_commit(obj["commit"]),
        tier=check_choice(obj["tier"], "tier", TIERS),
        bytes=check_bytes(obj["bytes"]),
        seconds=check_seconds(obj["seconds"]),
        team=check_text(obj.get("team", ""), "team"),
        host=check_text(obj.get("host", ""), "host"),
        fetch=check_text(obj.get("fetch", ""), "fetch"),
        project=check_text(obj.get("project", ""), "project", limit=MAX_PROJECT),
        bundle=check_text(obj.get("bundle", ""), "bundle"),
        fetch_seconds=check_seconds(obj.get("fetch_seconds", 0.0), "fetch_seconds"),
        operation=check_choice(obj.get("operation", FETCH), "operation", OPERATIONS),
    )


def build_id(env: dict[str, str] | None = None, *, fallback: str = "") -> str:
    """The CI build this process belongs to (``GITHUB_RUN_ID`` and the like, prefixed with the
    variable so two systems' numbers cannot meet), else ``fallback`` (one id per fetch)."""
    env = os.environ if env is None else env
    for name in BUILD_ID_VARIABLES:
        value = env.get(name, "").strip()
        if value and not _CONTROL.search(value):
            return f"{name}:{value}"[:MAX_TEXT]
    return fallback or new_id()


def new_id() -> str:
    return os.urandom(16).hex()  # a random id (uuid4's entropy, without importing uuid)


def host_name(env: dict[str, str] | None = None) -> str:
    """This machine, as events name it (``BSR_TEAM_CACHE_HOST`` overrides the host name, for
    runners whose host names are random)."""
    env = os.environ if env is None else env
    name = env.get("BSR_TEAM_CACHE_HOST", "").strip()
    if not name:
        name = os.uname().nodename
    return _CONTROL.sub("", name)[:MAX_TEXT] or "unknown"


def parse_since(text: str, now: float | None = None, option: str = "--since") -> float:
    """``--since`` (or another ``option`` taking a time): an RFC 3339 time, a date
    (``2026-11-01``, midnight UTC), or an age such as ``90m``, ``24h``, ``7d``, ``4w``."""
    import time as _time

    now = _time.time() if now is None else now
    text = text.strip()
    match = re.fullmatch(r"(\d{1,6})([mhdw])", text)
    if match:
        unit = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[match.group(2)]
        return now - int(match.group(1)) * unit
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T00:00:00Z"
    try:
        return parse_time(text, option)
    except EventError:
        raise EventError(
            option, f"{text!r}: expected an RFC 3339 time, a date, or an age like 7d or 24h"
        ) from None


# CI systems whose runners are fresh machines with new host names: their jobs share one tag in
# the team registry per member (else every job would leave a tag behind).
CI_SYSTEMS = (
    ("GITHUB_ACTIONS", "github"),
    ("GITLAB_CI", "gitlab"),
    ("BUILDKITE", "buildkite"),
    ("CIRCLECI", "circleci"),
    ("JENKINS_URL", "jenkins"),
)


def shipping_host(env: dict[str, str] | None = None) -> str:
    """The machine, as the team registry's usage tags name it: ``BSR_TEAM_CACHE_HOST``, else
    ``ci-<system>`` on a CI runner, else the host name. (Events keep the real host name.)"""
    env = os.environ if env is None else env
    if env.get("BSR_TEAM_CACHE_HOST", "").strip():
        return host_name(env)
    for variable, system in CI_SYSTEMS:
        if env.get(variable, "").strip():
            return f"ci-{system}"
    return host_name(env)
