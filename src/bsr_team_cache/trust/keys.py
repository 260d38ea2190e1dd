"""A member's keys: the Ed25519 key that signs team documents, and the key pairs ``keys
generate`` writes (signing, plus an encryption pair for encrypted layers).

The signing key is a PEM PKCS#8 private key, read from ``BSR_TEAM_CACHE_SIGNING_KEY_FILE``
(refused when group or others can read it, as ssh refuses such keys) or from
``BSR_TEAM_CACHE_SIGNING_KEY`` (the PEM text, for CI secrets). The team configuration lists
public keys as ``ed25519:<base64 of the raw 32 bytes>``; a key id is a short fingerprint of
them (the first 16 hex digits of their SHA-256), shown by ``keys show`` and used in signatures.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bsr_team_cache._fs import read_private_file
from bsr_team_cache.errors import ConfigError, UsageError

# cryptography is imported where keys are loaded, made or checked: reading an unsigned team's
# configuration (every fetch) needs only key ids, and the library costs ~100 ms to import.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNING_KEY_FILE_ENV = "BSR_TEAM_CACHE_SIGNING_KEY_FILE"
SIGNING_KEY_ENV = "BSR_TEAM_CACHE_SIGNING_KEY"
PUBLIC_KEY_PREFIX = "ed25519:"
KEY_ID_LENGTH = 16  # hex digits: 64 bits, enough to tell a team's few keys apart
_MAX_PEM = 16 * 1024
ENCRYPTION_KINDS = ("ec", "rsa")


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key with what others see of it."""

    private: Ed25519PrivateKey
    source: str  # where it came from, for messages (a path or an environment variable)

    @property
    def public_text(self) -> str:
        return public_key_text(self.private.public_key())

    @property
    def key_id(self) -> str:
        return key_id(self.public_text)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def public_key_text(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """``ed25519:<base64 of the raw 32-byte public key>``, as the team configuration lists it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def _raw_public_key(text: str) -> bytes:
    if not isinstance(text, str) or not text.startswith(PUBLIC_KEY_PREFIX) or len(text) > 100:
        raise ValueError("not an ed25519:<base64> public key")
    raw = base64.b64decode(text[len(PUBLIC_KEY_PREFIX) :], validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return raw


def key_id(public_text: str) -> str:
    """The short fingerprint of an ``ed25519:<base64>`` public key."""
    return hashlib.sha256(_raw_public_key(public_text)).hexdigest()[:KEY_ID_LENGTH]


def load_public_key(public_text: str) -> Ed25519PublicKey:
    """The key of an ``ed25519:<base64>`` text; ValueError if it is not one."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(_raw_public_key(public_text))


def _private_key_from_pem(data: bytes, source: str) -> SigningKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            source, "the signing key is encrypted with a passphrase; give an unencrypted one"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            source, "not a PEM private key (expected '-----BEGIN PRIVATE KEY-----', PKCS#8)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            source,
            "the signing key is not an Ed25519 key; make one with `bsr-team-cache keys generate`",
        )
    return SigningKey(key, source)


def private_key_path(value: str, variable: str, pem_variable: str) -> Path:
    """The key file path that ``variable`` holds. A value that is the key itself, not a path,
    is refused without being shown: messages name the file, and this one is secret."""
    if "-----BEGIN" in value or "\n" in value or len(value) > 4096:
        raise ConfigError(
            variable,
            f"holds a key, not a file path: put the PEM text in {pem_variable} or the key in a"
            " file (mode 600) and its path here",
        )
    return Path(value)


def load_signing_key(env: Mapping[str, str] | None = None) -> SigningKey | None:
    """This member's signing key from the environment; None when none is configured."""
    env = os.environ if env is None else env
    path = env.get(SIGNING_KEY_FILE_ENV, "")
    if path:
        key_file = private_key_path(path, SIGNING_KEY_FILE_ENV, SIGNING_KEY_ENV)
        return _private_key_from_pem(read_private_file(key_file, "signing key", _MAX_PEM), path)
    text = env.get(SIGNING_KEY_ENV, "")
    if text:
        if len(text) > _MAX_PEM:
            raise ConfigError(SIGNING_KEY_ENV, "longer than a PEM key; give the PEM text")
        return _private_key_from_pem(text.encode(), SIGNING_KEY_ENV)
    return None


@dataclass(frozen=True)
class GeneratedKeys:
    signing_private: Path
    signing_public: Path
    encryption_private: Path
    encryption_public: Path
    signing_key_text: str
    signing_key_id: str


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (a private key is never readable by others,
    not even for a moment); an existing file is never overwritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def generate_keys(out: Path, encryption: str = "ec") -> GeneratedKeys:
    """Write ``signing.pem`` (0600) and ``signing.pub.pem``, ``encryption.pem`` (0600) and
    ``encryption.pub.pem`` (EC P-256, or RSA 3072) into ``out``; refuse to overwrite any."""
    if encryption not in ENCRYPTION_KINDS:
        raise UsageError(f"unknown encryption key kind {encryption!r}: choose ec or rsa")
    names = ("signing.pem", "signing.pub.pem", "encryption.pem", "encryption.pub.pem")
    paths = [out / n for n in names]
    taken = [str(p) for p in paths if p.exists()]
    if taken:
        raise UsageError(f"refusing to overwrite existing key files: {', '.join(taken)}")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    signing = Ed25519PrivateKey.generate()
    sealing = (
        ec.generate_private_key(ec.SECP256R1())
        if encryption == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=3072)
    )
    for private, (secret_path, public_path) in (
        (signing, paths[:2]),
        (sealing, paths[2:]),
    ):
        _write_new(
            secret_path,
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        )
        _write_new(
            public_path,
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )
    text = public_key_text(signing)
    return GeneratedKeys(*paths, text, key_id(text))
