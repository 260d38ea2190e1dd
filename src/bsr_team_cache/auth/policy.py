"""Which actions a user is granted on one requested scope, from the team configurations.

Roles (``TeamConfig.role_of(member)``; each role has what the ones before it have):

=============  ======================================================================
role           on ``teams/<T>/…`` (``T`` is the team the configuration is for)
=============  ======================================================================
reader         pull on every repository under ``teams/<T>/``
member         + push on ``teams/<T>/dependencies/**``, ``teams/<T>/packs``,
               ``teams/<T>/usage-events``, ``teams/<T>/audit``
maintainer     + push on ``teams/<T>/bundles/<name>``, ``teams/<T>/bundle-index`` and
               ``teams/<T>/labels/**``
admin          + push on ``teams/<T>/config``; delete on every repository under
               ``teams/<T>/``
=============  ======================================================================

Members of a team that one of ``T``'s share grants names may pull ``teams/<T>/config``: it
holds the public keys that sign the shared bundle.

Other repositories under ``teams/<T>/`` (no kind above) are pulled by readers and deleted by
admins; nobody but a site admin pushes them.

Shared bundles, ``shared/organization/bundles/<B>``: the owning team is the one whose
configuration has a share grant for bundle ``B`` located at that repository. Every role of
the owning team and of each team the grant names may pull; maintainers and admins of the
owning team may push; nobody deletes (site admins aside). No grant: nobody pulls or pushes.
Two or more teams claiming ``B``: nobody may push; only the claiming teams' own roles may
pull (the teams named by a disputed grant are not trusted), until a site admin settles it.
A share's ``read-write`` permission does not give the named teams push: a repository has one
owning team.

A team with no (readable) configuration yet: nobody but a site admin may do anything in it,
pushing its ``config`` included. That is how a team is created: a site admin runs ``setup``,
which makes its creator the team's first admin.

Site admins are granted every action they ask for, ``registry:catalog:*`` included. For
everyone else the catalog and every repository outside ``teams/`` and shared bundles are
refused. Repository names must follow the OCI name grammar and lie under the server's
namespace (``--namespace``), which is stripped before the rules above apply. Scopes that do
not parse, or name a resource type or action the registry does not know, are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from bsr_team_cache.errors import BSRTeamCacheError
from bsr_team_cache.oci.url import in_namespace
from bsr_team_cache.team.config import (
    ROLES,
    ShareGrant,
    TeamConfig,
    role_at_least,
    validate_team_name,
)

REPOSITORY_ACTIONS = ("pull", "push", "delete")
CATALOG_ACTIONS = ("*",)
MAX_NAME = 255  # Distribution's limit on a repository name

# The OCI distribution spec's repository name grammar.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TYPE_RE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Scope:
    """``type:name:actions`` as the registry's challenge asks (``repository:teams/a/x:pull``)."""

    type: str
    name: str
    actions: tuple[str, ...]


def parse_scope(text: str) -> Scope | None:
    """A scope, or None if it does not parse or names nothing the registry knows (no
    resource class, repository actions pull/push/delete, the catalog's ``*``). The name is
    not checked here (see :func:`decide`); the type is split at the first colon, the actions
    at the last (a name may hold a registry's ``host:port``)."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions_text = rest.rpartition(":")
    if not sep or not sep2 or not name or not _TYPE_RE.fullmatch(kind):
        return None
    actions = tuple(dict.fromkeys(a for a in actions_text.split(",") if a))
    if kind == "repository":
        known = REPOSITORY_ACTIONS
    elif kind == "registry" and name == "catalog":
        known = CATALOG_ACTIONS
    else:
        return None
    if not actions or any(a not in known for a in actions):
        return None
    return Scope(kind, name, actions)


@dataclass(frozen=True)
class Principal:
    """Who asks: a member name, and whether a site admin (never through a CI token)."""

    name: str
    site_admin: bool = False


@dataclass(frozen=True)
class Decision:
    scope: Scope
    team: str  # the team whose repository it is ("" for none: the catalog, a stray name)
    granted: tuple[str, ...]
    refused: tuple[str, ...]
    reason: str  # why ``refused`` were refused ("" when nothing was)


class TeamConfigs(Protocol):
    """The team configurations the policy reads (the server's cache of the registry's)."""

    def get(self, team: str) -> TeamConfig | None:
        """The team's configuration; None if it has none or it could not be read."""

    def all(self) -> Iterable[TeamConfig]:
        """Every team's readable configuration (for shared bundles)."""


def role_of(config: TeamConfig, member: str) -> str | None:
    """``member``'s role in the team; None if not a member (an unknown role counts as none)."""
    role = config.role_of(member)
    return role if role in ROLES else None


def team_repository_kind(rest: list[str]) -> str:
    """What a repository under ``teams/<T>/`` is, from the path parts after the team."""
    match rest:
        case ["config"] | ["usage-events"] | ["audit"] | ["bundle-index"] | ["packs"]:
            return rest[0]
        case ["dependencies", _, *_]:
            return "dependencies"
        case ["bundles", _]:
            return "bundles"
        case ["labels", _, *_]:
            return "labels"
    return "other"


# Who may push each kind of team repository (None: nobody but site admins).
PUSH_ROLE: dict[str, str | None] = {
    "dependencies": "member",
    # Lock packs hold copies of module artifacts, checked by readers as those are.
    "packs": "member",
    "usage-events": "member",
    "audit": "member",
    "bundles": "maintainer",
    "bundle-index": "maintainer",
    "labels": "maintainer",
    "config": "admin",
    "other": None,
}
# The least role each action needs on a team repository (push: by kind, above).
ACTION_ROLE = {"pull": "reader", "delete": "admin"}


