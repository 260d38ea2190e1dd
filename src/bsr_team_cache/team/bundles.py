"""Dependency bundles: many module commits behind one manifest, pulled with one manifest request
plus parallel blob transfers (small layers travel inside the manifest and need none).

A bundle lives at ``[ns/]teams/<team>/bundles/<name>`` with tags ``latest`` and an immutable
``v<N>``. Its layers are the member modules' files layers, mounted from the module repositories
(no blob is uploaded twice); its config (embedded in the manifest) holds each member's name,
commit, b5 digest, deps and layer digest, so a member is rebuilt and verified without reading the
module repositories.

When the team encrypts, members are the module repositories' encrypted layers (mounted, never
re-encrypted), their descriptors carrying the wrapped keys; small ones ride in the manifest
encrypted, never in plain text.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bsr_team_cache._threads import ContextThreadPool
from bsr_team_cache.domain.digest import B5, parse_digest
from bsr_team_cache.domain.moduleref import ModuleName, parse_module_name, validate_commit_id
from bsr_team_cache.errors import BSRTeamCacheError, InvalidContentError, RegistryError
from bsr_team_cache.limits import limits
from bsr_team_cache.oci.artifact import (
    LAYER_MEDIA_TYPE,
    ModuleArtifact,
    ModuleDepRecord,
    encode_module,
    plain_files_layer,
    push_encoded,
    read_layer_descriptor,
)
from bsr_team_cache.oci.base import (
    OCI_MANIFEST,
    Descriptor,
    RegistryBackend,
    descriptor_bytes,
    manifest_annotations,
    parse_descriptor,
    parse_json,
    read_typed_manifest,
    sha256_digest,
    validate_oci_digest,
)
from bsr_team_cache.oci.compression import (
    LAYER_MEDIA_TYPES,
    file_extension,
    is_encrypted,
    media_type_of,
    plain_media_type,
)
from bsr_team_cache.oci.documents import canonical_json
from bsr_team_cache.oci.layer import decode_files_layer
from bsr_team_cache.oci.url import in_namespace
from bsr_team_cache.team.config import validate_repository_name

if TYPE_CHECKING:  # trust/, oci/encryption.py (and cryptography) load only where used
    from bsr_team_cache.oci.artifact import Recipients
    from bsr_team_cache.oci.encryption import PrivateKey
    from bsr_team_cache.team.trust import DocumentSigner, TrustedConfig
    from bsr_team_cache.trust.signatures import SigningContext

BUNDLE_TYPE = "application/vnd.buf.module.bundle.v1"
BUNDLE_CONFIG_TYPE = "application/vnd.buf.module.bundle.config.v1+json"
LATEST = "latest"
_VERSION_RE = re.compile(r"^v(\d+)$")
# Layers up to this size ride inside the bundle manifest (OCI 1.1 descriptor data), up to a
# total that keeps the manifest far below registries' limits (Distribution: 4 MiB).
EMBED_LAYER_MAX = 256 * 1024
EMBED_TOTAL_MAX = 1024 * 1024

ANN_OWNER = "dev.bsr-team-cache.owner"
ANN_PERMISSIONS = "dev.bsr-team-cache.permissions"
ANN_READERS = "dev.bsr-team-cache.readers"
_ENCRYPTION_ANNOTATIONS = "org.opencontainers.image.enc."


def validate_bundle_name(name: str) -> str:
    return validate_repository_name("bundle", name, 100)


def bundle_repository(team: str, name: str, namespace: str = "") -> str:
    return in_namespace(namespace, f"teams/{team}/bundles/{validate_bundle_name(name)}")


def shared_bundle_repository(name: str, namespace: str = "") -> str:
    """The seed's organization-wide place: ``shared/organization/bundles/<name>``."""
    return in_namespace(namespace, f"shared/organization/bundles/{validate_bundle_name(name)}")


