"""Signatures of team documents: the round trip, and each refusal with its exact reason."""

from __future__ import annotations

import base64
import hashlib

import pytest

from bsr_team_cache.team.trust import check_signature
from bsr_team_cache.trust.keys import key_id
from bsr_team_cache.trust.signatures import (
    ANN_SIGNATURE,
    ANN_SIGNED_AT,
    ANN_SIGNER,
    SignatureError,
    SigningContext,
    sign,
)
from tests.trust.conftest import ALICE, BOB, MALLORY, MIA, signed_team

LABELS = "application/vnd.buf.module.labels.v1"
PETS = SigningContext(LABELS, "teams/t/labels/buf.build/acme/pets", "labels")
PAYLOAD = b'{"labels":{"main":{"commit":"' + b"a" * 32 + b'","resolved_at":1700000000}}}'
NOW = 1700000000.0


def test_key_ids_are_the_start_of_the_public_keys_sha256() -> None:
    # Ed25519 public key of the seed 0x02 * 32, and the first 16 hex digits of its SHA-256.
    assert MIA.public_text == "ed25519:gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q="
    raw = base64.b64decode(MIA.public_text.removeprefix("ed25519:"))
    assert MIA.key_id == key_id(MIA.public_text) == hashlib.sha256(raw).hexdigest()[:16]
    assert MIA.key_id == "6a3803d5f059902a"


def test_round_trip() -> None:
    annotations = sign(MIA, "mia", PETS, PAYLOAD, now=NOW)
    assert sorted(annotations) == [ANN_SIGNATURE, ANN_SIGNED_AT, ANN_SIGNER]
    assert annotations[ANN_SIGNER] == f"mia:{MIA.key_id}"
    assert annotations[ANN_SIGNED_AT] == "1700000000"
    assert len(base64.b64decode(annotations[ANN_SIGNATURE])) == 64
    assert check_signature(signed_team(), annotations, PAYLOAD, PETS, "maintainer") == "mia"


def _refusal(annotations: dict[str, str], payload: bytes = PAYLOAD, context=PETS) -> str:
    with pytest.raises(SignatureError) as raised:
        check_signature(signed_team(), annotations, payload, context, "maintainer")
    return raised.value.reason


def test_a_tampered_payload_is_refused() -> None:
    annotations = sign(MIA, "mia", PETS, PAYLOAD, now=NOW)
    tampered = PAYLOAD.replace(b"a" * 32, b"b" * 32)
    assert _refusal(annotations, tampered) == (
        "the signature by mia does not match (a changed document, or one signed for another"
        " place than teams/t/labels/buf.build/acme/pets:labels)"
    )


def test_an_index_of_one_module_replayed_at_another_is_refused() -> None:
    annotations = sign(MIA, "mia", PETS, PAYLOAD, now=NOW)
    orders = SigningContext(LABELS, "teams/t/labels/buf.build/acme/orders", "labels")
    assert _refusal(annotations, context=orders) == (
        "the signature by mia does not match (a changed document, or one signed for another"
        " place than teams/t/labels/buf.build/acme/orders:labels)"
    )


def test_a_team_configuration_replayed_at_another_team_is_refused() -> None:
    config_type = "application/vnd.bsr-team-cache.team.v1"
    team_a = SigningContext(config_type, "teams/a/config", "latest")
    team_b = SigningContext(config_type, "teams/b/config", "latest")
    annotations = sign(ALICE, "alice", team_a, PAYLOAD, now=NOW)
    with pytest.raises(SignatureError) as raised:
        check_signature(signed_team("b"), annotations, PAYLOAD, team_b, "admin")
    assert raised.value.reason == (
        "the signature by alice does not match (a changed document, or one signed for another"
        " place than teams/b/config:latest)"
    )


def test_a_covered_annotation_changed_is_refused() -> None:
    shared = {"dev.bsr-team-cache.readers": "b"}
    annotations = {**shared, **sign(MIA, "mia", PETS, PAYLOAD, shared, now=NOW)}
    assert check_signature(signed_team(), annotations, PAYLOAD, PETS, "maintainer") == "mia"
    widened = {**annotations, "dev.bsr-team-cache.readers": "b,evil"}
    assert _refusal(widened).startswith("the signature by mia does not match")


def test_a_signature_by_another_key_than_the_members_is_refused() -> None:
    # Mallory signs with his own key and claims to be mia, naming his key id ...
    claimed = sign(MALLORY, "mia", PETS, PAYLOAD, now=NOW)
    assert _refusal(claimed) == (
        f"signed by mia with key {MALLORY.key_id}, which is not their registered key {MIA.key_id}"
    )
    # ... or naming mia's key id.
    forged = {**claimed, ANN_SIGNER: f"mia:{MIA.key_id}"}
    assert _refusal(forged).startswith("the signature by mia does not match")


def test_a_member_without_the_maintainer_role_is_refused() -> None:
    annotations = sign(BOB, "bob", PETS, PAYLOAD, now=NOW)
    assert _refusal(annotations) == "signed by bob (member), not by a maintainer or admin"


def test_someone_not_in_the_team_is_refused() -> None:
    annotations = sign(MALLORY, "mallory", PETS, PAYLOAD, now=NOW)
    assert _refusal(annotations) == "signed by mallory, who is not a member of the team"


def _signature(**changes: str) -> dict[str, str]:
    annotations = sign(MIA, "mia", PETS, PAYLOAD, now=NOW)
    annotations.update(changes)
    return {k: v for k, v in annotations.items() if v != "<drop>"}


@pytest.mark.parametrize(
    ("annotations", "reason"),
    [
        ({}, "unsigned"),
        ({"org.opencontainers.image.title": "x"}, "unsigned"),
        (
            _signature(**{ANN_SIGNED_AT: "<drop>"}),
            "malformed signature: dev.bsr-team-cache.signed-at missing",
        ),
        (
            _signature(**{ANN_SIGNATURE: "AAAA"}),
            "malformed signature: dev.bsr-team-cache.signature is not 64 bytes of base64",
        ),
        (
            _signature(**{ANN_SIGNATURE: "A" * 10**6}),
            "malformed signature: dev.bsr-team-cache.signature is not 64 bytes of base64",
        ),
        (
            _signature(**{ANN_SIGNATURE: "!" * 86 + "=="}),
            "malformed signature: dev.bsr-team-cache.signature is not 64 bytes of base64",
        ),
        (
            _signature(**{ANN_SIGNER: "mia"}),
            "malformed signature: dev.bsr-team-cache.signer is not <member>:<key id>",
        ),
        (
            _signature(**{ANN_SIGNER: "mia:" + "0" * 64}),
            "malformed signature: dev.bsr-team-cache.signer is not <member>:<key id>",
        ),
        (
            _signature(**{ANN_SIGNED_AT: "-1"}),
            "malformed signature: dev.bsr-team-cache.signed-at is not unix seconds",
        ),
        (
            _signature(**{ANN_SIGNED_AT: "9" * 400}),
            "malformed signature: dev.bsr-team-cache.signed-at is not unix seconds",
        ),
        (
            _signature(**{ANN_SIGNED_AT: "1700000001"}),
            "the signature by mia does not match (a changed document, or one signed for"
            " another place than teams/t/labels/buf.build/acme/pets:labels)",
        ),
        (
            _signature(**{f"dev.bsr-team-cache.x{i}": "y" for i in range(17)}),
            "too many or too large dev.bsr-team-cache annotations",
        ),
    ],
)
def test_malformed_annotations_are_refused(annotations: dict[str, str], reason: str) -> None:
    assert _refusal(annotations) == reason
