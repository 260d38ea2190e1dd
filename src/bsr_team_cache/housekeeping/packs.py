"""Pruning lock packs: one is written per lock revision that two machines fetch, and each holds
copies of its modules' layers, so a team whose locks change often accumulates them. A pack
made before a cut-off is deleted; a lock still in use after that gets a new pack from the next
machine that fetches it from the team registry (team/fetch.py), one slower fetch later.

Everything in the packs repository is read as untrusted: a tag that is not a pack's name, a
manifest that is not a sound pack manifest, or a config without a creation time is reported
and left alone (an admin can remove it by hand); only packs are deleted, by the digest that
was read (a tag moved meanwhile keeps its new manifest)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from bsr_team_cache.errors import (
    BSRTeamCacheError,
    InvalidContentError,
    RegistryError,
    remote_text,
)
from bsr_team_cache.oci.base import (
    RegistryBackend,
    parse_manifest,
    sha256_digest,
)
from bsr_team_cache.team.names import pack_repository
from bsr_team_cache.team.packs import PACK_TYPE, read_pack_config
from bsr_team_cache.usage.events import EventError, parse_time

_PACK_TAG = re.compile(r"lock-[0-9a-f]{64}")
# Machines' clocks differ: a pack made by one a little ahead of this one is not "future".
_CLOCK_SKEW = 24 * 3600
_DELETE_HINT = (
    ". Deleting needs the team's admin role and a registry that allows deletes"
    " (Distribution: storage.delete.enabled, docs/deploy.md)"
)


@dataclass
class PrunedPacks:
    """What a prune found: packs deleted (or, in a dry run, that would be), packs kept, what it
    left alone with the reason, and the registry's refusal that stopped it, if one did."""

    repository: str
    deleted: list[str] = field(default_factory=list)  # "lock-…@sha256:…"
    kept: int = 0
    freed_bytes: int | None = None  # reclaimed here (the embedded registry); None: not known
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def pack_time(data: bytes, registry: RegistryBackend, repo: str, where: str) -> float:
    """When the pack whose manifest is ``data`` was made (its config's ``created``), as a Unix
    time; InvalidContentError if it is not a sound pack manifest with a creation time."""
    manifest = parse_manifest(data, where, PACK_TYPE)
    config = read_pack_config(registry, repo, manifest, where)
    created = config.get("created") if isinstance(config, dict) else None
    if not isinstance(created, str):
        raise InvalidContentError(f"{where}: no creation time (YYYY-MM-DDTHH:MM:SSZ) in its config")
    try:
        return parse_time(created, "created")
    except EventError:
        shown = remote_text(created, 80)
        raise InvalidContentError(f"{where}: its creation time {shown} is not a time") from None


def prune_packs(
    registry: RegistryBackend,
    team: str,
    made_before: float,
    *,
    namespace: str = "",
    dry_run: bool = False,
) -> PrunedPacks:
    """Delete the team's lock packs made before ``made_before`` (a Unix time). A registry that
    refuses a delete stops the prune: ``error`` says why, ``deleted`` what went before it.
    A pack whose manifest another tag also names (one left alone, or a pack kept) is kept:
    deleting a manifest removes every tag on it."""
    repo = pack_repository(team, namespace)
    report = PrunedPacks(repo)
    now = time.time()
    candidates: list[tuple[str, str]] = []  # (tag, manifest digest)
    named_by_others: set[str] = set()
    for tag in sorted(registry.list_tags(repo)):
        where = f"{repo}:{remote_text(tag, 80)}"
        is_pack = bool(_PACK_TAG.fullmatch(tag))
        if not is_pack:
            report.warnings.append(f"{where}: not a lock pack's tag, left alone")
        try:
            found = registry.read_manifest(repo, tag)
        except InvalidContentError as exc:
            if is_pack:
                report.warnings.append(f"{remote_text(exc)}; left alone")
            continue
        if found is None:  # deleted meanwhile (another prune)
            continue
        digest = sha256_digest(found[0])
        if not is_pack:  # what it names is not deleted with a pack
            named_by_others.add(digest)
            continue
        try:
            created = pack_time(found[0], registry, repo, f"{registry.describe()}/{where}")
        except InvalidContentError as exc:
            report.warnings.append(f"{remote_text(exc)}; left alone")
            named_by_others.add(digest)
            continue
        if created > now + _CLOCK_SKEW:
            report.warnings.append(f"{where}: made in the future, left alone")
        if created >= made_before:
            report.kept += 1
            named_by_others.add(digest)
            continue
        candidates.append((tag, digest))
    for tag, digest in candidates:
        if digest in named_by_others:
            report.warnings.append(f"{repo}:{tag}: its manifest has another tag, left alone")
            report.kept += 1
            continue
        if not dry_run:
            try:
                registry.delete_manifest(repo, digest)
            except RegistryError as exc:
                report.error = f"{exc}{_DELETE_HINT}"
                return report
        report.deleted.append(f"{tag}@{digest}")
    collect = getattr(registry, "collect_garbage", None)
    if report.deleted and not dry_run and collect is not None:
        # The embedded registry reclaims the space itself; a registry server does it in its
        # own garbage collection (Distribution: registry garbage-collect, docs/deploy.md).
        try:
            report.freed_bytes = collect(repo)
        except BSRTeamCacheError as exc:
            report.warnings.append(
                f"the deleted packs' blobs stay until every manifest of {repo} can be read"
                f" ({remote_text(exc)}): remove that manifest (skopeo delete"
                f" oci:<registry path>/{repo}@<digest>) and prune again"
            )
    return report
