"""The signing key kept in the state directory, and the tokens it signs."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bsr_team_cache.auth.tokens import Access, SigningKey, issue_token
from bsr_team_cache.errors import ConfigError


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_the_key_is_created_once_with_private_modes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key, created = SigningKey.load_or_create(state, "issuer-x")
    assert created is True
    assert stat.S_IMODE((state / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "cert.pem").stat().st_mode) == 0o644
    again, created_again = SigningKey.load_or_create(state, "issuer-x")
    assert created_again is False
    assert again.certificate_pem() == key.certificate_pem() == (state / "cert.pem").read_bytes()


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    SigningKey.load_or_create(tmp_path, "issuer-x")
    os.chmod(tmp_path / "key.pem", 0o644)
    with pytest.raises(ConfigError) as refused:
        SigningKey.load_or_create(tmp_path, "issuer-x")
    key = tmp_path / "key.pem"
    assert str(refused.value) == (
        f"{key}: the signing key is readable by others (mode 0644); it must be private:"
        f" chmod 600 {key} (a mounted secret: mode 0400)"
    )


def test_a_certificate_of_another_key_is_refused(tmp_path: Path) -> None:
    SigningKey.load_or_create(tmp_path / "one", "x")
    SigningKey.load_or_create(tmp_path / "two", "x")
    (tmp_path / "one" / "cert.pem").write_bytes((tmp_path / "two" / "cert.pem").read_bytes())
    with pytest.raises(ConfigError, match=r"does not match key\.pem"):
        SigningKey.load_or_create(tmp_path / "one", "x")


def test_tokens_carry_the_claims_and_verify_with_the_certificate(tmp_path: Path) -> None:
    key, _ = SigningKey.load_or_create(tmp_path, "issuer-x")
    issued = issue_token(
        key,
        issuer="issuer-x",
        service="registry-y",
        subject="alice",
        access=[Access("repository", "teams/a/config", ("pull", "push"))],
        lifetime=300,
        now=1_700_000_000,
    )
    header_part, claims_part, signature_part = issued.token.split(".")
    header, claims = json.loads(_b64(header_part)), json.loads(_b64(claims_part))
    certificate = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert certificate == x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    assert (header["alg"], header["typ"]) == ("ES256", "JWT")
    assert {k: v for k, v in claims.items() if k != "jti"} == {
        "iss": "issuer-x",
        "sub": "alice",
        "aud": "registry-y",
        "exp": 1_700_000_300,
        "nbf": 1_699_999_990,
        "iat": 1_700_000_000,
        "access": [{"type": "repository", "name": "teams/a/config", "actions": ["pull", "push"]}],
    }
    assert len(claims["jti"]) == 32
    raw = _b64(signature_part)
    signature = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, f"{header_part}.{claims_part}".encode(), ec.ECDSA(hashes.SHA256()))
