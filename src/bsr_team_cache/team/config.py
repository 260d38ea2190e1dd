"""A team's configuration, kept in the team registry so that every member and CI job sees the
same: ``teams/<team>/config:latest`` (a JSON document artifact, see oci/documents.py).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bsr_team_cache.domain.moduleref import parse_module_name, validate_commit_id
from bsr_team_cache.errors import (
    BSRTeamCacheError,
    ConfigError,
    InvalidContentError,
    UsageError,
)
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.documents import read_document
from bsr_team_cache.oci.url import in_namespace
from bsr_team_cache.team.names import validate_repository_name, validate_team_name

TEAM_CONFIG_TYPE = "application/vnd.bsr-team-cache.team.v1"
CONFIG_TAG = "latest"


@dataclass(frozen=True)
class Strategy:
    max_cache_size_mb: int
    preload_top: int
    sync_frequency_minutes: int


# The seed's strategies: how much each member keeps, how many hot modules sync preloads.
STRATEGIES = {
    "aggressive": Strategy(2000, 20, 30),
    "balanced": Strategy(1000, 10, 60),
    "conservative": Strategy(500, 5, 120),
}
DEFAULT_STRATEGY = "balanced"

# Roles, weakest first: each can do what the ones before it can (docs/security.md, "Access").
#   reader: pull; member: + publish modules, usage events and audit records;
#   maintainer: + bundles, shares and label indexes; admin: + the configuration, members, roles.
ROLES = ("reader", "member", "maintainer", "admin")
DEFAULT_ROLE = "member"
# A member's public keys: ed25519 for signing team documents, RSA/EC (PEM) for encryption.
_SIGNING_KEY_RE = re.compile(r"^ed25519:[A-Za-z0-9+/]{43}=$")
_MAX_PUBLIC_KEY_PEM = 16 * 1024

# Members are user names or e-mail addresses, as directories and CI systems spell them.
_MEMBER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*(?:@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)?$")


def validate_member(member: str) -> str:
    if not isinstance(member, str) or not _MEMBER_RE.match(member) or len(member) > 128:
        raise UsageError(
            f"invalid member name {member!r}: expected a user name (letters, digits, '.', '_',"
            " '+', '-') or an e-mail address"
        )
    return member


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def role_at_least(role: str | None, needed: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def validate_signing_key(key: str) -> str:
    """``ed25519:<base64 of the 32-byte public key>``."""
    if not isinstance(key, str) or not _SIGNING_KEY_RE.match(key):
        raise UsageError(
            f"invalid signing key {str(key)[:80]!r}: expected 'ed25519:' and the base64 of a"
            " 32-byte Ed25519 public key"
        )
    return key


def validate_encryption_key(pem: str) -> str:
    """A PEM ``PUBLIC KEY`` (RSA or EC), checked for shape only: the encryption layer loads it."""
    if (
        not isinstance(pem, str)
        or len(pem) > _MAX_PUBLIC_KEY_PEM
        or not pem.strip().startswith("-----BEGIN PUBLIC KEY-----")
        or not pem.strip().endswith("-----END PUBLIC KEY-----")
    ):
        raise UsageError(
            "invalid encryption key: expected a PEM public key ('-----BEGIN PUBLIC KEY-----'),"
            f" at most {_MAX_PUBLIC_KEY_PEM} characters"
        )
    return pem


@dataclass(frozen=True)
class ShareGrant:
    bundle: str
    teams: tuple[str, ...]
    permissions: str
    version: str
    location: str


@dataclass(frozen=True)
class BundleRecord:
    name: str
    version: str
    description: str
    modules: tuple[str, ...]  # "<module>:<commit>" of every member (closure included)


@dataclass(frozen=True)
class TeamConfig:
    team: str
    members: tuple[str, ...] = ()
    cache_strategy: str = DEFAULT_STRATEGY
    shared_cache: bool = True
    bundle_auto_creation: bool = True
    max_cache_size_mb: int = STRATEGIES[DEFAULT_STRATEGY].max_cache_size_mb
    sync_frequency_minutes: int = STRATEGIES[DEFAULT_STRATEGY].sync_frequency_minutes
    bundles: tuple[BundleRecord, ...] = ()
    shares: tuple[ShareGrant, ...] = ()
    # member -> role for members whose role is not DEFAULT_ROLE; every key is in ``members``
    roles: dict[str, str] = field(default_factory=dict)
    # member -> "ed25519:<base64>": who may sign team documents is decided by the role
    signing_keys: dict[str, str] = field(default_factory=dict)
    # member -> PEM public key: the recipients of the team's encrypted layers
    encryption_keys: dict[str, str] = field(default_factory=dict)
    encrypt: bool = False  # publish module layers encrypted for ``encryption_keys``
    updated_at: float = 0.0
    updated_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # keys of newer versions, kept as is

    @property
    def strategy(self) -> Strategy:
        return STRATEGIES[self.cache_strategy]

    @property
    def preload_top(self) -> int:
        return self.strategy.preload_top

    def role_of(self, member: str) -> str | None:
        """The member's role; None for someone who is not a member."""
        if member not in self.members:
            return None
        return self.roles.get(member, DEFAULT_ROLE)

    @property
    def signed(self) -> bool:
        """A signed team: at least one admin has a signing key (team/trust.py)."""
        return any(m in self.signing_keys for m in self.members_with_role("admin"))

    def recipients(self) -> list[str] | None:
        """The public keys (PEM) module layers are encrypted for; None: published plain."""
        if not self.encrypt:
            return None
        if not self.encryption_keys:
            raise ConfigError(
                "encryption_keys",
                f"team {self.team} encrypts its modules but lists no member's encryption key:"
                " an admin adds one with setup --encryption-key NAME=FILE",
            )
        return [self.encryption_keys[m] for m in sorted(self.encryption_keys)]

    def members_with_role(self, needed: str) -> tuple[str, ...]:
        return tuple(m for m in self.members if role_at_least(self.role_of(m), needed))

    def bundle(self, name: str) -> BundleRecord | None:
        return next((b for b in self.bundles if b.name == name), None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data["members"] = list(self.members)
        for key in ("roles", "signing_keys", "encryption_keys"):
            data[key] = dict(sorted(data[key].items()))
        return {**extra, **data, "schema": 1}


def make_config(
    team: str,
    *,
    members: list[str] | tuple[str, ...] = (),
    cache_strategy: str = DEFAULT_STRATEGY,
    shared_cache: bool = True,
    bundle_auto_creation: bool = True,
    max_cache_size_mb: int | None = None,
    sync_frequency_minutes: int | None = None,
    roles: dict[str, str] | None = None,
    signing_keys: dict[str, str] | None = None,
    encryption_keys: dict[str, str] | None = None,
    encrypt: bool | None = None,
    base: TeamConfig | None = None,
) -> TeamConfig:
    """A validated configuration; sizes and sync frequency default to the strategy's. Roles and
    keys of members who are not in ``members`` are dropped (removing a member removes them)."""
    validate_team_name(team)
    if cache_strategy not in STRATEGIES:
        raise UsageError(
            f"unknown cache strategy {cache_strategy!r}: choose one of"
            f" {', '.join(sorted(STRATEGIES))}"
        )
    strategy = STRATEGIES[cache_strategy]
    size = strategy.max_cache_size_mb if max_cache_size_mb is None else max_cache_size_mb
    sync = (
        strategy.sync_frequency_minutes
        if sync_frequency_minutes is None
        else (sync_frequency_minutes)
    )
    if not isinstance(size, int) or size <= 0:
        raise UsageError(f"max_cache_size_mb must be a positive number of MB, not {size!r}")
    if not isinstance(sync, int) or sync <= 0:
        raise UsageError(f"sync_frequency_minutes must be a positive number, not {sync!r}")
    seen: list[str] = []
    for member in members:
        if validate_member(member) not in seen:
            seen.append(member)
    kept = base or TeamConfig(team)
    listed = set(seen)
    role_map = {
        validate_member(m): validate_role(r)
        for m, r in (kept.roles if roles is None else roles).items()
    }
    signing = {
        validate_member(m): validate_signing_key(k)
        for m, k in (kept.signing_keys if signing_keys is None else signing_keys).items()
    }
    encryption = {
        validate_member(m): validate_encryption_key(k)
        for m, k in (kept.encryption_keys if encryption_keys is None else encryption_keys).items()
    }
    return replace(
        kept,
        team=team,
        members=tuple(seen),
        roles={m: r for m, r in role_map.items() if m in listed and r != DEFAULT_ROLE},
        signing_keys={m: k for m, k in signing.items() if m in listed},
        encryption_keys={m: k for m, k in encryption.items() if m in listed},
        encrypt=kept.encrypt if encrypt is None else bool(encrypt),
        cache_strategy=cache_strategy,
        shared_cache=bool(shared_cache),
        bundle_auto_creation=bool(bundle_auto_creation),
        max_cache_size_mb=size,
        sync_frequency_minutes=sync,
    )


def config_repository(team: str, namespace: str = "") -> str:
    return in_namespace(namespace, f"teams/{validate_team_name(team)}/config")


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} is not a list of strings")
    return tuple(value)


