"""The access policy, decided exactly for every role, repository kind and action."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest

from bsr_team_cache.auth.policy import Decision, Principal, Scope, decide, parse_scope
from bsr_team_cache.team.config import ShareGrant, TeamConfig, make_config

NS = ""


class Configs:
    """The policy's input: team configurations by name (as the server's cache gives them)."""

    def __init__(self, *configs: TeamConfig) -> None:
        self.by_team = {c.team: c for c in configs}

    def get(self, team: str) -> TeamConfig | None:
        return self.by_team.get(team)

    def all(self) -> Iterable[TeamConfig]:
        return list(self.by_team.values())


TEAM_A = make_config(
    "a",
    members=["alice", "mia", "mo", "bob"],
    roles={"alice": "admin", "mia": "maintainer", "bob": "reader"},  # mo: member (default)
)
TEAM_B = make_config("b", members=["carol"], roles={"carol": "member"})

REPOSITORIES = {
    "config": "teams/a/config",
    "dependencies": "teams/a/dependencies/buf.build/acme/pets",
    "packs": "teams/a/packs",
    "bundles": "teams/a/bundles/core",
    "bundle-index": "teams/a/bundle-index",
    "labels": "teams/a/labels/buf.build/acme/pets",
    "usage-events": "teams/a/usage-events",
    "audit": "teams/a/audit",
    "other": "teams/a/scratch",
}
_ALL = "pull,push,delete"
# user -> kind -> the actions granted of pull,push,delete
EXPECTED = {
    "bob": {  # reader
        "config": "pull",
        "dependencies": "pull",
        "packs": "pull",
        "bundles": "pull",
        "bundle-index": "pull",
        "labels": "pull",
        "usage-events": "pull",
        "audit": "pull",
        "other": "pull",
    },
    "mo": {  # member
        "config": "pull",
        "dependencies": "pull,push",
        "packs": "pull,push",
        "bundles": "pull",
        "bundle-index": "pull",
        "labels": "pull",
        "usage-events": "pull,push",
        "audit": "pull,push",
        "other": "pull",
    },
    "mia": {  # maintainer
        "config": "pull",
        "dependencies": "pull,push",
        "packs": "pull,push",
        "bundles": "pull,push",
        "bundle-index": "pull,push",
        "labels": "pull,push",
        "usage-events": "pull,push",
        "audit": "pull,push",
        "other": "pull",
    },
    "alice": {  # admin
        "config": _ALL,
        "dependencies": _ALL,
        "packs": _ALL,
        "bundles": _ALL,
        "bundle-index": _ALL,
        "labels": _ALL,
        "usage-events": _ALL,
        "audit": _ALL,
        "other": "pull,delete",
    },
    "carol": dict.fromkeys(REPOSITORIES, ""),  # a member of team b only
}


def granted(user: str, name: str, actions: str, *configs: TeamConfig, admin: bool = False) -> str:
    scope = parse_scope(f"repository:{name}:{actions}")
    assert scope is not None
    decision = decide(Principal(user, admin), scope, Configs(*configs), NS)
    return ",".join(decision.granted)


@pytest.mark.parametrize("user", sorted(EXPECTED))
@pytest.mark.parametrize("kind", sorted(REPOSITORIES))
def test_each_role_on_each_kind_of_team_repository(user: str, kind: str) -> None:
    assert granted(user, REPOSITORIES[kind], _ALL, TEAM_A, TEAM_B) == EXPECTED[user][kind]


def test_refusals_say_why() -> None:
    configs = Configs(TEAM_A, TEAM_B)
    scope = Scope("repository", "teams/a/dependencies/buf.build/acme/pets", ("pull", "push"))
    assert decide(Principal("bob"), scope, configs, NS) == Decision(
        scope, "a", ("pull",), ("push",), "role reader cannot push dependencies"
    )
    assert decide(Principal("carol"), scope, configs, NS) == Decision(
        scope, "a", (), ("pull", "push"), "not a member of team a"
    )
    other = Scope("repository", "teams/a/scratch", ("push",))
    assert decide(Principal("alice"), other, configs, NS).reason == (
        "nobody but a site admin may push scratch"
    )


def test_a_team_without_configuration_is_created_by_site_admins_only() -> None:
    config = Scope("repository", "teams/new/config", ("pull", "push"))
    assert decide(Principal("alice"), config, Configs(TEAM_A), NS) == Decision(
        config,
        "new",
        (),
        ("pull", "push"),
        "team new has no configuration (a site admin creates it)",
    )
    assert decide(Principal("root", site_admin=True), config, Configs(TEAM_A), NS) == Decision(
        config, "new", ("pull", "push"), (), ""
    )


def test_site_admins_get_everything_they_ask_for() -> None:
    for text in (
        "repository:teams/a/config:pull,push,delete",
        "repository:shared/organization/bundles/nobody:push",
        "repository:anything/else:pull",
        "registry:catalog:*",
    ):
        scope = parse_scope(text)
        assert scope is not None
        decision = decide(Principal("root", site_admin=True), scope, Configs(TEAM_A), NS)
        assert (decision.granted, decision.refused) == (scope.actions, ())


def test_the_catalog_and_other_repositories_are_refused_to_users() -> None:
    catalog = Scope("registry", "catalog", ("*",))
    assert decide(Principal("alice"), catalog, Configs(TEAM_A), NS) == Decision(
        catalog, "", (), ("*",), "the catalog is for site admins only"
    )
    assert granted("alice", "library/alpine", "pull", TEAM_A) == ""
    assert granted("alice", "teams/a", "pull", TEAM_A) == ""  # the team itself: not a repo
    assert granted("alice", "teams/a/dependencies", "push", TEAM_A) == ""  # kind "other"


def _shared(permissions: str = "read-only", teams: tuple[str, ...] = ("b",)) -> ShareGrant:
    return ShareGrant("core", teams, permissions, "v1", "shared/organization/bundles/core")


SHARED = "shared/organization/bundles/core"


def test_a_shared_bundle_is_read_by_both_teams_and_pushed_by_the_owners_maintainers() -> None:
    owner = replace(TEAM_A, shares=(_shared(),))
    team_c = make_config("c", members=["dan"])
    table = {
        user: granted(user, SHARED, _ALL, owner, TEAM_B, team_c)
        for user in ("alice", "mia", "mo", "bob", "carol", "dan")
    }
    assert table == {
        "alice": "pull,push",
        "mia": "pull,push",
        "mo": "pull",
        "bob": "pull",
        "carol": "pull",  # team b is named by the grant
        "dan": "",
    }
    scope = Scope("repository", SHARED, ("push",))
    assert decide(Principal("carol"), scope, Configs(owner, TEAM_B), NS).reason == (
        "only maintainers and admins of team a push bundle core"
    )
    assert decide(Principal("mo"), scope, Configs(owner, TEAM_B), NS).reason == (
        "role member cannot push bundle core"
    )


def test_read_write_shares_still_have_one_owner() -> None:
    owner = replace(TEAM_A, shares=(_shared("read-write"),))
    assert granted("carol", SHARED, "pull,push", owner, TEAM_B) == "pull"


def test_a_grant_elsewhere_or_for_another_bundle_does_not_count() -> None:
    elsewhere = ShareGrant("core", ("b",), "read-only", "v1", "shared/organization/bundles/x")
    assert granted("alice", SHARED, "pull,push", replace(TEAM_A, shares=(elsewhere,))) == ""
    scope = Scope("repository", SHARED, ("pull",))
    assert decide(Principal("alice"), scope, Configs(TEAM_A), NS).reason == (
        "bundle core is not shared by any team"
    )


def test_a_bundle_claimed_by_two_teams_is_pushed_by_nobody() -> None:
    owner = replace(TEAM_A, shares=(_shared(teams=("c",)),))
    claimant = replace(TEAM_B, shares=(_shared(teams=("c",)),))
    team_c = make_config("c", members=["dan"])
    configs = (owner, claimant, team_c)
    assert granted("alice", SHARED, "pull,push", *configs) == "pull"
    assert granted("carol", SHARED, "pull,push", *configs) == "pull"
    assert granted("dan", SHARED, "pull,push", *configs) == ""  # named by a disputed grant
    scope = Scope("repository", SHARED, ("push",))
    decision = decide(Principal("alice"), scope, Configs(*configs), NS)
    assert decision == Decision(scope, "", (), ("push",), "bundle core is claimed by teams a and b")


def test_the_namespace_is_honoured() -> None:
    scope = Scope("repository", "acme/teams/a/config", ("pull",))
    assert decide(Principal("bob"), scope, Configs(TEAM_A), "acme").granted == ("pull",)
    assert decide(Principal("bob"), scope, Configs(TEAM_A), "").granted == ()
    bare = Scope("repository", "teams/a/config", ("pull",))
    assert decide(Principal("bob"), bare, Configs(TEAM_A), "acme") == Decision(
        bare, "", (), ("pull",), "outside the namespace acme"
    )


@pytest.mark.parametrize(
    "name", ["Teams/a/config", "teams//a", "teams/a/config/", "a" * 256, "teams/a/con fig"]
)
def test_invalid_repository_names_are_refused(name: str) -> None:
    scope = Scope("repository", name, ("pull",))
    assert decide(Principal("alice"), scope, Configs(TEAM_A), NS) == Decision(
        scope, "", (), ("pull",), "invalid repository name"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "repository:teams/a/config:pull,push",
            Scope("repository", "teams/a/config", ("pull", "push")),
        ),
        (
            "repository:teams/a/config:push,pull,push",
            Scope("repository", "teams/a/config", ("push", "pull")),
        ),
        ("repository:localhost:5000/x:pull", Scope("repository", "localhost:5000/x", ("pull",))),
        ("registry:catalog:*", Scope("registry", "catalog", ("*",))),
        ("repository:teams/a/config:*", None),
        ("repository:teams/a/config:", None),
        ("repository:teams/a/config:pull,fly", None),
        ("repository(plugin):x:pull", None),
        ("registry:other:*", None),
        ("teams/a/config", None),
        ("repository::pull", None),
        ("", None),
    ],
)
def test_scopes_parse_or_are_ignored(text: str, expected: Scope | None) -> None:
    assert parse_scope(text) == expected
