"""Pruning lock packs: one is written per lock revision that two machines fetch, and each holds
copies of its modules' layers, so a team whose locks change often accumulates them. A pack
made before a cut-off is deleted; a lock still in use after that gets a new pack from the next
machine that fetches it from the team registry (team/fetch.py), one slower fetch later.

Everything in the packs repository is read as untrusted: a tag that is not a pack's name, a
manifest that is not a sound pack manifest, or a config without a creation time is reported
and left alone (an admin can remove it by hand); only packs are deleted, by the digest that
was read (a tag moved meanwhile keeps its new manifest)."""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass, field

from bsr_team_cache.errors import (
    AccessDeniedError,
    BSRTeamCacheError,
    InvalidContentError,
    RegistryError,
)
from bsr_team_cache.oci.base import (
    RegistryBackend,
    descriptor_bytes,
    document_limit,
    parse_descriptor,
    parse_json,
    read_typed_manifest,
)
from bsr_team_cache.team.packs import PACK_CONFIG_TYPE, PACK_TYPE, pack_repository

_PACK_TAG = re.compile(r"lock-[0-9a-f]{64}")
_CREATED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


@dataclass
class PrunedPacks:
    """What a prune found: packs deleted (or, in a dry run, that would be), packs kept, and
    what it left alone with the reason."""

    repository: str
    deleted: list[str] = field(default_factory=list)  # "lock-…@sha256:…"
    kept: int = 0
    freed_bytes: int | None = None  # reclaimed here (the embedded registry); None: not known
    warnings: list[str] = field(default_factory=list)


def pack_created(registry: RegistryBackend, repo: str, tag: str) -> tuple[float, str] | None:
    """(creation time, manifest digest) of the pack at ``tag``, or None if it is gone.
    InvalidContentError if it is not a sound pack manifest with a creation time."""
    found = read_typed_manifest(registry, repo, tag, PACK_TYPE)
    if found is None:
        return None
    manifest, where, digest = found
    descriptor = parse_descriptor(
        manifest.get("config"), f"{where} config", media_types=(PACK_CONFIG_TYPE,),
        max_size=document_limit(),
    )  # fmt: skip
    config = parse_json(descriptor_bytes(registry, repo, descriptor, where), where, "config")
    created = config.get("created") if isinstance(config, dict) else None
    if not isinstance(created, str) or not _CREATED.fullmatch(created):
        raise InvalidContentError(f"{where}: no creation time (YYYY-MM-DDTHH:MM:SSZ) in its config")
    try:
        when = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        raise InvalidContentError(f"{where}: its creation time {created} is not a time") from None
    return float(when), digest


def prune_packs(
    registry: RegistryBackend,
    team: str,
    made_before: float,
    *,
    namespace: str = "",
    dry_run: bool = False,
) -> PrunedPacks:
    """Delete the team's lock packs made before ``made_before`` (a Unix time). A registry that
    refuses to delete stops the prune with a RegistryError (what was deleted so far is in the
    error's message)."""
    repo = pack_repository(team, namespace)
    report = PrunedPacks(repo)
    now = time.time()
    for tag in sorted(registry.list_tags(repo)):
        if not _PACK_TAG.fullmatch(tag):
            report.warnings.append(f"{repo}:{_shown(tag)}: not a lock pack's tag, left alone")
            continue
        try:
            found = pack_created(registry, repo, tag)
        except InvalidContentError as exc:
            report.warnings.append(f"{exc}; left alone")
            continue
        if found is None:  # deleted meanwhile (another prune)
            continue
        created, digest = found
        if created > now + _CLOCK_SKEW:
            report.warnings.append(f"{repo}:{tag}: made in the future, left alone")
            report.kept += 1
            continue
        if created >= made_before:
            report.kept += 1
            continue
        if not dry_run:
            try:
                registry.delete_manifest(repo, digest)
            except RegistryError as exc:
                done = f" (deleted before it: {len(report.deleted)})" if report.deleted else ""
                kind = AccessDeniedError if isinstance(exc, AccessDeniedError) else RegistryError
                raise kind(f"{exc}{done}{_DELETE_HINT}") from None
        report.deleted.append(f"{tag}@{digest}")
    collect = getattr(registry, "collect_garbage", None)
    if report.deleted and not dry_run and collect is not None:
        # The embedded registry reclaims the space itself; a registry server does it in its
        # own garbage collection (Distribution: registry garbage-collect, docs/deploy.md).
        try:
            report.freed_bytes = collect(repo)
        except BSRTeamCacheError as exc:
            report.warnings.append(f"the deleted packs' space was not reclaimed: {exc}")
    return report


# Machines' clocks differ: a pack made by one a little ahead of this one is not "future".
_CLOCK_SKEW = 24 * 3600
_DELETE_HINT = (
    ". Deleting needs the team's admin role and a registry that allows deletes"
    " (Distribution: storage.delete.enabled, docs/deploy.md)"
)


def _shown(tag: str) -> str:
    """A tag from the registry, printable and short (it is not a pack's: anything may be in it)."""
    text = tag.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 80 else text[:77] + "..."
