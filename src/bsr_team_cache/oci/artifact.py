"""One BSR module commit as one OCI artifact (see docs/artifact-format.md).

manifest (``artifactType: application/vnd.buf.module.v1``)
  config: JSON {name, commit, digest (b5), deps [{name, commit, digest}], create_time, labels}
  layer:  the module's files as a deterministic tar (sorted, mtime 0, uid/gid 0, 0644), zstd-
          compressed (``...files.v1.tar+zstd``; ``...tar+gzip`` as written before, still read);
          when the team encrypts, that layer encrypted as ocicrypt does (oci/encryption.py),
          media type ``...+encrypted``; the config stays plain
Repository: ``<namespace>/teams/<team>/dependencies/<host>/<owner>/<module>``; tag = commit.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from bsr_team_cache._records import field, record
from bsr_team_cache._testhooks import reached
from bsr_team_cache.domain.digest import (
    B5,
    SHAKE256,
    V1_CONFIG_FILES,
    Digest,
    b4_from_file_digests,
    b5_from_file_digests,
    parse_digest,
    shake256_bytes,
)
from bsr_team_cache.domain.moduleref import (
    ModuleName,
    is_label,
    parse_module_name,
    validate_commit_id,
)
from bsr_team_cache.errors import (
    DigestMismatchError,
    InvalidContentError,
    InvalidDigestError,
    InvalidModuleRefError,
)
from bsr_team_cache.limits import MAX_V1_FILE_BYTES, limits
from bsr_team_cache.oci.base import (
    OCI_MANIFEST,
    Descriptor,
    RegistryBackend,
    descriptor_bytes,
    parse_descriptor,
    parse_json,
    parse_manifest,
    sha256_digest,
)
from bsr_team_cache.oci.compression import (
    ENCRYPTED_SUFFIX,
    LAYER_MEDIA_TYPES,
    PLAIN_LAYER_MEDIA_TYPES,
    ZSTD_LAYER_MEDIA_TYPE,
    file_extension,
    is_encrypted,
    media_type_of,
    plain_media_type,
)
from bsr_team_cache.oci.layer import decode_files_layer, files_layer
from bsr_team_cache.oci.url import module_repository  # noqa: F401 - also this module's API

if TYPE_CHECKING:  # oci/encryption.py (and cryptography) load only when a layer is encrypted
    from bsr_team_cache.oci.encryption import KeySource, PrivateKey, PublicKey
    from bsr_team_cache.oci.streaming import LayerSinks, OpenSinks

    # The public keys a module layer is encrypted for (PEM bytes, paths or loaded keys).
    Recipients = Sequence[KeySource | PublicKey]

ARTIFACT_TYPE = "application/vnd.buf.module.v1"
CONFIG_MEDIA_TYPE = "application/vnd.buf.module.config.v1+json"
# The files layer as written (zstd); gzip layers are read too (oci/compression.py).
LAYER_MEDIA_TYPE = ZSTD_LAYER_MEDIA_TYPE
ENCRYPTED_LAYER_MEDIA_TYPE = LAYER_MEDIA_TYPE + ENCRYPTED_SUFFIX


@record(frozen=True)
class ModuleDepRecord:
    module: ModuleName
    commit: str
    digest: Digest  # b5
    b4: Digest | None = None  # the dep's b4 (shake256), when known: for b4 entries of buf's cache


@record(frozen=True)
class ModuleArtifact:
    """A module commit's files plus what buf needs to trust and place them. One artifact
    serves both digest types: b5 always, b4 (for v1 buf.lock projects) when it was fetched
    that way, with the module's v1 ``buf.yaml``/``buf.lock`` that b4 covers."""

    module: ModuleName
    commit: str
    digest: Digest
    deps: tuple[ModuleDepRecord, ...]
    files: dict[str, bytes]
    create_time: str = ""
    # Labels this commit was resolved from when it was published (informational: labels move,
    # the team label index is the place to look them up).
    labels: tuple[str, ...] = ()
    b4: Digest | None = None
    v1_files: dict[str, bytes] = field(default_factory=dict)
    # The files layer as it arrived, when it is exactly ``files`` (see decode_files_layer), so
    # the store keeps it and a publish pushes it without compressing the files again.
    layer: bytes | None = field(default=None, compare=False, repr=False)
    # Which files dict ``layer`` holds (its id): ``dataclasses.replace(a, files=...)`` copies
    # ``layer`` too, and a layer of other files must then be made again, never reused.
    layer_of: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.layer is not None and not self.layer_of:
            object.__setattr__(self, "layer_of", id(self.files))

    def files_layer(self) -> bytes:
        """The files layer: as received, else made once and remembered (``files`` of a frozen
        artifact are not changed in place)."""
        if self.layer is None or self.layer_of != id(self.files):
            object.__setattr__(self, "layer", files_layer(self.files))
            object.__setattr__(self, "layer_of", id(self.files))
        return self.layer  # type: ignore[return-value]

    @property
    def has_b4(self) -> bool:
        """b4 entries can be written: the b4 digest and every dep's are known."""
        return self.b4 is not None and all(d.b4 is not None for d in self.deps)

    def verify(self) -> None:
        file_digests = {path: shake256_bytes(content) for path, content in self.files.items()}
        _check_digests(
            file_digests, self.deps, self.digest, self.b4, self.v1_files, self.module, self.commit
        )

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.files.values())


