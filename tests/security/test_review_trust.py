"""Attacks on signed team documents: a removed admin forking the configuration chain from a
configuration older than the pin, and signer names that would put control characters in
warnings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bsr_team_cache.oci.base import sha256_digest
from bsr_team_cache.oci.documents import canonical_json, push_document
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.config import (
    CONFIG_TAG,
    TEAM_CONFIG_TYPE,
    TeamConfig,
    config_repository,
    make_config,
)
from bsr_team_cache.team.trust import (
    ANN_PREVIOUS,
    config_context,
    read_trusted_config,
    update_team_config,
)
from bsr_team_cache.trust.signatures import (
    ANN_SIGNATURE,
    ANN_SIGNED_AT,
    ANN_SIGNER,
    SignatureError,
    parse_signature,
    sign,
)
from tests.trust.conftest import ALICE, CAROL, create_signed_team

REPO = config_repository("t")


def _config_digest(registry: OCILayoutRegistry) -> str:
    found = registry.read_manifest(REPO, CONFIG_TAG)
    assert found is not None
    return sha256_digest(found[0])


def _write(registry, store, change, by, key) -> TeamConfig:
    return update_team_config(registry, "t", change, by=by, signing_key=key, store=store)


def test_a_removed_admin_cannot_fork_the_chain_from_before_their_removal(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "registry")
    alice = LocalStore(tmp_path / "alice")
    create_signed_team(registry, alice)
    # alice makes carol an admin, then removes her again.
    with_carol = _write(
        registry,
        alice,
        lambda c: make_config(
            "t",
            members=[*c.members, "carol"],
            roles={**c.roles, "carol": "admin"},
            signing_keys={**c.signing_keys, "carol": CAROL.public_text},
            base=c,
        ),
        "alice",
        ALICE,
    )
    with_carol_digest = _config_digest(registry)
    without_carol = _write(
        registry,
        alice,
        lambda c: make_config("t", members=[m for m in c.members if m != "carol"], base=c),
        "alice",
        ALICE,
    )
    machine = LocalStore(tmp_path / "dan")
    assert read_trusted_config(registry, "t", "", machine, [], env={}).config == without_carol
    # carol still has her key: she signs a newer configuration that names the one in which
    # she was an admin as its predecessor, making herself the only admin.
    forged = replace(
        with_carol,
        members=("carol",),
        roles={"carol": "admin"},
        signing_keys={"carol": CAROL.public_text},
        updated_at=without_carol.updated_at + 60,
        updated_by="carol",
    )
    annotations = {ANN_PREVIOUS: with_carol_digest}
    payload = canonical_json(forged.to_json())
    annotations |= sign(CAROL, "carol", config_context("t"), payload, annotations)
    push_document(registry, REPO, CONFIG_TAG, TEAM_CONFIG_TYPE, forged.to_json(), annotations)

    warnings: list[str] = []
    trusted = read_trusted_config(registry, "t", "", machine, warnings, env={})
    assert trusted.config == without_carol
    assert warnings == [
        f"team configuration at {registry.describe()}/{REPO}:latest not trusted (signed by"
        f" carol, who is not a member of the team; its previous configuration"
        f" {with_carol_digest} is older than the configuration this machine trusts); using the"
        " one this machine trusts (by alice)"
    ]


@pytest.mark.parametrize("member", ["\x1b[2Jalice", "bob\x07", "al\u202eice", "m\x00"])
def test_a_signer_name_with_control_characters_is_malformed(member: str) -> None:
    annotations = {
        ANN_SIGNATURE: "A" * 86 + "==",
        ANN_SIGNER: f"{member}:{'0' * 16}",
        ANN_SIGNED_AT: "1700000000",
    }
    with pytest.raises(SignatureError) as refused:
        parse_signature(annotations)
    assert refused.value.reason == (
        "malformed signature: dev.bsr-team-cache.signer is not <member>:<key id>"
    )