@dataclass(frozen=True)
class BundleMember:
    artifact_module: str
    commit: str
    digest: str
    deps: tuple[tuple[str, str, str], ...]  # (name, commit, b5)
    create_time: str
    layer_digest: str  # the layer as stored: encrypted when media_type says so
    layer_size: int
    # The layer itself when it travels inside the bundle manifest (small modules).
    data: bytes | None = field(default=None, compare=False, repr=False)
    media_type: str = LAYER_MEDIA_TYPE
    # An encrypted layer's org.opencontainers.image.enc.* annotations (its wrapped keys).
    annotations: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def encrypted(self) -> bool:
        return is_encrypted(self.media_type)

    @property
    def key(self) -> str:
        return f"{self.artifact_module}:{self.commit}"


@dataclass(frozen=True)
class Bundle:
    name: str
    version: str
    team: str
    description: str
    creator: str
    created: str
    members: tuple[BundleMember, ...]

    def covers(self, keys: Iterable[str]) -> bool:
        have = {m.key for m in self.members}
        return all(k in have for k in keys)


def member_of(artifact: ModuleArtifact, stored: Descriptor | None = None) -> BundleMember:
    """The bundle member for ``artifact``: its layer as the module repository holds it (so it
    can be mounted): ``stored`` (the repository's layer descriptor) when it is encrypted,
    else the plain files layer."""
    deps = tuple((str(d.module), d.commit, str(d.digest)) for d in artifact.deps)
    common = (str(artifact.module), artifact.commit, str(artifact.digest), deps)
    if stored is not None and is_encrypted(stored.media_type):
        return BundleMember(
            *common,
            artifact.create_time,
            stored.digest,
            stored.size,
            stored.data,
            stored.media_type,
            _encryption_annotations(stored.annotations),
        )
    layer = artifact.files_layer()
    return BundleMember(
        *common,
        artifact.create_time,
        sha256_digest(layer),
        len(layer),
        layer,
        media_type_of(layer),
    )


def _encryption_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if k.startswith(_ENCRYPTION_ANNOTATIONS)}


def stored_layers(
    registry: RegistryBackend,
    artifacts: Iterable[ModuleArtifact],
    repo_of: Callable[[ModuleName], str],
    encryption: Recipients,
    parallel: int = 16,
) -> dict[str, Descriptor]:
    """For an encrypting team: each module's encrypted layer as its repository holds it
    (``module:commit`` -> descriptor, with the bytes when small enough to embed). A module
    stored plain (published before the team encrypted) is published again, encrypted for
    ``encryption``, so that no bundle carries its plain text."""

    def one(artifact: ModuleArtifact) -> tuple[str, Descriptor]:
        key = f"{artifact.module}:{artifact.commit}"
        repo = repo_of(artifact.module)
        found = read_layer_descriptor(registry, repo, artifact.commit)
        if found is not None and is_encrypted(found.media_type):
            data = None
            if found.size <= EMBED_LAYER_MAX:
                data = registry.read_blob(repo, found.digest, max_bytes=found.size)
            return key, Descriptor(
                found.media_type, found.digest, found.size, data, found.annotations
            )
        encoded = encode_module(artifact, encryption)
        push_encoded(registry, repo, artifact.commit, encoded)
        layer = encoded.layer
        small = layer if len(layer) <= EMBED_LAYER_MAX else None
        return key, Descriptor(
            encoded.layer_media_type,
            sha256_digest(layer),
            len(layer),
            small,
            encoded.layer_annotations,
        )

    wanted = list(artifacts)
    if not wanted:
        return {}
    with ContextThreadPool(max_workers=max(1, min(parallel, len(wanted)))) as pool:
        return dict(pool.map(one, wanted))


def rewrap_members(
    bundle: Bundle, private_keys: Sequence[PrivateKey], recipients: Recipients
) -> Bundle:
    """The bundle with each encrypted member's key wrapped for ``recipients`` (a membership
    change, or a share with other teams' members); layers unchanged, so still mounted."""
    from bsr_team_cache.oci.encryption import rewrap

    def one(member: BundleMember) -> BundleMember:
        if not member.encrypted:
            return member
        annotations = rewrap(member.annotations, private_keys, recipients, member.key)
        return replace(member, annotations=annotations)

    return replace(bundle, members=tuple(one(m) for m in bundle.members))


def layer_sources(bundle: Bundle, repo_of: Callable[[ModuleName], str]) -> dict[str, str]:
    """Layer digest -> the module repository holding it (where push_bundle mounts from)."""
    return {m.layer_digest: repo_of(parse_module_name(m.artifact_module)) for m in bundle.members}


