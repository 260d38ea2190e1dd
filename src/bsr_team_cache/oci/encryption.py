"""Encrypted layers as the OCI image-encryption scheme of containers/ocicrypt makes them, so
that skopeo, podman and containerd's imgcrypt read ours and we read theirs.

A layer is encrypted once, with a random 256-bit key, by AES-256-CTR then HMAC-SHA256 over the
ciphertext (``AES_256_CTR_HMAC_SHA256``). The descriptor says so:

- ``mediaType``: the plain layer's media type + ``+encrypted``;
- ``org.opencontainers.image.enc.pubopts``: base64 of the public options, JSON
  ``{"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": <base64>, "cipheroptions": {}}``;
- ``org.opencontainers.image.enc.keys.jwe``: base64 of a JWE (JSON serialization, one recipient
  per public key, content ``A256GCM``, key wrap ``RSA-OAEP`` for RSA keys and
  ``ECDH-ES+A256KW`` for EC keys) whose payload is the private options, JSON
  ``{"symkey": <base64>, "digest": <sha256 of the plain layer>, "cipheroptions": {"nonce":
  <base64>}}``. (ocicrypt joins several JWEs with commas when recipients are added later.)

Membership changes rewrap: a new JWE of the same private options for the new recipients; the
layer bytes (and their digest) do not change. Everything read here comes from a registry that
any member can write: sizes are bounded before work, the HMAC is checked before a byte is
decrypted and the plain digest after, and every failure is an InvalidContentError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from bsr_team_cache._fs import read_private_file, read_regular_file
from bsr_team_cache.errors import (
    ConfigError,
    ContentTooLargeError,
    InvalidContentError,
    KeyUnavailableError,
)
from bsr_team_cache.limits import limits
from bsr_team_cache.oci.base import is_oci_digest, sha256_digest
from bsr_team_cache.oci.compression import ENCRYPTED_SUFFIX, is_encrypted, plain_media_type
from bsr_team_cache.trust.keys import private_key_path

ANN_KEYS_JWE = "org.opencontainers.image.enc.keys.jwe"
ANN_PUBOPTS = "org.opencontainers.image.enc.pubopts"
CIPHER = "AES_256_CTR_HMAC_SHA256"
# The JWE annotation grows by ~350 bytes (RSA-2048) to ~1 KB (RSA-4096) per recipient: a
# thousand members fit, and nothing read from a registry makes us parse more.
MAX_ANNOTATION_BYTES = 1 << 20
MAX_RECIPIENTS = 1000
MAX_UNWRAP_ATTEMPTS = 256  # recipient entries tried per private key (each a key operation)
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
ENV_PRIVATE_KEY_FILE = "BSR_TEAM_CACHE_PRIVATE_KEY_FILE"
ENV_PRIVATE_KEY = "BSR_TEAM_CACHE_PRIVATE_KEY"
MAX_KEY_FILE_BYTES = 64 << 10

_KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 16  # one AES block: CTR's initial counter
_HMAC_BYTES = 32
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
_KEY_WRAP_BITS = {"ECDH-ES+A128KW": 128, "ECDH-ES+A192KW": 192, "ECDH-ES+A256KW": 256}
_RSA_OAEP = {"RSA-OAEP": hashes.SHA1, "RSA-OAEP-256": hashes.SHA256}
_CONTENT_KEY_BYTES = {"A128GCM": 16, "A192GCM": 24, "A256GCM": 32}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
KeySource = bytes | str | Path


@dataclass(frozen=True)
class EncryptedLayer:
    """An encrypted layer: its bytes, its media type and the annotations its descriptor
    carries (the wrapped keys and the public options)."""

    data: bytes
    media_type: str
    annotations: dict[str, str]

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)


# --- keys ------------------------------------------------------------------------------------


def _key_bytes(source: KeySource, what: str, name: str | None) -> tuple[bytes, str]:
    """(PEM or DER bytes, a name for messages: ``name``, else the file) of a file path or
    of the key itself. A private key's file is read as every private key file is
    (_fs.read_private_file); a public key's as a bounded regular file."""
    if isinstance(source, bytes):
        return source, name or f"<{what}>"
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode(), name or f"<{what}>"
    path = Path(source)
    if what == "private key":
        return read_private_file(path, what, MAX_KEY_FILE_BYTES), str(path)
    try:
        return read_regular_file(path, MAX_KEY_FILE_BYTES, follow_links=True), str(path)
    except OSError as exc:
        raise ConfigError(path, f"cannot read the {what} ({exc.strerror or exc})") from None
    except ContentTooLargeError:  # (an InvalidContentError too: first)
        raise ConfigError(
            path, f"is larger than {MAX_KEY_FILE_BYTES} bytes: not a {what}"
        ) from None
    except InvalidContentError:
        raise ConfigError(path, f"the {what} is not a regular file") from None