def decide(principal: Principal, scope: Scope, configs: TeamConfigs, namespace: str) -> Decision:
    """The actions of ``scope`` that ``principal`` is granted, and why the others are not."""
    if scope.type == "registry":
        if principal.site_admin:
            return Decision(scope, "", scope.actions, (), "")
        return _refuse(scope, "", "the catalog is for site admins only")
    if len(scope.name) > MAX_NAME or not REPOSITORY_NAME_RE.fullmatch(scope.name):
        return _refuse(scope, "", "invalid repository name")
    prefix = in_namespace(namespace, "")
    if not scope.name.startswith(prefix):
        return _refuse(scope, "", f"outside the namespace {namespace.strip('/')}")
    parts = scope.name[len(prefix) :].split("/")
    if parts[0] == "teams" and len(parts) >= 3 and _is_team_name(parts[1]):
        return _team_decision(principal, scope, parts[1], parts[2:], configs)
    if parts[:3] == ["shared", "organization", "bundles"] and len(parts) == 4:
        return _share_decision(principal, scope, parts[3], configs)
    if principal.site_admin:
        return Decision(scope, "", scope.actions, (), "")
    return _refuse(scope, "", "not a team repository")


def _is_team_name(text: str) -> bool:
    try:
        validate_team_name(text)
    except BSRTeamCacheError:
        return False
    return True


def _refuse(scope: Scope, team: str, reason: str) -> Decision:
    return Decision(scope, team, (), scope.actions, reason)


def _split(scope: Scope, team: str, allowed: dict[str, bool], reasons: dict[str, str]) -> Decision:
    granted = tuple(a for a in scope.actions if allowed.get(a, False))
    refused = tuple(a for a in scope.actions if not allowed.get(a, False))
    reason = "; ".join(dict.fromkeys(reasons[a] for a in refused))
    return Decision(scope, team, granted, refused, reason)


def _team_decision(
    principal: Principal, scope: Scope, team: str, rest: list[str], configs: TeamConfigs
) -> Decision:
    if principal.site_admin:
        return Decision(scope, team, scope.actions, (), "")
    config = configs.get(team)
    if config is None:
        return _refuse(scope, team, f"team {team} has no configuration (a site admin creates it)")
    role = role_of(config, principal.name)
    kind = team_repository_kind(rest)
    if role is None and kind == "config" and _receives_share(principal, config, configs):
        # A team that T shares a bundle with reads T's configuration: it holds the keys that
        # sign the shared bundle (public, like the share itself).
        allowed = {a: a == "pull" for a in scope.actions}
        return _split(scope, team, allowed, dict.fromkeys(scope.actions, "not a member"))
    if role is None:
        return _refuse(scope, team, f"not a member of team {team}")
    allowed, reasons = {}, {}
    for action in scope.actions:
        needed = PUSH_ROLE[kind] if action == "push" else ACTION_ROLE[action]
        allowed[action] = needed is not None and role_at_least(role, needed)
        reasons[action] = f"role {role} cannot {action} {kind}"
        if needed is None:
            reasons[action] = f"nobody but a site admin may {action} {'/'.join(rest)}"
    return _split(scope, team, allowed, reasons)


def _receives_share(principal: Principal, owner: TeamConfig, configs: TeamConfigs) -> bool:
    """Whether ``principal`` is in a team that one of ``owner``'s share grants names."""
    for team in {t for grant in owner.shares for t in grant.teams}:
        config = configs.get(team)
        if config is not None and role_of(config, principal.name) is not None:
            return True
    return False


def share_claims(configs: TeamConfigs, bundle: str, repository: str) -> list[TeamConfig]:
    """The teams whose configuration has a share grant for ``bundle`` at ``repository``."""
    return [
        config
        for config in configs.all()
        if any(_claims(grant, bundle, repository) for grant in config.shares)
    ]


def _claims(grant: ShareGrant, bundle: str, repository: str) -> bool:
    return grant.bundle == bundle and grant.location == repository


def _share_decision(
    principal: Principal, scope: Scope, bundle: str, configs: TeamConfigs
) -> Decision:
    claims = share_claims(configs, bundle, scope.name)
    owner = claims[0].team if len(claims) == 1 else ""
    if principal.site_admin:
        return Decision(scope, owner, scope.actions, (), "")
    if not claims:
        return _refuse(scope, "", f"bundle {bundle} is not shared by any team")
    if len(claims) > 1:
        teams = " and ".join(sorted(c.team for c in claims))
        own = [role_of(c, principal.name) for c in claims]
        readable = any(r is not None for r in own)
        allowed = {"pull": readable}
        reason = f"bundle {bundle} is claimed by teams {teams}"
        return _split(scope, "", allowed, dict.fromkeys(scope.actions, reason))
    config = claims[0]
    grant = next(g for g in config.shares if _claims(g, bundle, scope.name))
    own_role = role_of(config, principal.name)
    reader = own_role is not None or any(
        role_of(other, principal.name) is not None
        for other in (configs.get(t) for t in grant.teams if t != config.team)
        if other is not None
    )
    allowed = {"pull": reader, "push": role_at_least(own_role, "maintainer"), "delete": False}
    reasons = {
        "pull": f"not a member of team {owner} or of a team it shares bundle {bundle} with",
        "push": f"only maintainers and admins of team {owner} push bundle {bundle}"
        if own_role is None
        else f"role {own_role} cannot push bundle {bundle}",
        "delete": "nobody but a site admin deletes a shared bundle",
    }
    return _split(scope, owner, allowed, reasons)