def next_version(registry: RegistryBackend, repo: str) -> str:
    numbers = [int(m[1]) for t in registry.list_tags(repo) if (m := _VERSION_RE.match(t))]
    return f"v{max(numbers, default=0) + 1}"


def _config(bundle: Bundle) -> bytes:
    return canonical_json(
        {
            "name": bundle.name,
            "version": bundle.version,
            "team": bundle.team,
            "description": bundle.description,
            "creator": bundle.creator,
            "created": bundle.created,
            "members": [
                {
                    "name": m.artifact_module,
                    "commit": m.commit,
                    "digest": m.digest,
                    "deps": [{"name": n, "commit": c, "digest": d} for n, c, d in m.deps],
                    "create_time": m.create_time,
                    "layer": {"digest": m.layer_digest, "size": m.layer_size},
                }
                for m in sorted(bundle.members, key=lambda m: m.key)
            ],
        }
    )


def push_bundle(
    registry: RegistryBackend,
    repo: str,
    bundle: Bundle,
    *,
    sources: dict[str, str],
    layers: dict[str, bytes] | None = None,
    annotations: dict[str, str] | None = None,
    tags: Iterable[str] = (),
    parallel: int = 16,
    require_encrypted: bool = False,
    signer: DocumentSigner | None = None,
) -> str:
    """Push a bundle; member layers are mounted from ``sources[layer digest]`` (a repository
    that has it), uploaded from ``layers`` only if the registry declines to mount. With
    ``require_encrypted`` (the team encrypts), a member with a plain layer is refused. With
    ``signer`` (a signed team; its context from bundle_context) the config is signed."""
    plain = [m.key for m in bundle.members if not m.encrypted]
    if require_encrypted and plain:
        raise InvalidContentError(
            f"bundle {bundle.name}: the team encrypts its modules but {', '.join(plain[:3])}"
            " would be bundled in plain text; publish them encrypted first"
        )

    def place(member: BundleMember) -> None:
        digest = member.layer_digest
        if registry.blob_exists(repo, digest):
            return
        source = sources.get(digest)
        if source and registry.mount_blob(repo, digest, source):
            return
        data = (layers or {}).get(digest)
        if data is None and source:
            data = registry.read_blob(source, digest, max_bytes=member.layer_size)
        if data is None:
            raise RegistryError(f"bundle {bundle.name}: no copy of {member.key}'s files layer")
        registry.push_blob(repo, data, digest)

    with ContextThreadPool(max_workers=max(1, min(parallel, len(bundle.members)))) as pool:
        list(pool.map(place, bundle.members))
    config = _config(bundle)
    if not registry.blob_exists(repo, sha256_digest(config)):
        registry.push_blob(repo, config, sha256_digest(config))
    embedded: dict[str, str] = {}
    budget = EMBED_TOTAL_MAX
    for m in sorted(bundle.members, key=lambda m: m.layer_size):
        data = m.data if m.data is not None else (layers or {}).get(m.layer_digest)
        # Only bytes that are the stored layer (the descriptor's digest) are embedded.
        if data is None or len(data) > EMBED_LAYER_MAX or len(data) > budget:
            continue
        embedded[m.layer_digest] = base64.b64encode(data).decode()
        budget -= len(data)
    if signer is not None:  # the config pins every member: signing it signs the bundle
        annotations = {**(annotations or {}), **signer.annotate(config, None, annotations)}
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_TYPE,
            "config": {
                "mediaType": BUNDLE_CONFIG_TYPE,
                "digest": sha256_digest(config),
                "size": len(config),
                "data": base64.b64encode(config).decode(),
            },
            "layers": [
                {
                    "mediaType": m.media_type,
                    "digest": m.layer_digest,
                    "size": m.layer_size,
                    "annotations": {
                        "org.opencontainers.image.title": f"{m.artifact_module}@{m.commit}"
                        + file_extension(m.media_type),
                        **m.annotations,
                    },
                    **({"data": embedded[m.layer_digest]} if m.layer_digest in embedded else {}),
                }
                for m in sorted(bundle.members, key=lambda m: m.key)
            ],
            "annotations": {
                "org.opencontainers.image.title": bundle.name,
                "org.opencontainers.image.description": bundle.description,
                "org.opencontainers.image.version": bundle.version,
                "org.opencontainers.image.created": bundle.created,
                "org.opencontainers.image.authors": bundle.creator,
                **(annotations or {}),
            },
        }
    )
    digest = ""
    for tag in tags:
        digest = registry.push_manifest(repo, tag, manifest, OCI_MANIFEST)
    return digest