class StreamedModule:
    """A module commit whose large files layer was streamed (oci/streaming.py) instead of read
    into memory, and checked like a ModuleArtifact: the blob's sha256, its files (paths,
    limits) and their b5 (and b4) against the config. Its files are not held: they wait in
    ``sinks`` (buf's cache staging directory), as does the layer as it arrived (the local
    store's temporary file), until the store adopts the blob (``LocalStore.adopt``) and buf's
    entry is renamed into place (``place``); ``discard`` removes what is left."""

    __slots__ = (
        "b4",
        "commit",
        "create_time",
        "deps",
        "digest",
        "labels",
        "layer",
        "module",
        "sinks",
        "size",
        "v1_files",
    )

    def __init__(
        self,
        *,
        module: ModuleName,
        commit: str,
        digest: Digest,
        deps: tuple[ModuleDepRecord, ...],
        create_time: str,
        labels: tuple[str, ...],
        b4: Digest | None,
        v1_files: dict[str, bytes],
        layer: Descriptor,
        size: int,
        sinks: LayerSinks,
    ) -> None:
        self.module = module
        self.commit = commit
        self.digest = digest
        self.deps = deps
        self.create_time = create_time
        self.labels = labels
        self.b4 = b4
        self.v1_files = v1_files
        self.layer = layer  # the plain files layer as it arrived (kept only if exact)
        self.size = size  # bytes of its files
        self.sinks = sinks

    @property
    def has_b4(self) -> bool:
        """As ModuleArtifact.has_b4."""
        return self.b4 is not None and all(d.b4 is not None for d in self.deps)

    def place(
        self,
        deps: Iterable[tuple[ModuleName, str, Digest]],
        v1_files: dict[str, bytes] | None = None,
    ) -> bool:
        """Make the staged buf cache entry visible, with these deps in its module.yaml (and a
        b4 entry's v1 files); False if there is none to place (the entry was complete)."""
        if self.sinks.files is None:
            return False
        return self.sinks.files.commit(deps, v1_files)

    def discard(self) -> None:
        """Remove what was staged and not committed (nothing once stored and placed)."""
        self.sinks.discard()


def _check_digests(
    file_digests: dict[str, bytes],
    deps: Iterable[ModuleDepRecord],
    digest: Digest,
    b4: Digest | None,
    v1_files: dict[str, bytes],
    module: ModuleName,
    commit: str,
) -> None:
    """The files (their shake256 digests) against the b5 ``digest`` and, if known, ``b4``: a
    DigestMismatchError if either differs."""
    actual = b5_from_file_digests(file_digests, [d.digest for d in deps])
    if actual != digest:
        raise DigestMismatchError(f"{module}:{commit}: files hash to {actual}, expected {digest}")
    if b4 is not None:
        actual = b4_from_file_digests(file_digests, v1_files)
        if actual != b4:
            raise DigestMismatchError(f"{module}:{commit}: files hash to {actual}, expected {b4}")


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@record(frozen=True)
class EncodedArtifact:
    """The three blobs of a module artifact, as pushed and as stored locally."""

    manifest: bytes
    config: bytes
    layer: bytes  # as pushed: encrypted when the team encrypts
    layer_media_type: str = LAYER_MEDIA_TYPE
    layer_annotations: dict[str, str] = field(default_factory=dict)

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    def blobs(self) -> list[tuple[bytes, str]]:
        """Every blob the manifest names (pushed, for tools that ignore embedded data)."""
        return [(self.config, sha256_digest(self.config)), (self.layer, sha256_digest(self.layer))]

    def external_blobs(self) -> list[tuple[bytes, str]]:
        """The blobs a reader of the manifest still needs: the layer (the config is embedded)."""
        return [self.blobs()[1]]