def _checked_key(key: Any, where: str, what: str) -> Any:
    """RSA of 2048..8192 bits or EC on P-256/P-384/P-521: what ocicrypt's JWE wrapper uses."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise ConfigError(
                where, f"RSA {what} of {key.key_size} bits (use {MIN_RSA_BITS} to {MAX_RSA_BITS})"
            )
        return key
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if _curve_name(key.curve) is None:
            raise ConfigError(where, f"EC {what} on {key.curve.name} (use P-256, P-384 or P-521)")
        return key
    raise ConfigError(where, f"unsupported {what} type (use an RSA or EC P-256/P-384/P-521 key)")


def _curve_name(curve: ec.EllipticCurve) -> str | None:
    return next((name for name, kind in _CURVES.items() if isinstance(curve, kind)), None)


def load_private_key(source: KeySource | PrivateKey, *, name: str | None = None) -> PrivateKey:
    """A private key from a PEM/DER file path or the PEM/DER bytes (PKCS#8, PKCS#1, SEC1).
    Messages name the file (or ``name``), never the key's content."""
    what = "private key"
    if isinstance(source, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return _checked_key(source, name or "<private key>", what)
    data, where = _key_bytes(source, what, name)
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        key = loader(data, password=None)
    except TypeError:
        raise ConfigError(
            where, f"the {what} is protected by a passphrase: export it without one"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(where, f"not a PEM or DER {what}") from None
    return _checked_key(key, where, what)


def load_public_key(source: KeySource | PublicKey, *, name: str | None = None) -> PublicKey:
    """A public key from a PEM/DER file path or bytes (SubjectPublicKeyInfo)."""
    what = "public key"
    if isinstance(source, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        source = source.public_key()
    if isinstance(source, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return _checked_key(source, name or "<public key>", what)
    data, where = _key_bytes(source, what, name)
    loader = (
        serialization.load_pem_public_key
        if b"-----BEGIN" in data
        else serialization.load_der_public_key
    )
    try:
        key = loader(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(where, f"not a PEM or DER {what}") from None
    return _checked_key(key, where, what)


def generate_private_key(kind: str = "ec", rsa_bits: int = 3072) -> PrivateKey:
    """A new key pair for encryption: ``"ec"`` (P-256) or ``"rsa"`` (``rsa_bits``)."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        if not MIN_RSA_BITS <= rsa_bits <= MAX_RSA_BITS:
            raise ValueError(f"RSA keys of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"unknown key kind {kind!r} (expected 'ec' or 'rsa')")


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (what skopeo's ``--decryption-key`` reads)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_of(key: PrivateKey | PublicKey) -> PublicKey:
    return key.public_key() if hasattr(key, "private_bytes") else key  # type: ignore[union-attr]


def public_key_pem(key: PrivateKey | PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM (what skopeo's ``--encryption-key jwe:`` reads)."""
    return _public_of(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_keys_from_env(env: Mapping[str, str]) -> list[PrivateKey]:
    """This member's private keys: the file named by BSR_TEAM_CACHE_PRIVATE_KEY_FILE and/or
    the PEM in BSR_TEAM_CACHE_PRIVATE_KEY (empty list if neither is set)."""
    keys = []
    path = env.get(ENV_PRIVATE_KEY_FILE, "").strip()
    if path:
        key_file = private_key_path(path, ENV_PRIVATE_KEY_FILE, ENV_PRIVATE_KEY)
        key_file = key_file.expanduser()
        data = read_private_file(key_file, "private key", MAX_KEY_FILE_BYTES)
        keys.append(load_private_key(data, name=str(key_file)))
    pem = env.get(ENV_PRIVATE_KEY, "").strip()
    if pem:
        if not pem.startswith("-----BEGIN"):
            raise ConfigError(ENV_PRIVATE_KEY, "is not a PEM private key ('-----BEGIN ...')")
        keys.append(load_private_key(pem.encode(), name=ENV_PRIVATE_KEY))
    return keys


def key_fingerprint(key: PrivateKey | PublicKey) -> str:
    """sha256 of the public key's DER (SubjectPublicKeyInfo): names a key in messages."""
    der = _public_of(key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return sha256_digest(der)


# --- small codecs ----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: object, what: str, where: str) -> bytes:
    if not isinstance(text, str) or len(text) > MAX_ANNOTATION_BYTES:
        raise InvalidContentError(f"{where}: JWE {what} is not a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidContentError(f"{where}: JWE {what} is not base64url") from None


def _unb64(text: object, what: str, where: str) -> bytes:
    """Standard base64 with padding: Go's encoding of []byte in JSON and of annotations."""
    if not isinstance(text, str):
        raise InvalidContentError(f"{where}: {what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidContentError(f"{where}: {what} is not base64") from None


def _json_object(data: bytes, what: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidContentError(f"{where}: {what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidContentError(f"{where}: {what} is not a JSON object")
    return value


def _go_json(value: object) -> bytes:
    """Compact JSON in field order, as Go's encoding/json writes the ocicrypt structs."""
    return json.dumps(value, separators=(",", ":")).encode()


# --- the layer cipher: AES-256-CTR, then HMAC-SHA256 of the ciphertext -------------------------


def _ctr(key: bytes, nonce: bytes, data: bytes) -> bytes:
    # The 16-byte nonce is the whole initial counter block, incremented as one 128-bit
    # big-endian number: Go's cipher.NewCTR and cryptography's CTR agree.
    cipher = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    return cipher.update(data) + cipher.finalize()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


@dataclass(frozen=True)
class _PrivateOptions:
    symkey: bytes
    nonce: bytes
    digest: str  # sha256 of the plain layer

    def to_json(self) -> bytes:
        return _go_json(
            {
                "symkey": base64.b64encode(self.symkey).decode(),
                "digest": self.digest,
                "cipheroptions": {"nonce": base64.b64encode(self.nonce).decode()},
            }
        )


def _private_options(payload: bytes, where: str) -> _PrivateOptions:
    fields = _json_object(payload, "the wrapped layer options", where)
    symkey = _unb64(fields.get("symkey"), "symkey", where)
    options = fields.get("cipheroptions")
    if not isinstance(options, dict) or set(options) != {"nonce"}:
        raise InvalidContentError(f"{where}: wrapped cipher options must hold just a nonce")
    nonce = _unb64(options["nonce"], "nonce", where)
    digest = fields.get("digest")
    if len(symkey) != _KEY_BYTES or len(nonce) != _NONCE_BYTES or not is_oci_digest(digest):
        raise InvalidContentError(
            f"{where}: wrapped layer options need a 32-byte key, a 16-byte nonce and a sha256"
            " digest"
        )
    return _PrivateOptions(symkey, nonce, digest)


def _public_options_json(mac: bytes) -> bytes:
    return _go_json({"cipher": CIPHER, "hmac": base64.b64encode(mac).decode(), "cipheroptions": {}})


def _public_hmac(annotations: Mapping[str, str], where: str) -> bytes:
    """The HMAC from the public options; any cipher but AES_256_CTR_HMAC_SHA256 is refused."""
    encoded = annotations.get(ANN_PUBOPTS)
    if not encoded:
        raise InvalidContentError(f"{where}: encrypted layer without {ANN_PUBOPTS}")
    fields = _json_object(_unb64(encoded, ANN_PUBOPTS, where), ANN_PUBOPTS, where)
    if fields.get("cipher") != CIPHER:
        raise InvalidContentError(
            f"{where}: unsupported layer cipher {str(fields.get('cipher'))[:60]!r}"
            f" (expected {CIPHER})"
        )
    # ocicrypt would take a nonce from here before the wrapped one: nothing may be here.
    if fields.get("cipheroptions") not in (None, {}):
        raise InvalidContentError(f"{where}: unexpected public cipher options")
    mac = _unb64(fields.get("hmac"), "pubopts hmac", where)
    if len(mac) != _HMAC_BYTES:
        raise InvalidContentError(f"{where}: the layer HMAC is not 32 bytes")
    return mac


# --- JWE (RFC 7516 JSON serialization), as go-jose writes and reads it ------------------------


def _concat_kdf(shared: bytes, alg: str, bits: int) -> bytes:
    # RFC 7518 4.6.2: AlgorithmID, PartyUInfo, PartyVInfo (empty, as go-jose), SuppPubInfo.
    def prefixed(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    other = prefixed(alg.encode()) + prefixed(b"") + prefixed(b"") + struct.pack(">I", bits)
    return ConcatKDFHash(hashes.SHA256(), bits // 8, other).derive(shared)


def _coordinate_bytes(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def _epk(public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public.public_numbers()
    size = _coordinate_bytes(public.curve)
    return {
        "kty": "EC",
        "crv": _curve_name(public.curve) or "",
        "x": _b64url(numbers.x.to_bytes(size, "big")),
        "y": _b64url(numbers.y.to_bytes(size, "big")),
    }


def _wrap_for(recipient: PublicKey, cek: bytes) -> dict[str, Any]:
    """One recipient entry: the content key wrapped for this public key."""
    if isinstance(recipient, rsa.RSAPublicKey):
        wrapped = recipient.encrypt(
            cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        )
        return {"header": {"alg": "RSA-OAEP"}, "encrypted_key": _b64url(wrapped)}
    ephemeral = ec.generate_private_key(recipient.curve)
    kek = _concat_kdf(ephemeral.exchange(ec.ECDH(), recipient), "ECDH-ES+A256KW", 256)
    return {
        "header": {"alg": "ECDH-ES+A256KW", "epk": _epk(ephemeral.public_key())},
        "encrypted_key": _b64url(aes_key_wrap(kek, cek)),
    }


def _jwe_encrypt(payload: bytes, recipients: Sequence[PublicKey]) -> bytes:
    """General JSON serialization: {"protected": {"enc": "A256GCM"}, "recipients": [...], iv,
    ciphertext, tag}."""
    cek = os.urandom(32)
    protected = _b64url(_go_json({"enc": "A256GCM"}))
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, payload, protected.encode())
    return _go_json(
        {
            "protected": protected,
            "recipients": [_wrap_for(r, cek) for r in recipients],
            "iv": _b64url(iv),
            "ciphertext": _b64url(sealed[:-16]),
            "tag": _b64url(sealed[-16:]),
        }
    )


def _header(value: object, what: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidContentError(f"{where}: JWE {what} is not a JSON object")
    return value


@dataclass(frozen=True)
class _ParsedJWE:
    recipients: list[tuple[dict[str, Any], bytes]]  # (merged header, encrypted key)
    enc: str
    iv: bytes
    ciphertext: bytes
    tag: bytes
    aad: bytes


def _parse_jwe(data: bytes, where: str) -> _ParsedJWE:
    """A JWE in JSON serialization (general or flattened), its headers checked: disjoint
    header sets, a GCM content cipher, no compression and no critical extensions."""
    jwe = _json_object(data, "JWE", where)
    protected_b64 = jwe.get("protected", "")
    protected = (
        _json_object(_unb64url(protected_b64, "protected header", where), "JWE header", where)
        if protected_b64
        else {}
    )
    shared = _header(jwe.get("unprotected"), "unprotected header", where)
    if "recipients" in jwe:
        entries = jwe["recipients"]
        if not isinstance(entries, list) or not entries:
            raise InvalidContentError(f"{where}: JWE recipients is not a non-empty list")
    else:  # flattened: one recipient at the top level
        entries = [{"header": jwe.get("header"), "encrypted_key": jwe.get("encrypted_key", "")}]
    if len(entries) > MAX_RECIPIENTS:
        raise ContentTooLargeError(f"{where}: JWE has more than {MAX_RECIPIENTS} recipients")
    recipients = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidContentError(f"{where}: a JWE recipient is not a JSON object")
        own = _header(entry.get("header"), "recipient header", where)
        if set(own) & set(protected) or set(own) & set(shared) or set(shared) & set(protected):
            raise InvalidContentError(f"{where}: JWE header parameters repeat")
        merged = {**protected, **shared, **own}
        if "zip" in merged or "crit" in merged:
            raise InvalidContentError(f"{where}: JWE uses compression or critical extensions")
        recipients.append((merged, _unb64url(entry.get("encrypted_key", ""), "key", where)))
    encs = {str(h.get("enc")) for h, _ in recipients}
    if len(encs) != 1 or next(iter(encs)) not in _CONTENT_KEY_BYTES:
        raise InvalidContentError(
            f"{where}: unsupported JWE content encryption {sorted(encs)!r} (expected A256GCM)"
        )
    aad = protected_b64.encode() if isinstance(protected_b64, str) else b""
    if "aad" in jwe:
        _unb64url(jwe["aad"], "aad", where)
        aad += b"." + str(jwe["aad"]).encode()
    iv = _unb64url(jwe.get("iv"), "iv", where)
    tag = _unb64url(jwe.get("tag"), "tag", where)
    if len(iv) != 12 or len(tag) != 16:
        raise InvalidContentError(f"{where}: JWE iv or tag has the wrong length for AES-GCM")
    return _ParsedJWE(
        recipients,
        encs.pop(),
        iv,
        _unb64url(jwe.get("ciphertext"), "ciphertext", where),
        tag,
        aad,
    )


def _epk_public(value: object, curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey | None:
    """The sender's ephemeral key if it is a valid point on ``curve``; None otherwise (then
    the entry is for someone else, or broken)."""
    if not isinstance(value, dict) or value.get("kty") != "EC":
        return None
    if value.get("crv") != _curve_name(curve):
        return None
    size = _coordinate_bytes(curve)
    try:
        x, y = (_unb64url(value.get(c), "epk", "") for c in ("x", "y"))
        if not (0 < len(x) <= size and 0 < len(y) <= size):
            return None
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
        )
        return numbers.public_key()
    except (InvalidContentError, ValueError):
        return None


def _unwrap_content_key(key: PrivateKey, header: dict[str, Any], wrapped: bytes) -> bytes | None:
    """The content key if this entry is wrapped for ``key`` (None if not)."""
    alg = header.get("alg")
    if isinstance(key, rsa.RSAPrivateKey):
        if alg not in _RSA_OAEP or len(wrapped) != (key.key_size + 7) // 8:
            return None
        digest = _RSA_OAEP[alg]
        try:
            return key.decrypt(
                wrapped, padding.OAEP(mgf=padding.MGF1(digest()), algorithm=digest(), label=None)
            )
        except ValueError:
            return None
    if alg not in _KEY_WRAP_BITS:
        return None
    sender = _epk_public(header.get("epk"), key.curve)
    if sender is None:
        return None
    kek = _concat_kdf(key.exchange(ec.ECDH(), sender), alg, _KEY_WRAP_BITS[alg])
    try:
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        return None


def _jwe_decrypt(jwe: _ParsedJWE, keys: Sequence[PrivateKey], where: str) -> bytes | None:
    """The payload, if one of ``keys`` is a recipient; None if none is. An entry that unwraps
    with our key but whose content key does not authenticate is skipped (anyone holding the
    team's public keys can add such an entry in front of ours); if no entry works and one of
    them unwrapped, the JWE was altered. At most MAX_UNWRAP_ATTEMPTS entries are tried per
    key: each is a private-key operation (milliseconds for RSA)."""
    altered = False
    for key in keys:
        for header, wrapped in jwe.recipients[:MAX_UNWRAP_ATTEMPTS]:
            cek = _unwrap_content_key(key, header, wrapped)
            if cek is None or len(cek) != _CONTENT_KEY_BYTES[jwe.enc]:
                altered = altered or cek is not None
                continue
            try:
                return AESGCM(cek).decrypt(jwe.iv, jwe.ciphertext + jwe.tag, jwe.aad)
            except InvalidTag:
                altered = True
    if altered:
        raise InvalidContentError(
            f"{where}: the layer's wrapped keys ({ANN_KEYS_JWE}) were altered: the JWE does not"
            " authenticate"
        )
    return None


# --- annotations -------------------------------------------------------------------------------


def _jwes(annotations: Mapping[str, str], where: str) -> list[_ParsedJWE]:
    """The JWEs of the keys annotation (comma-separated base64, as ocicrypt writes), bounded."""
    value = annotations.get(ANN_KEYS_JWE)
    if not value:
        raise InvalidContentError(
            f"{where}: encrypted layer without {ANN_KEYS_JWE} (only JWE-wrapped keys are read)"
        )
    total = sum(len(k) + len(v) for k, v in annotations.items())
    if total > MAX_ANNOTATION_BYTES:
        raise ContentTooLargeError(
            f"{where}: encryption annotations exceed {MAX_ANNOTATION_BYTES} bytes"
        )
    jwes = [_parse_jwe(_unb64(part, ANN_KEYS_JWE, where), where) for part in value.split(",")]
    if sum(len(j.recipients) for j in jwes) > MAX_RECIPIENTS:
        raise ContentTooLargeError(f"{where}: more than {MAX_RECIPIENTS} recipients")
    return jwes


def _unwrap_options(
    annotations: Mapping[str, str], private_keys: Sequence[PrivateKey], where: str
) -> _PrivateOptions:
    if not private_keys:
        raise KeyUnavailableError(
            f"{where}: the team encrypts its modules: set {ENV_PRIVATE_KEY_FILE} to your"
            " private key file"
        )
    for jwe in _jwes(annotations, where):
        payload = _jwe_decrypt(jwe, private_keys, where)
        if payload is not None:
            return _private_options(payload, where)
    fingerprints = ", ".join(key_fingerprint(k)[:19] for k in private_keys)
    raise KeyUnavailableError(
        f"{where}: not encrypted for your key ({fingerprints}): ask a team admin to add your"
        " public key to the team and rewrap"
    )


def _recipient_keys(recipients: Iterable[KeySource | PublicKey]) -> list[PublicKey]:
    keys: dict[str, PublicKey] = {}
    for recipient in recipients:
        key = load_public_key(recipient)
        keys.setdefault(key_fingerprint(key), key)  # the same key twice: one entry
    if not keys:
        raise ConfigError(
            "encryption_keys",
            "no public key to encrypt for: add the members' encryption keys to the team config",
        )
    if len(keys) > MAX_RECIPIENTS:
        raise ConfigError("encryption_keys", f"more than {MAX_RECIPIENTS} recipients")
    return list(keys.values())


def _keys_annotation(options: _PrivateOptions, recipients: list[PublicKey]) -> str:
    return base64.b64encode(_jwe_encrypt(options.to_json(), recipients)).decode()


# --- the public operations ----------------------------------------------------------------------


def encrypted_media_type(media_type: str) -> str:
    if is_encrypted(media_type):
        raise ValueError(f"{media_type} is already encrypted")
    return media_type + ENCRYPTED_SUFFIX


def encrypt_layer(
    data: bytes, media_type: str, recipients: Iterable[KeySource | PublicKey]
) -> EncryptedLayer:
    """``data`` encrypted with a fresh key, that key wrapped for each recipient (PEM bytes,
    file paths or loaded public keys)."""
    keys = _recipient_keys(recipients)
    if len(data) > limits().max_module_bytes:
        raise ContentTooLargeError(
            f"a layer of {len(data)} bytes exceeds {limits().max_module_bytes}"
        )
    options = _PrivateOptions(os.urandom(_KEY_BYTES), os.urandom(_NONCE_BYTES), sha256_digest(data))
    ciphertext = _ctr(options.symkey, options.nonce, data)
    pubopts = _public_options_json(_hmac(options.symkey, ciphertext))
    return EncryptedLayer(
        ciphertext,
        encrypted_media_type(media_type),
        {
            ANN_KEYS_JWE: _keys_annotation(options, keys),
            ANN_PUBOPTS: base64.b64encode(pubopts).decode(),
        },
    )


def decrypt_layer(
    data: bytes,
    media_type: str,
    annotations: Mapping[str, str],
    private_keys: Sequence[PrivateKey],
    where: str,
    max_bytes: int | None = None,
    *,
    plain_media_types: Sequence[str] | None = None,
) -> bytes:
    """The plain layer: the HMAC is checked before decrypting, the plain digest after.
    ``plain_media_types``, when given, are the only plain types accepted."""
    if not is_encrypted(media_type):
        raise InvalidContentError(f"{where}: {media_type!r} is not an encrypted media type")
    if plain_media_types is not None and plain_media_type(media_type) not in plain_media_types:
        raise InvalidContentError(f"{where}: unexpected encrypted media type {media_type!r}")
    cap = limits().max_module_bytes if max_bytes is None else max_bytes
    if len(data) > cap:
        raise ContentTooLargeError(f"{where}: encrypted layer of {len(data)} bytes exceeds {cap}")
    expected_mac = _public_hmac(annotations, where)
    options = _unwrap_options(annotations, private_keys, where)
    if not hmac.compare_digest(_hmac(options.symkey, data), expected_mac):
        raise InvalidContentError(
            f"{where}: the encrypted layer does not match its HMAC (altered layer or pubopts)"
        )
    plain = _ctr(options.symkey, options.nonce, data)
    if sha256_digest(plain) != options.digest:
        raise InvalidContentError(
            f"{where}: the decrypted layer does not hash to {options.digest} as its wrapped"
            " options say"
        )
    return plain


def rewrap(
    annotations: Mapping[str, str],
    private_keys: PrivateKey | Sequence[PrivateKey],
    new_recipients: Iterable[KeySource | PublicKey],
    where: str = "<layer>",
) -> dict[str, str]:
    """The same layer's annotations with its key wrapped for ``new_recipients`` only (the
    layer bytes and the public options do not change). Someone removed keeps whatever they
    decrypted before; only re-encrypting with a new key (a new upload) revokes that."""
    keys = [private_keys] if not isinstance(private_keys, Sequence) else list(private_keys)
    recipients = _recipient_keys(new_recipients)
    _public_hmac(annotations, where)  # a layer we would not read is not rewrapped either
    options = _unwrap_options(annotations, keys, where)
    updated = dict(annotations)
    updated[ANN_KEYS_JWE] = _keys_annotation(options, recipients)
    return updated


def recipient_count(annotations: Mapping[str, str], where: str = "<layer>") -> int:
    """How many recipients the keys annotation names (wrapped keys are not readable)."""
    return sum(len(j.recipients) for j in _jwes(annotations, where))
