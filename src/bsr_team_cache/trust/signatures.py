"""Signatures of team documents (label indexes, team configurations, bundles), kept as
annotations of the document's manifest:

  dev.bsr-team-cache.signature  base64 of the 64-byte Ed25519 signature
  dev.bsr-team-cache.signer     "<member>:<key id>" (key id: trust/keys.py)
  dev.bsr-team-cache.signed-at  unix seconds, a decimal integer

The signature covers a statement, never the manifest (whose other annotations a registry or
a tool may rewrite): the context the document is valid in — its artifact type, its repository
path without the team registry's namespace, its tag — the SHA-256 of its exact payload bytes
(a document's JSON, a bundle's config, which pins every member's commit, b5 and layer), the
signer, the time, and every other ``dev.bsr-team-cache.*`` annotation of the manifest (a shared
bundle's owner, permissions and readers). So a signed label index of module X does not verify
at module Y, nor team A's configuration at team B, nor an edited share grant.

Everything here reads hostile input: annotation values are bounded and checked before any
decoding, and every refusal is a SignatureError with a reason a warning can show.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bsr_team_cache.errors import InvalidContentError
from bsr_team_cache.trust.keys import KEY_ID_LENGTH, SigningKey, key_id, load_public_key

ANN_PREFIX = "dev.bsr-team-cache."
ANN_SIGNATURE = ANN_PREFIX + "signature"
ANN_SIGNER = ANN_PREFIX + "signer"
ANN_SIGNED_AT = ANN_PREFIX + "signed-at"
SIGNATURE_ANNOTATIONS = (ANN_SIGNATURE, ANN_SIGNER, ANN_SIGNED_AT)
STATEMENT_VERSION = "bsr-team-cache signed document v1"

_SIGNATURE_RE = re.compile(r"^[A-Za-z0-9+/]{86}==$")  # base64 of exactly 64 bytes
# A member name's characters (team/config.py's grammar, which this layer does not import):
# the name is shown in warnings, so no control or invisible characters get through.
_SIGNER_RE = re.compile(rf"^([A-Za-z0-9][A-Za-z0-9._+@-]{{0,127}}):([0-9a-f]{{{KEY_ID_LENGTH}}})\Z")
_SIGNED_AT_RE = re.compile(r"^[0-9]{1,12}$")
_MAX_COVERED = 16  # dev.bsr-team-cache.* annotations a signature covers (bundles have 3)
_MAX_COVERED_VALUE = 64 * 1024


class SignatureError(InvalidContentError):
    """A document's signature is missing, malformed or does not verify; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class SigningContext:
    """Where a signed document is valid: its artifact type, its repository path without the
    namespace, its tag (a bundle: its version)."""

    artifact_type: str
    repository: str
    tag: str


@dataclass(frozen=True)
class Signature:
    member: str
    key_id: str
    signed_at: int
    value: bytes


def covered_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    """The manifest's own ``dev.bsr-team-cache.*`` annotations, which the signature covers."""
    covered = {
        k: v
        for k, v in annotations.items()
        if k.startswith(ANN_PREFIX) and k not in SIGNATURE_ANNOTATIONS
    }
    if len(covered) > _MAX_COVERED or any(len(v) > _MAX_COVERED_VALUE for v in covered.values()):
        raise SignatureError("too many or too large dev.bsr-team-cache annotations")
    return dict(sorted(covered.items()))


def statement(
    context: SigningContext,
    payload: bytes,
    member: str,
    signer_key_id: str,
    signed_at: int,
    covered: Mapping[str, str],
) -> bytes:
    """The exact bytes signed: a version line, then canonical JSON of what the signature binds."""
    body = {
        "artifact_type": context.artifact_type,
        "repository": context.repository,
        "tag": context.tag,
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "signer": f"{member}:{signer_key_id}",
        "signed_at": signed_at,
        "annotations": dict(sorted(covered.items())),
    }
    return (
        STATEMENT_VERSION.encode()
        + b"\n"
        + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    )


def sign(
    key: SigningKey,
    member: str,
    context: SigningContext,
    payload: bytes,
    annotations: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
) -> dict[str, str]:
    """The signature annotations to add to a manifest that carries ``payload`` and
    ``annotations`` (its other annotations) at ``context``."""
    signed_at = int(time.time() if now is None else now)
    covered = covered_annotations(annotations or {})
    message = statement(context, payload, member, key.key_id, signed_at, covered)
    return {
        ANN_SIGNATURE: base64.b64encode(key.sign(message)).decode(),
        ANN_SIGNER: f"{member}:{key.key_id}",
        ANN_SIGNED_AT: str(signed_at),
    }


def parse_signature(annotations: Mapping[str, str]) -> Signature:
    """The signature annotations, each checked for shape before anything is decoded."""
    present = [k for k in SIGNATURE_ANNOTATIONS if k in annotations]
    if not present:
        raise SignatureError("unsigned")
    if len(present) != len(SIGNATURE_ANNOTATIONS):
        missing = ", ".join(k for k in SIGNATURE_ANNOTATIONS if k not in annotations)
        raise SignatureError(f"malformed signature: {missing} missing")
    value = annotations[ANN_SIGNATURE]
    signer = annotations[ANN_SIGNER]
    signed_at = annotations[ANN_SIGNED_AT]
    if not isinstance(value, str) or not _SIGNATURE_RE.match(value):
        raise SignatureError(f"malformed signature: {ANN_SIGNATURE} is not 64 bytes of base64")
    match = _SIGNER_RE.match(signer) if isinstance(signer, str) else None
    if match is None:
        raise SignatureError(f"malformed signature: {ANN_SIGNER} is not <member>:<key id>")
    if not isinstance(signed_at, str) or not _SIGNED_AT_RE.match(signed_at):
        raise SignatureError(f"malformed signature: {ANN_SIGNED_AT} is not unix seconds")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:  # the pattern admits only valid base64; kept for safety
        raise SignatureError(f"malformed signature: {ANN_SIGNATURE} is not base64") from None
    return Signature(match[1], match[2], int(signed_at), raw)


def verify_with(
    signature: Signature,
    public_text: str,
    context: SigningContext,
    payload: bytes,
    annotations: Mapping[str, str],
) -> None:
    """Check ``signature`` with the member's registered public key; SignatureError if not."""
    from cryptography.exceptions import InvalidSignature  # only when a signature is checked

    try:
        public = load_public_key(public_text)
        registered_id = key_id(public_text)
    except ValueError:
        raise SignatureError(
            f"{signature.member}'s registered signing key is not an Ed25519 key"
        ) from None
    if registered_id != signature.key_id:
        raise SignatureError(
            f"signed by {signature.member} with key {signature.key_id}, which is not their"
            f" registered key {registered_id}"
        )
    message = statement(
        context,
        payload,
        signature.member,
        signature.key_id,
        signature.signed_at,
        covered_annotations(annotations),
    )
    try:
        public.verify(signature.value, message)
    except InvalidSignature:
        raise SignatureError(
            f"the signature by {signature.member} does not match (a changed document, or one"
            f" signed for another place than {context.repository}:{context.tag})"
        ) from None
