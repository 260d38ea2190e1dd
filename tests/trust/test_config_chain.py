"""The team configuration's chain of trust: first use, rotation by an admin, refusals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bsr_team_cache.errors import UsageError
from bsr_team_cache.oci.base import OCI_MANIFEST
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.config import (
    CONFIG_TAG,
    TEAM_CONFIG_TYPE,
    TeamConfig,
    config_repository,
    make_config,
)
from bsr_team_cache.team.trust import TRUSTED_KEYS_ENV, read_trusted_config, update_team_config
from bsr_team_cache.trust.signatures import sign
from tests.trust.conftest import ALICE, BOB, CAROL, MIA, create_signed_team

REPO = config_repository("t")


@pytest.fixture
def registry(tmp_path: Path) -> OCILayoutRegistry:
    return OCILayoutRegistry(tmp_path / "registry")


def _store(tmp_path: Path, name: str) -> LocalStore:
    return LocalStore(tmp_path / name)


def _read(registry, store, env=None) -> tuple[TeamConfig | None, bool, list[str]]:
    warnings: list[str] = []
    trusted = read_trusted_config(registry, "t", "", store, warnings, env=env or {})
    return trusted.config, trusted.signed, warnings


def test_first_contact_is_trusted_on_first_use_then_pinned(registry, tmp_path: Path) -> None:
    created = create_signed_team(registry, _store(tmp_path, "alice"))
    machine = _store(tmp_path, "bob")
    config, signed, warnings = _read(registry, machine)
    assert (config, signed) == (created, True)
    assert warnings == [
        f"trusting team t's configuration on first use (signed by alice; admin keys: alice"
        f" {ALICE.key_id}); to check the keys in advance, set {TRUSTED_KEYS_ENV}"
    ]
    assert _read(registry, machine) == (created, True, [])  # pinned: said once


def test_expected_admin_keys_refuse_another_first_configuration(registry, tmp_path) -> None:
    create_signed_team(registry, _store(tmp_path, "alice"))
    config, signed, warnings = _read(
        registry, _store(tmp_path, "bob"), env={TRUSTED_KEYS_ENV: CAROL.key_id}
    )
    assert (config, signed) == (None, True)  # nothing verifies in this team
    assert warnings == [
        f"team configuration at {registry.describe()}/{REPO}:latest not trusted (signed by"
        f" alice with key {ALICE.key_id}, which {TRUSTED_KEYS_ENV} does not name); signed"
        " documents of the team cannot be verified"
    ]
    config, _, warnings = _read(
        registry, _store(tmp_path, "dan"), env={TRUSTED_KEYS_ENV: f"x, {ALICE.key_id}"}
    )
    assert config is not None and config.role_of("alice") == "admin" and warnings == []


def test_admin_rotation_is_followed_through_the_chain(registry, tmp_path: Path) -> None:
    alice_machine = _store(tmp_path, "alice")
    first = create_signed_team(registry, alice_machine)
    bob_machine = _store(tmp_path, "bob")
    assert _read(registry, bob_machine)[0] == first  # pinned: alice is the only admin
    # alice makes carol an admin, then carol removes alice: bob's machine saw neither.
    update_team_config(
        registry,
        "t",
        lambda c: make_config(
            "t",
            members=[*c.members, "carol"],
            roles={**c.roles, "carol": "admin"},
            signing_keys={**c.signing_keys, "carol": CAROL.public_text},
            base=c,
        ),
        by="alice",
        signing_key=ALICE,
        store=alice_machine,
    )
    last = update_team_config(
        registry,
        "t",
        lambda c: make_config("t", members=[m for m in c.members if m != "alice"], base=c),
        by="carol",
        signing_key=CAROL,
        store=_store(tmp_path, "carol"),
    )
    assert last.members == ("mia", "bob", "carol")
    config, signed, warnings = _read(registry, bob_machine)
    assert (config, signed, warnings) == (last, True, [])
    assert _read(registry, bob_machine) == (last, True, [])  # the new pin


def _push_signed(registry, config: TeamConfig, key, member: str) -> None:
    from bsr_team_cache.oci.documents import canonical_json, push_document
    from bsr_team_cache.team.trust import config_context

    payload = canonical_json(config.to_json())
    annotations = sign(key, member, config_context("t"), payload) if key else {}
    push_document(registry, REPO, CONFIG_TAG, TEAM_CONFIG_TYPE, config.to_json(), annotations)


@pytest.mark.parametrize(
    ("signer", "reason"),
    [
        ("bob", "signed by bob (member), not by an admin"),
        ("mia", "signed by mia (maintainer), not by an admin"),
        (None, "unsigned"),
    ],
)
def test_a_configuration_not_signed_by_an_admin_is_ignored(
    registry, tmp_path: Path, signer: str | None, reason: str
) -> None:
    trusted = create_signed_team(registry, _store(tmp_path, "alice"))
    machine = _store(tmp_path, "dan")
    _read(registry, machine)  # pinned
    # bob (or mia, or anyone unsigned) makes himself admin and adds an encryption key.
    forged = replace(
        trusted,
        roles={**trusted.roles, "bob": "admin"},
        updated_at=trusted.updated_at + 10,
        updated_by="bob",
    )
    if signer is None:
        forged = replace(forged, signing_keys={})  # and "unsigns" the team
    _push_signed(registry, forged, {"bob": BOB, "mia": MIA}.get(signer or ""), signer or "")
    config, signed, warnings = _read(registry, machine)
    assert (config, signed) == (trusted, True)
    assert warnings == [
        f"team configuration at {registry.describe()}/{REPO}:latest not trusted ({reason});"
        " using the one this machine trusts (by alice)"
    ]


def test_an_older_admin_signed_configuration_is_not_a_rollback(registry, tmp_path) -> None:
    alice_machine = _store(tmp_path, "alice")
    create_signed_team(registry, alice_machine)
    old_manifest, _ = registry.read_manifest(REPO, CONFIG_TAG)
    newer = update_team_config(
        registry,
        "t",
        lambda c: make_config("t", members=[m for m in c.members if m != "bob"], base=c),
        by="alice",
        signing_key=ALICE,
        store=alice_machine,
    )
    machine = _store(tmp_path, "dan")
    assert _read(registry, machine)[0] == newer
    registry.push_manifest(REPO, CONFIG_TAG, old_manifest, OCI_MANIFEST)  # bob replays it
    config, _, warnings = _read(registry, machine)
    assert config == newer
    assert warnings == [
        f"team configuration at {registry.describe()}/{REPO}:latest not trusted (it is older"
        " than the configuration this machine trusts); using the one this machine trusts (by"
        " alice)"
    ]


def test_writers_of_a_signed_team(registry, tmp_path: Path) -> None:
    store = _store(tmp_path, "alice")
    create_signed_team(registry, store)

    def add_dan(c: TeamConfig) -> TeamConfig:
        return make_config("t", members=[*c.members, "dan"], base=c)

    with pytest.raises(UsageError) as no_key:
        update_team_config(registry, "t", add_dan, by="alice", store=store)
    assert str(no_key.value) == (
        "team t's configuration is signed by its admins: set BSR_TEAM_CACHE_SIGNING_KEY_FILE"
        f" to alice's signing key (registered: key {ALICE.key_id})"
    )
    with pytest.raises(UsageError) as not_admin:
        update_team_config(registry, "t", add_dan, by="mia", signing_key=MIA, store=store)
    assert str(not_admin.value) == (
        "team t's configuration is signed by its admins, and mia is maintainer: ask an admin"
        " (alice) to make this change"
    )
    saved = update_team_config(registry, "t", add_dan, by="alice", signing_key=ALICE, store=store)
    assert saved.members == ("alice", "mia", "bob", "dan")
    # A forged configuration in the registry is not built on: the change applies to the
    # trusted one.
    _push_signed(registry, replace(saved, members=("bob",), roles={}), BOB, "bob")
    warnings: list[str] = []
    rebuilt = update_team_config(
        registry,
        "t",
        lambda c: make_config("t", members=[*c.members, "erin"], base=c),
        by="alice",
        signing_key=ALICE,
        store=store,
        warnings=warnings,
    )
    assert rebuilt.members == ("alice", "mia", "bob", "dan", "erin")
    assert warnings[0].endswith(
        "not trusted (signed by bob (member), not by an admin);"
        " using the one this machine trusts (by alice)"
    )


def test_setup_signs_with_the_admins_configured_key(
    registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bsr_team_cache.bsr.client import BSRModuleClient
    from bsr_team_cache.team.cache import TeamCache
    from bsr_team_cache.trust.keys import SIGNING_KEY_ENV
    from tests.trust.conftest import pem

    def cache(member: str) -> TeamCache:
        store = _store(tmp_path, member)
        return TeamCache("t", registry=registry, bsr=BSRModuleClient(), store=store, member=member)

    monkeypatch.setenv(SIGNING_KEY_ENV, pem(ALICE))
    created = cache("alice").setup(["mia"], signing_keys={"alice": ALICE.public_text})
    assert created.role_of("alice") == "admin" and created.signing_keys == {
        "alice": ALICE.public_text
    }
    assert _read(registry, _store(tmp_path, "other"))[1] is True  # a signed team now
    monkeypatch.delenv(SIGNING_KEY_ENV)
    with pytest.raises(UsageError) as refused:
        cache("alice").setup(["bob"])
    assert str(refused.value) == (
        "team t's configuration is signed by its admins: set BSR_TEAM_CACHE_SIGNING_KEY_FILE"
        f" to alice's signing key (registered: key {ALICE.key_id})"
    )
