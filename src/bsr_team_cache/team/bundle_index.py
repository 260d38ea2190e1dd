"""The team's bundle index: which bundles exist and what each holds, so that a fetch picks the
bundle covering its deps without listing repositories.

It lives apart from the team configuration, at ``teams/<team>/bundle-index:latest``, because
they have different writers: maintainers create bundles, only admins change the configuration
(members, roles, keys, shares), and a registry grants push per repository. A JSON document
(oci/documents.py), artifactType application/vnd.bsr-team-cache.bundle-index.v1:

  {"bundles": [{"name", "version", "description", "modules": ["<module>:<commit>", ...]}]}

Entries are hints: the bundle a fetch picks is read, verified and matched against buf.lock
like any team artifact, so a forged entry costs at most a wasted request.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from bsr_team_cache.errors import BSRTeamCacheError, InvalidContentError
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.documents import read_document, update_document
from bsr_team_cache.oci.url import in_namespace
from bsr_team_cache.team.config import (
    BundleRecord,
    TeamConfig,
    bundle_record,
    make_config,
    validate_team_name,
)

BUNDLE_INDEX_TYPE = "application/vnd.bsr-team-cache.bundle-index.v1"
BUNDLE_INDEX_TAG = "latest"
MAX_BUNDLES = 10_000


def bundle_index_repository(team: str, namespace: str = "") -> str:
    return in_namespace(namespace, f"teams/{validate_team_name(team)}/bundle-index")


def _records(document: Any, where: str) -> tuple[BundleRecord, ...]:
    bundles = document.get("bundles") if isinstance(document, dict) else None
    if not isinstance(bundles, list) or len(bundles) > MAX_BUNDLES:
        raise InvalidContentError(f"{where}: malformed bundle index (no list of bundles)")
    try:
        return tuple(bundle_record(b) for b in bundles)
    except (KeyError, TypeError, ValueError, BSRTeamCacheError) as exc:
        raise InvalidContentError(f"{where}: malformed bundle index ({exc})") from None


def read_bundle_index(
    registry: RegistryBackend, team: str, namespace: str = ""
) -> tuple[BundleRecord, ...] | None:
    """The team's bundle records, or None when the team has no index yet."""
    repo = bundle_index_repository(team, namespace)
    found = read_document(registry, repo, BUNDLE_INDEX_TAG, BUNDLE_INDEX_TYPE)
    if found is None:
        return None
    return _records(found[0], f"{registry.describe()}/{repo}:{BUNDLE_INDEX_TAG}")


def record_bundle(
    registry: RegistryBackend, team: str, record: BundleRecord, namespace: str = ""
) -> None:
    """Add or replace ``record`` (by name); other members' records written meanwhile are kept."""
    repo = bundle_index_repository(team, namespace)
    where = f"{registry.describe()}/{repo}:{BUNDLE_INDEX_TAG}"

    def change(current: Any) -> Any:
        kept = () if current is None else _records(current, where)
        merged = sorted((*(r for r in kept if r.name != record.name), record), key=lambda r: r.name)
        new = {"bundles": [_record_json(r) for r in merged]}
        return current if current == new else new

    update_document(
        registry,
        repo,
        BUNDLE_INDEX_TAG,
        BUNDLE_INDEX_TYPE,
        change,
        {"org.opencontainers.image.title": f"bundles of team {team}"},
    )


def _record_json(record: BundleRecord) -> dict[str, Any]:
    data = asdict(record)
    data["modules"] = list(record.modules)
    return data


def with_bundle_index(
    registry: RegistryBackend,
    team: str,
    config: TeamConfig | None,
    namespace: str = "",
    warnings: list[str] | None = None,
) -> TeamConfig | None:
    """``config`` with the bundle index's records (a configuration from before the index keeps
    its own list). A malformed index is a warning and leaves ``config`` as it is."""
    try:
        records = read_bundle_index(registry, team, namespace)
    except InvalidContentError as exc:
        if warnings is not None:
            warnings.append(f"bundle index ignored ({exc})")
        return config
    if records is None:
        return config
    return replace(config or make_config(team), bundles=records)