def _dep_json(dep: ModuleDepRecord) -> dict[str, str]:
    record = {"name": str(dep.module), "commit": dep.commit, "digest": str(dep.digest)}
    if dep.b4 is not None:
        record["b4"] = str(dep.b4)
    return record


def encode_module(
    artifact: ModuleArtifact, encryption: Recipients | None = None
) -> EncodedArtifact:
    """The artifact's blobs; with ``encryption``, its files layer encrypted for those public
    keys (a fresh key each time: the manifest differs at every call)."""
    config = _config_bytes(artifact)
    layer = artifact.files_layer()
    media_type, encryption_annotations = media_type_of(layer), {}
    if encryption is not None:
        from bsr_team_cache.oci.encryption import encrypt_layer

        encrypted = encrypt_layer(layer, media_type, encryption)
        layer, media_type = encrypted.data, encrypted.media_type
        encryption_annotations = encrypted.annotations
    manifest = _manifest_bytes(
        artifact, config, media_type, sha256_digest(layer), len(layer), encryption_annotations
    )
    return EncodedArtifact(manifest, config, layer, media_type, encryption_annotations)


def streamed_manifest(module: StreamedModule) -> bytes:
    """The manifest ``encode_module`` makes for the same module (unencrypted), naming the
    streamed layer as it arrived: what the local store keeps for it."""
    config = _config_bytes(module)
    layer = module.layer
    return _manifest_bytes(module, config, layer.media_type, layer.digest, layer.size)


def _config_bytes(artifact: ModuleArtifact | StreamedModule) -> bytes:
    fields: dict[str, object] = {
        "name": str(artifact.module),
        "commit": artifact.commit,
        "digest": str(artifact.digest),
        "create_time": artifact.create_time,
        "labels": sorted(set(artifact.labels)),
        "deps": [_dep_json(d) for d in sorted(artifact.deps, key=lambda d: str(d.module))],
    }
    if artifact.b4 is not None:
        fields["b4"] = str(artifact.b4)
        fields["v1_files"] = {
            name: base64.b64encode(data).decode()
            for name, data in sorted(artifact.v1_files.items())
        }
    return _canonical_json(fields)


def _manifest_bytes(
    artifact: ModuleArtifact | StreamedModule,
    config: bytes,
    layer_media_type: str,
    layer_digest: str,
    layer_size: int,
    encryption_annotations: dict[str, str] | None = None,
) -> bytes:
    return _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": sha256_digest(config),
                "size": len(config),
                # OCI 1.1 embedded data: readers skip one round trip per module. The blob is
                # pushed too, for registries and tools that ignore the field.
                "data": base64.b64encode(config).decode(),
            },
            "layers": [
                {
                    "mediaType": layer_media_type,
                    "digest": layer_digest,
                    "size": layer_size,
                    "annotations": {
                        "org.opencontainers.image.title": "files"
                        + file_extension(layer_media_type),
                        **(encryption_annotations or {}),
                    },
                }
            ],
            "annotations": {
                "org.opencontainers.image.title": str(artifact.module),
                "org.opencontainers.image.revision": artifact.commit,
                "org.opencontainers.image.version": str(artifact.digest),
                "org.opencontainers.image.created": artifact.create_time or "1970-01-01T00:00:00Z",
            },
        }
    )