def bundle_record(b: Any) -> BundleRecord:
    if not isinstance(b, dict):
        raise ValueError("a bundle record is not an object")
    modules = _strings(b["modules"], "bundle modules")
    for key in modules:
        name, _, commit = key.rpartition(":")
        parse_module_name(name)
        validate_commit_id(commit)
    description = b.get("description", "")
    if not isinstance(description, str) or not isinstance(b["version"], str):
        raise ValueError("bundle description and version must be strings")
    return BundleRecord(
        validate_repository_name("bundle", b["name"], 100), b["version"], description, modules
    )


def _share_grant(g: Any) -> ShareGrant:
    if not isinstance(g, dict):
        raise ValueError("a share grant is not an object")
    teams = tuple(validate_team_name(t) for t in _strings(g["teams"], "share teams"))
    fields = (g["permissions"], g["version"], g["location"])
    if not all(isinstance(f, str) for f in fields):
        raise ValueError("share permissions, version and location must be strings")
    return ShareGrant(validate_repository_name("bundle", g["bundle"], 100), teams, *fields)


def config_from_json(data: Any, where: str) -> TeamConfig:
    """A team configuration read from the registry (or this machine's copy), every field
    checked; anything malformed is an InvalidContentError (callers fall back to defaults)."""
    if not isinstance(data, dict):
        raise InvalidContentError(f"{where}: the team configuration is not a JSON object")
    try:
        known = {f for f in TeamConfig.__dataclass_fields__ if f != "extra"}
        for flag in ("shared_cache", "bundle_auto_creation", "encrypt"):
            if not isinstance(data.get(flag, flag != "encrypt"), bool):
                raise ValueError(f"{flag} is not true or false")
        config = make_config(
            data["team"],
            members=list(_strings(data.get("members", []), "members")),
            cache_strategy=data.get("cache_strategy", DEFAULT_STRATEGY),
            shared_cache=data.get("shared_cache", True),
            bundle_auto_creation=data.get("bundle_auto_creation", True),
            max_cache_size_mb=data.get("max_cache_size_mb"),
            sync_frequency_minutes=data.get("sync_frequency_minutes"),
            roles=_string_map(data.get("roles", {}), "roles"),
            signing_keys=_string_map(data.get("signing_keys", {}), "signing_keys"),
            encryption_keys=_string_map(data.get("encryption_keys", {}), "encryption_keys"),
            encrypt=data.get("encrypt", False),
        )
        updated_at = float(data.get("updated_at", 0.0))
        return replace(
            config,
            bundles=tuple(bundle_record(b) for b in _list(data.get("bundles", []))),
            shares=tuple(_share_grant(g) for g in _list(data.get("shares", []))),
            updated_at=updated_at if updated_at == updated_at else 0.0,
            updated_by=str(data.get("updated_by", ""))[:200],
            extra={k: v for k, v in data.items() if k not in known and k != "schema"},
        )
    except (KeyError, TypeError, ValueError, OverflowError, BSRTeamCacheError) as exc:
        raise InvalidContentError(f"{where}: malformed team configuration ({exc})") from None


def _string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{what} is not an object of strings")
    return value


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise ValueError("expected a list")
    return value


def read_team_config(
    registry: RegistryBackend, team: str, namespace: str = ""
) -> TeamConfig | None:
    repo = config_repository(team, namespace)
    found = read_document(registry, repo, CONFIG_TAG, TEAM_CONFIG_TYPE)
    if found is None:
        return None
    where = f"{registry.describe()}/{repo}:{CONFIG_TAG}"
    config = config_from_json(found[0], where)
    if config.team != team:
        raise InvalidContentError(f"{where}: the configuration is for team {config.team!r}")
    return config
