"""Registry tokens the way CNCF Distribution's ``auth: token`` verifies them: a JWT signed
with ES256 whose ``x5c`` header carries the signing certificate, which must be (or chain to) a
certificate of the registry's ``rootcertbundle``; claims ``iss`` (the registry's ``issuer``),
``sub``, ``aud`` (its ``service``), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access`` (what
the bearer may do: ``[{"type": "repository", "name": …, "actions": ["pull", "push"]}]``).

The auth server keeps its key in its state directory: ``key.pem`` (PKCS#8, mode 0600) and
``cert.pem`` (self-signed, the file the registry's ``rootcertbundle`` names). Rotating the key
means deleting both, restarting the server and giving the registry the new ``cert.pem``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from bsr_team_cache._fs import atomic_write, read_private_file, read_regular_file
from bsr_team_cache.errors import BSRTeamCacheError, ConfigError

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
CERT_DAYS = 3650  # the registry trusts this certificate until the key is rotated
# Tokens are accepted a little before they were issued: clocks of the two hosts differ.
CLOCK_SKEW = 10

_MAX_KEY_BYTES = 64 << 10  # a PEM key or certificate is a few KiB: more is not one


def _certificate_bytes(path: Path) -> bytes:
    try:
        return read_regular_file(path, _MAX_KEY_BYTES, follow_links=True)
    except OSError as exc:
        raise ConfigError(path, f"cannot read the certificate ({exc.strerror or exc})") from None
    except BSRTeamCacheError:  # not a regular file, or too large
        raise ConfigError(path, "not a certificate file (at most 64 KiB)") from None


@dataclass(frozen=True)
class Access:
    """One entry of a token's ``access`` claim."""

    type: str  # "repository" or "registry"
    name: str  # a repository name, or "catalog"
    actions: tuple[str, ...]

    def to_json(self) -> dict:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """An ES256 key and the self-signed certificate that names it to the registry."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        if certificate.public_key().public_numbers() != key.public_key().public_numbers():
            raise ValueError("the certificate is not the key's")
        self._key = key
        self.certificate = certificate
        self._x5c = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()

    @classmethod
    def generate(cls, common_name: str, days: int = CERT_DAYS) -> SigningKey:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @classmethod
    def load_or_create(cls, state_dir: Path, common_name: str) -> tuple[SigningKey, bool]:
        """The key of ``state_dir`` (created there on first use); True if it was created."""
        key_path, cert_path = state_dir / KEY_FILE, state_dir / CERT_FILE
        if key_path.exists() or cert_path.exists():
            return cls._load(key_path, cert_path), False
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        created = cls.generate(common_name)
        pem = created._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write(key_path, pem)  # mkstemp creates the temp file 0600, rename keeps it
        os.chmod(key_path, 0o600)
        atomic_write(cert_path, created.certificate.public_bytes(serialization.Encoding.PEM))
        os.chmod(cert_path, 0o644)  # public: the registry's host reads it
        return created, True

    @classmethod
    def _load(cls, key_path: Path, cert_path: Path) -> SigningKey:
        for path in (key_path, cert_path):
            if not path.is_file():
                raise ConfigError(
                    path, "missing", hint="key.pem and cert.pem go together: restore or delete both"
                )
        pem = read_private_file(key_path, "signing key", _MAX_KEY_BYTES)
        try:
            key = serialization.load_pem_private_key(pem, password=None)
            certificate = x509.load_pem_x509_certificate(_certificate_bytes(cert_path))
        except ValueError as exc:
            raise ConfigError(key_path.parent, f"unreadable key or certificate ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ConfigError(key_path, "not an ECDSA P-256 key (ES256 needs one)")
        try:
            return cls(key, certificate)
        except ValueError:
            raise ConfigError(cert_path, "the certificate does not match key.pem") from None

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign_jwt(self, claims: dict) -> str:
        header = {"alg": "ES256", "typ": "JWT", "x5c": [self._x5c]}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JWS wants r || s, 32 bytes each
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass(frozen=True)
class IssuedToken:
    token: str
    issued_at: int  # seconds since the epoch
    expires_in: int  # seconds


def issue_token(
    key: SigningKey,
    *,
    issuer: str,
    service: str,
    subject: str,
    access: Iterable[Access],
    lifetime: int,
    now: float | None = None,
) -> IssuedToken:
    """A signed token granting ``access`` to ``subject`` for ``lifetime`` seconds."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": service,
        "exp": issued + lifetime,
        "nbf": issued - CLOCK_SKEW,
        "iat": issued,
        "jti": uuid.uuid4().hex,
        "access": [a.to_json() for a in access],
    }
    return IssuedToken(key.sign_jwt(claims), issued, lifetime)