def _dep_records(value: object, where: str) -> tuple[ModuleDepRecord, ...]:
    if not isinstance(value, list):
        raise InvalidContentError(f"{where}: config deps is not a list")
    deps = []
    seen = set()
    for item in value:
        if not isinstance(item, dict):
            raise InvalidContentError(f"{where}: a dependency record is not an object")
        b4 = item.get("b4")
        dep = ModuleDepRecord(
            parse_module_name(item.get("name")),
            validate_commit_id(item.get("commit")),
            parse_digest(item.get("digest"), expected_type=B5),
            None if b4 is None else parse_digest(b4, expected_type=SHAKE256),
        )
        if dep.module in seen:
            raise InvalidContentError(f"{where}: dependency {dep.module} is listed twice")
        seen.add(dep.module)
        deps.append(dep)
    return tuple(deps)


def _config_fields(config: object, module: ModuleName, commit: str, where: str) -> dict:
    """The config's fields, checked: it must describe exactly the module and commit asked for
    (the repository and the tag), so no artifact can stand in for another."""
    if not isinstance(config, dict):
        raise InvalidContentError(f"{where}: config is not a JSON object")
    try:
        name = parse_module_name(config.get("name"))
        if name != module:
            raise InvalidContentError(f"{where}: the artifact is for module {str(name)!r}")
        if config.get("commit") != commit:
            raise InvalidContentError(
                f"{where}: the artifact is for commit {config.get('commit')!r}"
            )
        create_time = config.get("create_time", "")
        labels = config.get("labels", [])
        if not isinstance(create_time, str) or len(create_time) > 64:
            raise InvalidContentError(f"{where}: config create_time is not a short string")
        if not isinstance(labels, list) or not all(is_label(x) for x in labels):
            raise InvalidContentError(f"{where}: config labels are not label names")
        b4 = config.get("b4")
        if b4 is None and config.get("v1_files"):
            raise InvalidContentError(f"{where}: config v1_files without b4")
        return {
            "digest": parse_digest(config.get("digest"), expected_type=B5),
            "deps": _dep_records(config.get("deps"), where),
            "create_time": create_time,
            "labels": tuple(labels),
            "b4": None if b4 is None else parse_digest(b4, expected_type=SHAKE256),
            "v1_files": _v1_files(config.get("v1_files", {}), where),
        }
    except (InvalidModuleRefError, InvalidDigestError) as exc:
        raise InvalidContentError(f"{where}: {exc}") from None


def _v1_files(value: object, where: str) -> dict[str, bytes]:
    """A v1 module's own buf.yaml/buf.lock (base64 in the config), bounded."""
    if not isinstance(value, dict) or not set(value) <= set(V1_CONFIG_FILES):
        raise InvalidContentError(f"{where}: config v1_files must name only buf.yaml, buf.lock")
    files = {}
    for name, encoded in value.items():
        # base64 is 4/3 of the bytes: the decoded size is bounded before decoding
        if not isinstance(encoded, str) or len(encoded) > (MAX_V1_FILE_BYTES + 2) // 3 * 4:
            raise InvalidContentError(
                f"{where}: config v1_files.{name} is not a string of at most"
                f" {MAX_V1_FILE_BYTES} bytes (base64)"
            )
        try:
            files[name] = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise InvalidContentError(f"{where}: config v1_files.{name} is not base64") from None
    return files


ReadBlob = Callable[[Descriptor], bytes]


def _layer_descriptor(manifest: dict, where: str) -> Descriptor:
    """The one files layer of a module manifest, plain or encrypted, within the module limit."""
    if len(manifest["layers"]) != 1:
        raise InvalidContentError(f"{where}: expected one files layer")
    return parse_descriptor(
        manifest["layers"][0],
        f"{where} layer",
        media_types=LAYER_MEDIA_TYPES,
        max_size=limits().max_module_bytes,
    )


def plain_files_layer(
    layer: bytes,
    descriptor: Descriptor,
    private_keys: Sequence[PrivateKey] | None,
    where: str,
) -> bytes:
    """The plain files layer of ``descriptor``'s bytes: decrypted (HMAC, then plain digest
    checked) when encrypted, as is otherwise."""
    if not is_encrypted(descriptor.media_type):
        return layer
    from bsr_team_cache.oci.encryption import decrypt_layer

    return decrypt_layer(
        layer,
        descriptor.media_type,
        descriptor.annotations,
        private_keys or (),
        where,
        descriptor.size,
        plain_media_types=PLAIN_LAYER_MEDIA_TYPES,
    )


