"""Which signed team documents a member trusts.

A team is *signed* once its verified configuration lists at least one admin with a signing key.
A team that is not signed works as before: its documents are accepted unsigned, and only the
registry's access control protects them. In a signed team:

- **The team configuration** must be signed by an admin's key of the configuration this machine
  last trusted for the team (pinned in the local store). On first contact the configuration is
  trusted on first use (pinned, with a warning), unless ``BSR_TEAM_CACHE_TRUSTED_KEYS`` names
  the admin key ids to expect (comma-separated; ``keys show`` prints them): then it must be
  signed by one of them, else it is refused. A newer configuration signed by an admin of the
  pinned one becomes the pin; each configuration names the one it replaces (annotation
  ``dev.bsr-team-cache.previous``, signed), so a machine that missed versions follows the chain
  of admin signatures from its pin (at most 32 steps). Anything else — unsigned, signed by a
  non-admin or an unknown key, older than the pin, malformed — is a warning and the pinned
  configuration is used.
- **Label indexes and bundles** must be signed by a maintainer's or an admin's key of the
  verified configuration. Unsigned ones, or ones signed by a key without that role, are ignored
  with a warning: a label index reads as absent (offline resolution uses only verified
  indexes), a bundle is not used (fetch takes the modules one by one).
- Members without the maintainer role do not write label indexes of a signed team (their
  fetches still remember labels on their own machine); maintainers and admins sign what they
  write with the key of ``BSR_TEAM_CACHE_SIGNING_KEY_FILE`` / ``BSR_TEAM_CACHE_SIGNING_KEY``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bsr_team_cache.errors import InvalidContentError, UsageError
from bsr_team_cache.oci.base import RegistryBackend, is_oci_digest
from bsr_team_cache.oci.documents import DocumentRead, read_document_at, update_document
from bsr_team_cache.team.config import (
    CONFIG_TAG,
    TEAM_CONFIG_TYPE,
    TeamConfig,
    config_from_json,
    config_repository,
    make_config,
    role_at_least,
)
from bsr_team_cache.trust.keys import SigningKey, key_id
from bsr_team_cache.trust.signatures import (
    ANN_PREFIX,
    SignatureError,
    SigningContext,
    parse_signature,
    sign,
    verify_with,
)

if TYPE_CHECKING:
    from bsr_team_cache.store import LocalStore
    from bsr_team_cache.store.fallible import FallibleStore

TRUSTED_KEYS_ENV = "BSR_TEAM_CACHE_TRUSTED_KEYS"
ANN_PREVIOUS = ANN_PREFIX + "previous"  # the manifest digest of the configuration replaced
MAX_CHAIN = 32  # configurations followed back from the registry's to the pinned one
DOCUMENT_SIGNERS = "maintainer"  # the least role whose key signs label indexes and bundles


def is_signed_team(config: TeamConfig | None) -> bool:
    """Whether at least one admin of ``config`` has a signing key."""
    return config is not None and config.signed


def check_signature(
    config: TeamConfig,
    annotations: Mapping[str, str],
    payload: bytes,
    context: SigningContext,
    needed: str,
) -> str:
    """The member who signed, if they hold at least the ``needed`` role in ``config`` and the
    signature verifies with their registered key; else a SignatureError saying why."""
    signature = parse_signature(annotations)
    role = config.role_of(signature.member)
    if role is None:
        raise SignatureError(f"signed by {signature.member}, who is not a member of the team")
    if not role_at_least(role, needed):
        wanted = "an admin" if needed == "admin" else f"a {needed} or admin"
        raise SignatureError(f"signed by {signature.member} ({role}), not by {wanted}")
    registered = config.signing_keys.get(signature.member)
    if registered is None:
        raise SignatureError(f"signed by {signature.member}, who has no registered signing key")
    verify_with(signature, registered, context, payload, annotations)
    return signature.member


@dataclass(frozen=True)
class TrustedConfig:
    """The team configuration this machine trusts (None: the team has none, or none could be
    trusted), and whether the team's documents must be signed."""

    config: TeamConfig | None
    signed: bool
    digest: str = ""  # the manifest digest of ``config`` in the registry, if known

    def check(
        self,
        annotations: Mapping[str, str],
        payload: bytes,
        context: SigningContext,
        needed: str = DOCUMENT_SIGNERS,
    ) -> str | None:
        """For a label index or a bundle: None in an unsigned team (accepted as it is), else
        the signer, or a SignatureError."""
        if not self.signed:
            return None
        if self.config is None:
            raise SignatureError("the team's configuration is not trusted, so nothing verifies")
        return check_signature(self.config, annotations, payload, context, needed)


# -- the configuration chain ---------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    config: TeamConfig
    digest: str


