"""CNCF Distribution's notifications (``application/vnd.docker.distribution.events.v1+json``)
as audit records: every push and pull the registry served, whoever the client was.

An envelope is ``{"events": [event, …]}``; an event has ``action`` (push, pull, mount,
delete), ``target`` {mediaType, digest, size, repository, url, tag}, ``request`` {addr,
method, useragent} and ``actor`` {name} (the token's subject). Pushes and pulls become
``registry-push`` / ``registry-pull`` records: member = the actor (``anonymous`` when none),
team = the repository's team, refs = ``repository@digest`` and ``repository:tag`` when a tag
was given. Other actions and malformed events are skipped and counted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from bsr_team_cache.auth.policy import MAX_NAME, REPOSITORY_NAME_RE
from bsr_team_cache.errors import BSRTeamCacheError
from bsr_team_cache.team.config import validate_member

MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
MAX_BODY = 4 << 20
MAX_EVENTS = 10_000
OPERATION_OF = {"push": "registry-push", "pull": "registry-pull"}
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,256}")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class EnvelopeError(BSRTeamCacheError):
    """The body is not a notification envelope (the answer is 400)."""


@dataclass(frozen=True)
class RegistryEvent:
    operation: str  # "registry-push" or "registry-pull"
    member: str
    repository: str
    refs: tuple[str, ...]


@dataclass
class ParsedEnvelope:
    events: list[RegistryEvent] = field(default_factory=list)
    skipped: int = 0  # other actions, malformed events
    own: int = 0  # the auth server's own requests (reading team configurations)


def parse_envelope(body: bytes, *, own_actor: str = "") -> ParsedEnvelope:
    """The envelope's push and pull events; those of ``own_actor`` (the auth server's own
    token subject) are counted, not listed: its configuration reads are not user activity."""
    if len(body) > MAX_BODY:
        raise EnvelopeError(f"envelope larger than {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise EnvelopeError("envelope is not JSON") from None
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise EnvelopeError(f'expected {{"events": [...]}} with at most {MAX_EVENTS} events')
    parsed = ParsedEnvelope()
    for raw in events:
        if own_actor and _actor_name(raw) == own_actor:
            parsed.own += 1
            continue
        event = parse_event(raw)
        if event is None:
            parsed.skipped += 1
        else:
            parsed.events.append(event)
    return parsed


def parse_event(raw: object) -> RegistryEvent | None:
    """One push or pull event, validated; None for anything else."""
    if not isinstance(raw, dict) or raw.get("action") not in OPERATION_OF:
        return None
    target = raw.get("target")
    if not isinstance(target, dict):
        return None
    repository, digest, tag = target.get("repository"), target.get("digest"), target.get("tag")
    if not isinstance(repository, str) or len(repository) > MAX_NAME:
        return None
    if not REPOSITORY_NAME_RE.fullmatch(repository):
        return None
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        return None
    refs = [f"{repository}@{digest}"]
    if tag not in (None, ""):
        if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
            return None
        refs.append(f"{repository}:{tag}")
    operation = OPERATION_OF[raw["action"]]
    return RegistryEvent(operation, audit_member(_actor_name(raw)), repository, tuple(refs))


def _actor_name(raw: object) -> object:
    actor = raw.get("actor") if isinstance(raw, dict) else None
    return actor.get("name") if isinstance(actor, dict) else None


def audit_member(name: object) -> str:
    """A client's name as audit records show it: as given if it could be a member name (so
    its records are found under the member), "anonymous" if none, else "unknown"."""
    if not isinstance(name, str) or not name:
        return "anonymous"
    try:
        return validate_member(name)
    except BSRTeamCacheError:
        return "unknown"
