"""Members' keys: loading the signing key (and refusing an exposed one), ``keys generate`` and
``keys show``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bsr_team_cache.cli.setup import signing_key_text
from bsr_team_cache.errors import ConfigError
from bsr_team_cache.trust.keys import (
    SIGNING_KEY_ENV,
    SIGNING_KEY_FILE_ENV,
    generate_keys,
    load_signing_key,
)
from tests.conftest import run_cli
from tests.trust.conftest import MIA, pem


def test_the_signing_key_from_a_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "mia.pem"
    path.write_text(pem(MIA))
    path.chmod(0o600)
    from_file = load_signing_key({SIGNING_KEY_FILE_ENV: str(path)})
    assert from_file is not None and from_file.public_text == MIA.public_text
    from_text = load_signing_key({SIGNING_KEY_ENV: pem(MIA)})
    assert from_text is not None and from_text.key_id == MIA.key_id
    assert load_signing_key({}) is None


def test_a_signing_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mia.pem"
    path.write_text(pem(MIA))
    path.chmod(0o640)
    with pytest.raises(ConfigError) as refused:
        load_signing_key({SIGNING_KEY_FILE_ENV: str(path)})
    assert str(refused.value) == (
        f"{path}: the signing key is readable by others (mode 0640); it must be private:"
        f" chmod 600 {path} (a mounted secret: mode 0400)"
    )


def test_a_key_that_is_not_ed25519_is_refused(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError) as refused:
        load_signing_key({SIGNING_KEY_ENV: other.decode()})
    assert str(refused.value) == (
        f"{SIGNING_KEY_ENV}: the signing key is not an Ed25519 key; make one with"
        " `bsr-team-cache keys generate`"
    )
    with pytest.raises(ConfigError) as garbage:
        load_signing_key({SIGNING_KEY_ENV: "not a key"})
    assert str(garbage.value) == (
        f"{SIGNING_KEY_ENV}: not a PEM private key (expected '-----BEGIN PRIVATE KEY-----', PKCS#8)"
    )


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_generated_keys_are_what_setup_takes(tmp_path: Path, kind: str) -> None:
    made = generate_keys(tmp_path / "keys", kind)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in sorted((tmp_path / "keys").iterdir())}
    assert modes == {
        "encryption.pem": 0o600,
        "encryption.pub.pem": 0o644 & ~_umask(),
        "signing.pem": 0o600,
        "signing.pub.pem": 0o644 & ~_umask(),
    }
    assert signing_key_text(str(made.signing_public), "--signing-key") == made.signing_key_text
    public = serialization.load_pem_public_key(made.encryption_public.read_bytes())
    if kind == "ec":
        assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    else:
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 3072
    loaded = load_signing_key({SIGNING_KEY_FILE_ENV: str(made.signing_private)})
    assert loaded is not None and loaded.public_text == made.signing_key_text


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_keys_commands(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    generated = run_cli("keys", "generate", "--out", str(out))
    assert generated.returncode == 0, generated.stderr
    signing = load_signing_key({SIGNING_KEY_FILE_ENV: str(out / "signing.pem")})
    assert signing is not None
    assert f"export {SIGNING_KEY_FILE_ENV}={out / 'signing.pem'}" in generated.stdout
    assert f"export BSR_TEAM_CACHE_PRIVATE_KEY_FILE={out / 'encryption.pem'}" in generated.stdout
    again = run_cli("keys", "generate", "--out", str(out))
    assert again.returncode == 2
    assert again.stderr.startswith("bsr-team-cache: error: refusing to overwrite existing key")

    shown = run_cli("keys", "show", env={SIGNING_KEY_FILE_ENV: str(out / "signing.pem")})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        f"signing key:    {signing.public_text} (key id {signing.key_id})",
        f"  from {out / 'signing.pem'}",
    ]
    assert "PRIVATE" not in shown.stdout + shown.stderr