def _text(value: Any, what: str, limit: int = 1000) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{what} is not a string of at most {limit} characters")
    return value


def _member(m: Any, where: str) -> BundleMember:
    """A member record, every field checked and in canonical form."""
    if not isinstance(m, dict) or not isinstance(m.get("layer"), dict):
        raise ValueError("a member is not an object with a layer")
    deps = m["deps"]
    if not isinstance(deps, list) or not all(isinstance(d, dict) for d in deps):
        raise ValueError("member deps are not a list of objects")
    size = m["layer"]["size"]
    if (
        not isinstance(size, int)
        or isinstance(size, bool)
        or not 0 < size <= limits().max_module_bytes
    ):
        raise ValueError(f"member layer size {size!r} is out of bounds")
    return BundleMember(
        str(parse_module_name(m["name"])),
        validate_commit_id(m["commit"]),
        str(parse_digest(m["digest"], expected_type=B5)),
        tuple(
            (
                str(parse_module_name(d["name"])),
                validate_commit_id(d["commit"]),
                str(parse_digest(d["digest"], expected_type=B5)),
            )
            for d in deps
        ),
        _text(m.get("create_time", ""), "create_time", 64),
        validate_oci_digest(m["layer"]["digest"], where),
        size,
    )


def bundle_context(repo_without_namespace: str, version: str) -> SigningContext:
    """What a bundle's signature binds it to: its repository (without the namespace: a team's
    ``teams/<team>/bundles/<name>`` or the shared ``shared/organization/bundles/<name>``) and
    its version (the same manifest is also tagged ``latest``)."""
    from bsr_team_cache.trust.signatures import SigningContext

    return SigningContext(BUNDLE_TYPE, repo_without_namespace, version)


def read_bundle(
    registry: RegistryBackend,
    repo: str,
    reference: str = LATEST,
    *,
    trusted: TrustedConfig | None = None,
    context_repo: str = "",
) -> tuple[Bundle, dict[str, str]] | None:
    """(bundle, manifest annotations), every field checked; None if absent. A malformed
    bundle is an InvalidContentError. With ``trusted`` (the configuration of the team that owns
    the bundle), a signed team's bundle must be signed by a maintainer or admin for
    ``context_repo`` (``repo`` without the namespace), else it is a SignatureError."""
    found = read_typed_manifest(registry, repo, reference, BUNDLE_TYPE)
    if found is None:
        return None
    manifest, where, _ = found
    lim = limits()
    config_desc = parse_descriptor(
        manifest.get("config"),
        f"{where} config",
        media_types=(BUNDLE_CONFIG_TYPE,),
        max_size=lim.max_document_bytes,
    )
    layers = [
        parse_descriptor(
            layer,
            where,
            media_types=LAYER_MEDIA_TYPES,
            max_size=lim.max_module_bytes,
        )
        for layer in manifest["layers"]
    ]
    config_bytes = descriptor_bytes(registry, repo, config_desc, where)
    config = parse_json(config_bytes, where, "config")
    try:
        if not isinstance(config, dict) or not isinstance(config.get("members"), list):
            raise ValueError("the config has no list of members")
        members = tuple(_member(m, where) for m in config["members"])
        bundle = Bundle(
            name=validate_bundle_name(config["name"]),
            version=_text(config["version"], "version", 64),
            team=validate_repository_name("team", config["team"], 64),
            description=_text(config.get("description", ""), "description"),
            creator=_text(config.get("creator", ""), "creator", 200),
            created=_text(config.get("created", ""), "created", 64),
            members=members,
        )
    except (KeyError, TypeError, ValueError, BSRTeamCacheError) as exc:
        raise InvalidContentError(f"{where}: malformed bundle ({exc})") from None
    annotations = manifest_annotations(manifest, where)
    if trusted is not None:
        _check_signed(trusted, annotations, config_bytes, context_repo, reference, bundle, where)
    by_digest = {layer.digest: layer for layer in layers}
    members = tuple(_with_descriptor(m, by_digest.get(m.layer_digest), where) for m in members)
    return replace(bundle, members=members), annotations