def _pin_key(registry: RegistryBackend, namespace: str, team: str) -> str:
    return f"trust-pin:{registry.describe()}:{namespace}:{team}"


def read_pin(
    store: LocalStore | FallibleStore | None, registry: RegistryBackend, namespace: str, team: str
) -> Pin | None:
    if store is None:
        return None
    key = _pin_key(registry, namespace, team)
    raw = store.kv_get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        return Pin(config_from_json(value["config"], key), str(value["digest"]))
    except (ValueError, TypeError, KeyError, RecursionError, InvalidContentError):
        return None  # this machine's own record, damaged: as if never pinned


def write_pin(
    store: LocalStore | FallibleStore | None,
    registry: RegistryBackend,
    namespace: str,
    team: str,
    config: TeamConfig,
    digest: str,
) -> None:
    """Pin ``config`` (a signed team's), or forget the pin (a team whose admins unsigned it)."""
    if store is None:
        return
    key = _pin_key(registry, namespace, team)
    value = {"config": config.to_json(), "digest": digest} if is_signed_team(config) else None
    store.kv_put(key, json.dumps(value))


def trusted_key_ids(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The admin key ids ``BSR_TEAM_CACHE_TRUSTED_KEYS`` names, for first contact with a team."""
    text = (os.environ if env is None else env).get(TRUSTED_KEYS_ENV, "")
    return frozenset(k.strip().lower() for k in text.split(",") if k.strip())


def config_context(team: str) -> SigningContext:
    return SigningContext(TEAM_CONFIG_TYPE, f"teams/{team}/config", CONFIG_TAG)


def _admin_signed(found: DocumentRead, trusted: TeamConfig, team: str) -> str:
    return check_signature(trusted, found.annotations, found.payload, config_context(team), "admin")


@dataclass
class _Reader:
    """Reads and verifies a team's configuration against this machine's pin."""

    registry: RegistryBackend
    team: str
    namespace: str
    pin: Pin | None
    expected: frozenset[str]
    store: LocalStore | FallibleStore | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def repo(self) -> str:
        return config_repository(self.team, self.namespace)

    def where(self, reference: str = CONFIG_TAG) -> str:
        return f"{self.registry.describe()}/{self.repo}:{reference}"

    def parse(self, found: DocumentRead, reference: str) -> TeamConfig:
        config = config_from_json(found.document, self.where(reference))
        if config.team != self.team:
            raise InvalidContentError(
                f"{self.where(reference)}: the configuration is for team {config.team!r}"
            )
        return config

    def first_contact(self, found: DocumentRead, config: TeamConfig) -> str | None:
        """None when ``config`` may be trusted without a pin, else why not."""
        if self.expected:
            try:
                signer = _admin_signed(found, config, self.team)
            except SignatureError as exc:
                return f"{TRUSTED_KEYS_ENV} names the admin keys to expect, and {exc.reason}"
            if key_id(config.signing_keys[signer]) not in self.expected:
                return (
                    f"signed by {signer} with key {key_id(config.signing_keys[signer])}, which"
                    f" {TRUSTED_KEYS_ENV} does not name"
                )
            return None
        if not is_signed_team(config):
            return None  # an unsigned team: nothing to check
        try:
            signer = _admin_signed(found, config, self.team)
        except SignatureError as exc:
            return f"the team is signed, but {exc.reason}"
        admins = ", ".join(
            f"{m} {key_id(config.signing_keys[m])}"
            for m in config.members_with_role("admin")
            if m in config.signing_keys
        )
        self.warnings.append(
            f"trusting team {self.team}'s configuration on first use (signed by {signer};"
            f" admin keys: {admins}); to check the keys in advance, set {TRUSTED_KEYS_ENV}"
        )
        return None

    def chain_from_pin(self, found: DocumentRead, config: TeamConfig, pin: Pin) -> str | None:
        """None when ``found`` descends from the pinned configuration through admin signatures
        (each configuration signed by an admin of the one it replaces), else why not."""
        if config.updated_at < pin.config.updated_at:
            return "it is older than the configuration this machine trusts"
        chain: list[tuple[DocumentRead, TeamConfig]] = [(found, config)]
        try:
            _admin_signed(found, pin.config, self.team)
            return None
        except SignatureError as exc:
            first_reason = exc.reason
        for _ in range(MAX_CHAIN):
            previous = chain[-1][0].annotations.get(ANN_PREVIOUS, "")
            if not is_oci_digest(previous):
                return first_reason
            if previous == pin.digest:
                anchor = pin.config
                break
            older = read_document_at(self.registry, self.repo, previous, TEAM_CONFIG_TYPE)
            if older is None or older.digest != previous:
                return f"{first_reason}; its previous configuration {previous} is missing"
            older_config = self.parse(older, previous)
            if older_config.updated_at < pin.config.updated_at:
                # The chain passes behind the pin without going through it: a fork from an
                # older configuration (a removed admin's key still verifies there).
                return (
                    f"{first_reason}; its previous configuration {previous} is older than the"
                    " configuration this machine trusts"
                )
            chain.append((older, older_config))
            try:
                _admin_signed(older, pin.config, self.team)
                chain.pop()
                anchor = older_config
                break
            except SignatureError:
                continue
        else:
            return f"{first_reason}; no chain of admin signatures from the trusted one"
        for doc, _ in reversed(chain):  # oldest first: each signed by an admin of the one before
            try:
                _admin_signed(doc, anchor, self.team)
            except SignatureError as exc:
                return f"in the chain from the trusted configuration, {exc.reason}"
            anchor = self.parse(doc, doc.digest)
        return None


def read_trusted_config(
    registry: RegistryBackend,
    team: str,
    namespace: str,
    store: LocalStore | FallibleStore | None,
    warnings: list[str],
    *,
    env: Mapping[str, str] | None = None,
    found: DocumentRead | None = None,
) -> TrustedConfig:
    """The team configuration this machine trusts, read from the registry (unless ``found``,
    the configuration as just read, is given) and checked against its pin (which it then
    moves). Refusals are warnings (and the pinned configuration applies); a registry that does
    not answer is a RegistryError."""
    pin = read_pin(store, registry, namespace, team)
    reader = _Reader(registry, team, namespace, pin, trusted_key_ids(env), store)
    result = _verified(reader, found)
    warnings.extend(reader.warnings)
    return result


def _fallback(reader: _Reader, why: str) -> TrustedConfig:
    """The pinned configuration when the registry's is not trusted (said in a warning)."""
    pin = reader.pin
    if pin is not None:
        reader.warnings.append(
            f"team configuration at {reader.where()} not trusted ({why}); using the one this"
            f" machine trusts (by {pin.config.updated_by or 'unknown'})"
        )
        return TrustedConfig(pin.config, True, pin.digest)
    reader.warnings.append(
        f"team configuration at {reader.where()} not trusted ({why}); signed documents of the"
        " team cannot be verified"
    )
    return TrustedConfig(None, bool(reader.expected))


def _verified(reader: _Reader, found: DocumentRead | None = None) -> TrustedConfig:
    pin = reader.pin
    try:
        if found is None:
            found = read_document_at(reader.registry, reader.repo, CONFIG_TAG, TEAM_CONFIG_TYPE)
        if found is None:
            if pin is None:
                return TrustedConfig(None, bool(reader.expected))
            return _fallback(reader, "it is missing")
        if pin is not None and found.digest == pin.digest:
            return TrustedConfig(pin.config, True, pin.digest)
        config = reader.parse(found, CONFIG_TAG)
        why = (
            reader.first_contact(found, config)
            if pin is None
            else reader.chain_from_pin(found, config, pin)
        )
    except InvalidContentError as exc:
        return _fallback(reader, str(exc))
    if why is not None:
        return _fallback(reader, why)
    if pin is not None or is_signed_team(config):
        write_pin(
            reader.store, reader.registry, reader.namespace, reader.team, config, found.digest
        )
    return TrustedConfig(config, is_signed_team(config), found.digest)


# -- writing signed documents --------------------------------------------------------------


@dataclass(frozen=True)
class DocumentSigner:
    """Signs what a maintainer or admin writes, and vets what they build on (a read-modify-write
    merges into the verified document only, never into a forged one)."""

    key: SigningKey
    member: str
    trusted: TrustedConfig
    context: SigningContext | None = None  # where the document goes: set with ``at``

    def at(self, context: SigningContext) -> DocumentSigner:
        """This signer for the document at ``context`` (e.g. one module's label index)."""
        return replace(self, context=context)

    def _context(self) -> SigningContext:
        if self.context is None:
            raise ValueError("DocumentSigner.at(context) was not called")  # a programming error
        return self.context

    def annotate(
        self,
        payload: bytes,
        replaced: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The signature annotations of ``payload`` (with the manifest's ``annotations``)."""
        return sign(self.key, self.member, self._context(), payload, annotations)

    def vet(self, found: DocumentRead | None) -> Any:
        if found is None:
            return None
        try:
            self.trusted.check(found.annotations, found.payload, self._context())
        except SignatureError:
            return None  # replaced by ours, which is signed
        return found.document


def document_signer(
    trusted: TrustedConfig, member: str, key: SigningKey | None, what: str
) -> DocumentSigner | None:
    """How ``member`` writes a label index or bundle of the team: None in an unsigned team
    (written as before); a UsageError when the team is signed and they cannot sign it."""
    if not trusted.signed:
        return None
    config = trusted.config
    role = config.role_of(member) if config else None
    if config is None or not role_at_least(role, DOCUMENT_SIGNERS):
        raise UsageError(
            f"{what}: the team signs its documents and only maintainers and admins write them;"
            f" {member or 'this member'} is {role or 'not a member'}"
        )
    if key is None or config.signing_keys.get(member) != key.public_text:
        raise UsageError(
            f"{what}: the team signs its documents: set BSR_TEAM_CACHE_SIGNING_KEY_FILE to"
            f" {member}'s signing key (the one registered in the team configuration)"
        )
    return DocumentSigner(key, member, trusted)


# -- writing the configuration -----------------------------------------------------------


def update_team_config(
    registry: RegistryBackend,
    team: str,
    change: Callable[[TeamConfig], TeamConfig],
    *,
    by: str,
    namespace: str = "",
    signing_key: SigningKey | None = None,
    store: LocalStore | FallibleStore | None = None,
    warnings: list[str] | None = None,
) -> TeamConfig:
    """Apply ``change`` to the stored configuration (defaults if none) and store the result;
    if another member wrote meanwhile, ``change`` is applied again to their version, so
    concurrent updates (two members added at once) are both kept. The change builds on the
    configuration this machine trusts (in a signed team, a forged one is not
    built on), and is signed with ``signing_key`` when the team is signed or becomes so."""
    repo = config_repository(team, namespace)
    where = f"{registry.describe()}/{repo}:{CONFIG_TAG}"
    notes: list[str] = []
    base_digest = [""]  # the trusted configuration the change builds on: what it replaces
    must_sign = [False]

    def vet(found: DocumentRead | None) -> Any:
        said: list[str] = []
        # What update_document just read (None: absent or malformed, then read here again).
        trusted = read_trusted_config(registry, team, namespace, store, said, found=found)
        if not notes:  # what the first attempt built on; later reads include our own write
            notes.extend(said)
        base_digest[0] = trusted.digest
        if trusted.config is None:
            return None
        return json.loads(json.dumps(trusted.config.to_json()))  # as read: lists, not tuples

    def apply(current: Any) -> Any:
        base = make_config(team) if current is None else config_from_json(current, where)
        changed = change(base)
        if current is not None and changed == base:
            return current  # nothing to write: the change is already there
        must_sign[0] = _must_sign(base, changed, by, signing_key)
        stamp = max(time.time(), base.updated_at + 0.001)  # newer than what it replaces
        return replace(changed, updated_at=stamp, updated_by=by).to_json()

    def annotate(payload: bytes, replaced: str | None) -> dict[str, str]:
        annotations = {"org.opencontainers.image.title": f"team {team}"}
        if base_digest[0]:
            annotations[ANN_PREVIOUS] = base_digest[0]
        if must_sign[0]:
            assert signing_key is not None
            context = config_context(team)
            annotations.update(sign(signing_key, by, context, payload, annotations))
        return annotations

    written = update_document(
        registry, repo, CONFIG_TAG, TEAM_CONFIG_TYPE, apply, annotate, vet=vet
    )
    saved = config_from_json(written, where)
    if store is not None and must_sign[0]:  # move this machine's pin to what it signed
        read_trusted_config(registry, team, namespace, store, [])
    if warnings is not None:
        warnings.extend(notes)
    return saved


def _must_sign(base: TeamConfig, new: TeamConfig, by: str, key: SigningKey | None) -> bool:
    """Whether ``by`` signs ``new``: yes once the team is signed (an admin with a signing key),
    and then only an admin with their registered key can write it."""
    signed_before = is_signed_team(base)
    if not (signed_before or is_signed_team(new)):
        return False
    authority = base if signed_before else new
    role = authority.role_of(by)
    if role != "admin":
        admins = ", ".join(authority.members_with_role("admin"))
        raise UsageError(
            f"team {base.team}'s configuration is signed by its admins, and {by} is"
            f" {role or 'not a member'}: ask an admin ({admins}) to make this change"
        )
    if key is None or authority.signing_keys.get(by) != key.public_text:
        registered = authority.signing_keys.get(by)
        hint = (
            f" (registered: key {key_id(registered)})"
            if registered
            else f"; register it first (setup --signing-key {by}=signing.pub.pem)"
        )
        raise UsageError(
            f"team {base.team}'s configuration is signed by its admins: set"
            f" BSR_TEAM_CACHE_SIGNING_KEY_FILE to {by}'s signing key{hint}"
        )
    return True
