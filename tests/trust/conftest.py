"""Keys and configurations of a signed team for the trust tests: alice (admin), mia
(maintainer), bob (member), each with a fixed Ed25519 key so that key ids are known."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.config import TeamConfig, make_config
from bsr_team_cache.team.trust import update_team_config
from bsr_team_cache.trust.keys import SigningKey


def fixed_key(seed: int, name: str) -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32), name)


ALICE = fixed_key(1, "alice")
MIA = fixed_key(2, "mia")
BOB = fixed_key(3, "bob")
CAROL = fixed_key(4, "carol")
MALLORY = fixed_key(5, "mallory")


def pem(key: SigningKey) -> str:
    return key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def signed_team(team: str = "t", base: TeamConfig | None = None) -> TeamConfig:
    return make_config(
        team,
        members=["alice", "mia", "bob"],
        roles={"alice": "admin", "mia": "maintainer"},
        signing_keys={m: k.public_text for m, k in (("alice", ALICE), ("mia", MIA), ("bob", BOB))},
        base=base,
    )


def create_signed_team(
    registry: RegistryBackend, store: LocalStore, namespace: str = ""
) -> TeamConfig:
    """Team t's signed configuration, written by alice (its admin) from her machine ``store``."""
    return update_team_config(
        registry,
        "t",
        lambda base: signed_team(base=base),
        by="alice",
        namespace=namespace,
        signing_key=ALICE,
        store=store,
    )