def decode_module(
    manifest_bytes: bytes,
    read_blob: ReadBlob,
    module: ModuleName,
    commit: str,
    where: str,
    private_keys: Sequence[PrivateKey] | None = None,
) -> ModuleArtifact:
    """Check and parse an artifact whose blobs ``read_blob`` returns (bounded, verified):
    media types, sizes, config (module, commit, digest, deps), files (paths, limits), b5. An
    encrypted files layer is decrypted with ``private_keys`` (none: InvalidContentError)."""
    layer_desc, fields = _checked_header(manifest_bytes, read_blob, module, commit, where)
    return _decoded(layer_desc, fields, read_blob, module, commit, where, private_keys)


def _config_descriptor(manifest: dict, where: str) -> Descriptor:
    return parse_descriptor(
        manifest.get("config"),
        f"{where} config",
        media_types=(CONFIG_MEDIA_TYPE,),
        max_size=limits().max_document_bytes,
    )


def _checked_header(
    manifest_bytes: bytes, read_blob: ReadBlob, module: ModuleName, commit: str, where: str
) -> tuple[Descriptor, dict]:
    """An artifact's files layer descriptor and its config's checked fields."""
    manifest = parse_manifest(manifest_bytes, where, ARTIFACT_TYPE)
    config_desc = _config_descriptor(manifest, where)
    layer_desc = _layer_descriptor(manifest, where)
    fields = _config_fields(
        parse_json(read_blob(config_desc), where, "config"), module, commit, where
    )
    return layer_desc, fields


def _decoded(
    layer_desc: Descriptor,
    fields: dict,
    read_blob: ReadBlob,
    module: ModuleName,
    commit: str,
    where: str,
    private_keys: Sequence[PrivateKey] | None,
) -> ModuleArtifact:
    """The artifact with its files layer read whole (and decrypted), checked and verified."""
    layer = plain_files_layer(read_blob(layer_desc), layer_desc, private_keys, where)
    files, exact = decode_files_layer(layer, where, plain_media_type(layer_desc.media_type))
    artifact = ModuleArtifact(
        module=module,
        commit=commit,
        files=files,
        layer=layer if exact else None,  # anything more than the files: made again
        **fields,
    )
    artifact.verify()
    return artifact


def push_module(
    registry: RegistryBackend,
    repo: str,
    artifact: ModuleArtifact,
    encryption: Recipients | None = None,
) -> str:
    """Push blobs then the manifest (tag = commit). Returns the manifest digest. With
    ``encryption`` (public keys), the files layer is pushed encrypted for them."""
    return push_encoded(registry, repo, artifact.commit, encode_module(artifact, encryption))


def push_encoded(
    registry: RegistryBackend, repo: str, commit: str, encoded: EncodedArtifact
) -> str:
    """Push an encoded artifact's blobs then its manifest (tag = commit)."""
    for data, digest in encoded.blobs():
        if not registry.blob_exists(repo, digest):
            registry.push_blob(repo, data, digest)
    reached("publish.blobs-pushed")
    return registry.push_manifest(repo, commit, encoded.manifest, OCI_MANIFEST)


def pull_module(
    registry: RegistryBackend,
    repo: str,
    module: ModuleName,
    commit: str,
    *,
    proceed: Callable[[], bool] | None = None,
    private_keys: Sequence[PrivateKey] | None = None,
    sinks: OpenSinks | None = None,
) -> ModuleArtifact | StreamedModule | None:
    """Read and check the artifact of ``module`` at ``commit`` (sha256 of every blob, the
    config against what was asked, paths and limits, then b5); None if absent, or if
    ``proceed`` (asked once the manifest is in) says the files are no longer wanted. An
    encrypted files layer is decrypted with ``private_keys``. With ``sinks`` (the caller does
    not need the files in memory), a large plain files layer is streamed into the places they
    open (oci/streaming.py) and a StreamedModule returned, checked as fully."""
    where = f"{registry.describe()}/{repo}:{commit}"
    found = registry.read_manifest(repo, commit)
    if found is None or (proceed is not None and not proceed()):
        return None

    def read(descriptor: Descriptor) -> bytes:
        return descriptor_bytes(registry, repo, descriptor, where)

    layer_desc, fields = _checked_header(found[0], read, module, commit, where)
    if sinks is not None:
        from bsr_team_cache.oci.streaming import streams

        if streams(layer_desc):
            streamed = _streamed(registry, repo, layer_desc, fields, module, commit, where, sinks)
            if streamed is not None:
                return streamed
    return _decoded(layer_desc, fields, read, module, commit, where, private_keys)