def _check_signed(
    trusted: TrustedConfig,
    annotations: dict[str, str],
    config: bytes,
    context_repo: str,
    reference: str,
    bundle: Bundle,
    where: str,
) -> None:
    """A signed team's bundle: signed by a maintainer or admin, at its place and version."""
    from bsr_team_cache.trust.signatures import SignatureError

    try:
        trusted.check(annotations, config, bundle_context(context_repo, bundle.version))
    except SignatureError as exc:
        raise SignatureError(f"{where}: bundle not trusted ({exc.reason})") from None
    if trusted.signed and _VERSION_RE.match(reference) and reference != bundle.version:
        raise SignatureError(f"{where}: bundle not trusted (it is version {bundle.version})")


def _with_descriptor(member: BundleMember, layer: Descriptor | None, where: str) -> BundleMember:
    """The member with what its manifest descriptor says: embedded bytes, an encrypted media
    type and its wrapped keys."""
    if layer is None:
        return member
    if layer.size != member.layer_size:
        raise InvalidContentError(
            f"{where}: {member.key}'s layer is {layer.size} bytes in the manifest and"
            f" {member.layer_size} in the config"
        )
    return replace(
        member,
        data=layer.data,
        media_type=layer.media_type,
        annotations=_encryption_annotations(layer.annotations),
    )


def pull_members(
    registry: RegistryBackend,
    repo: str,
    members: Iterable[BundleMember],
    parallel: int = 16,
    private_keys: Sequence[PrivateKey] | None = None,
) -> list[ModuleArtifact]:
    """Read members' layers in parallel; each is checked (sha256, paths and limits, b5).
    Encrypted layers are decrypted with ``private_keys`` (none: InvalidContentError)."""
    wanted = list(members)

    def one(member: BundleMember) -> ModuleArtifact:
        where = f"{registry.describe()}/{repo} {member.key}"
        layer = (
            member.data
            if member.data is not None
            else registry.read_blob(repo, member.layer_digest, max_bytes=member.layer_size)
        )
        stored = Descriptor(
            member.media_type, member.layer_digest, member.layer_size, None, member.annotations
        )
        layer = plain_files_layer(layer, stored, private_keys, where)
        files, exact = decode_files_layer(layer, where, plain_media_type(member.media_type))
        artifact = ModuleArtifact(
            parse_module_name(member.artifact_module),
            member.commit,
            parse_digest(member.digest, expected_type=B5),
            tuple(
                ModuleDepRecord(parse_module_name(n), c, parse_digest(d, expected_type=B5))
                for n, c, d in member.deps
            ),
            files,
            member.create_time,
            layer=layer if exact else None,  # anything more than the files: made again
        )
        artifact.verify()
        return artifact

    if not wanted:
        return []
    remote = [m for m in wanted if m.data is None]
    if not remote:
        return [one(m) for m in wanted]
    with ContextThreadPool(max_workers=max(1, min(parallel, len(remote)))) as pool:
        return list(pool.map(one, wanted))


def new_bundle(
    name: str,
    team: str,
    description: str,
    creator: str,
    version: str,
    artifacts: Iterable[ModuleArtifact],
    stored: Mapping[str, Descriptor] | None = None,
) -> Bundle:
    """A bundle of ``artifacts``; ``stored`` (from ``stored_layers``, for an encrypting team)
    gives each module's encrypted layer by ``module:commit``."""
    members = {}
    for artifact in artifacts:
        member = member_of(artifact, (stored or {}).get(f"{artifact.module}:{artifact.commit}"))
        members[member.key] = member
    if not members:
        raise BSRTeamCacheError(f"bundle {name}: no modules to bundle")
    return Bundle(
        name=validate_bundle_name(name),
        version=version,
        team=team,
        description=description,
        creator=creator,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        members=tuple(members[k] for k in sorted(members)),
    )
