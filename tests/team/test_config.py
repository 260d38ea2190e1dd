"""Team configuration: roles and member keys, read from what the registry holds."""

from __future__ import annotations

import json

import pytest

from bsr_team_cache.errors import InvalidContentError
from bsr_team_cache.team.config import config_from_json, make_config, role_at_least

KEY = "ed25519:" + "A" * 42 + "E="
PEM = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"


def test_roles_and_keys_round_trip_and_default_to_member() -> None:
    config = make_config(
        "t",
        members=["alice", "bob", "carol"],
        roles={"alice": "admin", "bob": "member", "dave": "maintainer"},
        signing_keys={"alice": KEY, "dave": KEY},
        encryption_keys={"carol": PEM},
        encrypt=True,
    )
    # bob's role is the default (not stored); dave is not a member, so his role and key go
    assert config.roles == {"alice": "admin"}
    assert config.signing_keys == {"alice": KEY}
    assert [config.role_of(m) for m in ("alice", "bob", "carol", "dave")] == [
        "admin", "member", "member", None,
    ]  # fmt: skip
    assert config.members_with_role("maintainer") == ("alice",)
    assert config.members_with_role("reader") == ("alice", "bob", "carol")
    data = config.to_json()
    assert (data["roles"], data["encryption_keys"], data["encrypt"]) == (
        {"alice": "admin"}, {"carol": PEM}, True,
    )  # fmt: skip
    assert config_from_json(json.loads(json.dumps(data)), "here") == config
    assert role_at_least("maintainer", "member") and not role_at_least("reader", "member")
    assert not role_at_least(None, "reader")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("roles", {"alice": "owner"}, "unknown role 'owner'"),
        ("roles", ["alice"], "roles is not an object of strings"),
        ("signing_keys", {"alice": "rsa:abc"}, "invalid signing key 'rsa:abc'"),
        ("encryption_keys", {"alice": "not pem"}, "invalid encryption key"),
        ("encrypt", "yes", "encrypt is not true or false"),
    ],
)
def test_malformed_roles_and_keys_are_refused(field: str, value: object, message: str) -> None:
    data = {"team": "t", "members": ["alice"], field: value}
    with pytest.raises(InvalidContentError) as refused:
        config_from_json(data, "reg/teams/t/config:latest")
    assert str(refused.value).startswith("reg/teams/t/config:latest: malformed team configuration")
    assert message in str(refused.value)