def _streamed(
    registry: RegistryBackend,
    repo: str,
    layer_desc: Descriptor,
    fields: dict,
    module: ModuleName,
    commit: str,
    where: str,
    open_sinks: OpenSinks,
) -> StreamedModule | None:
    """The module with its files layer streamed into the sinks and verified: the blob's sha256
    (by ``open_blob``), then the files' b5 (and b4) against the config. None when the layer
    is more than its files and the store wants it: the caller reads it whole instead (the
    store keeps only a layer made again from the files then)."""
    from bsr_team_cache.oci.streaming import stream_files_layer

    sinks = open_sinks()
    try:
        chunks = registry.open_blob(repo, layer_desc.digest, layer_desc.size)
        try:
            layer = stream_files_layer(chunks, layer_desc, where, sinks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a response given up midway is closed now, in this thread
        _check_digests(
            layer.file_digests,
            fields["deps"],
            fields["digest"],
            fields["b4"],
            fields["v1_files"],
            module,
            commit,
        )
    except BaseException:
        sinks.discard()
        raise
    if not layer.exact and sinks.blob is not None:
        sinks.discard()
        return None
    return StreamedModule(
        module=module,
        commit=commit,
        layer=layer_desc,
        size=layer.files_bytes,
        sinks=sinks,
        **fields,
    )


def rewrap_module(
    registry: RegistryBackend,
    repo: str,
    commit: str,
    private_keys: Sequence[PrivateKey],
    recipients: Recipients,
) -> str | None:
    """Re-point an encrypted module artifact's wrapped keys at ``recipients`` (a membership
    change): same config and layer blobs, a new manifest under the same tag. Returns the new
    manifest digest; None if the artifact is absent or its layer is not encrypted."""
    from bsr_team_cache.oci.encryption import rewrap

    found = registry.read_manifest(repo, commit)
    if found is None:
        return None
    where = f"{registry.describe()}/{repo}:{commit}"
    manifest = parse_manifest(found[0], where, ARTIFACT_TYPE)
    layer = _layer_descriptor(manifest, where)
    if not is_encrypted(layer.media_type):
        return None
    manifest["layers"][0]["annotations"] = rewrap(
        layer.annotations, private_keys, recipients, where
    )
    return registry.push_manifest(repo, commit, _canonical_json(manifest), OCI_MANIFEST)


def read_layer_descriptor(registry: RegistryBackend, repo: str, commit: str) -> Descriptor | None:
    """The files layer descriptor (media type, digest, size, encryption annotations) of the
    module artifact at ``commit``, as the repository holds it; None if absent."""
    found = registry.read_manifest(repo, commit)
    if found is None:
        return None
    where = f"{registry.describe()}/{repo}:{commit}"
    return _layer_descriptor(parse_manifest(found[0], where, ARTIFACT_TYPE), where)


def module_layer_descriptor(
    manifest_bytes: bytes, where: str
) -> tuple[ModuleName, str, Descriptor]:
    """The module and commit a module manifest's embedded config names, and its files layer
    descriptor: its form only (decode_module checks the rest). For readers that place the
    layer themselves (lock packs)."""
    manifest = parse_manifest(manifest_bytes, where, ARTIFACT_TYPE)
    config = _config_descriptor(manifest, where)
    if config.data is None:
        raise InvalidContentError(f"{where}: the config is not embedded in the manifest")
    fields = parse_json(config.data, where, "config")
    if not isinstance(fields, dict):
        raise InvalidContentError(f"{where}: config is not a JSON object")
    try:
        module = parse_module_name(fields.get("name"))
        commit = validate_commit_id(fields.get("commit"))
    except InvalidModuleRefError as exc:
        raise InvalidContentError(f"{where}: {exc}") from None
    return module, commit, _layer_descriptor(manifest, where)
