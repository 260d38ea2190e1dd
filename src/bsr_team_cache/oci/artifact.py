"""One BSR module commit as one OCI artifact (see docs/artifact-format.md).

manifest (``artifactType: application/vnd.buf.module.v1``)
  config: JSON {name, commit, digest (b5), deps [{name, commit, digest}], create_time, labels}
  layer:  the module's files as a deterministic tar+gzip (sorted, mtime 0, uid/gid 0, 0644)
Repository: ``<namespace>/teams/<team>/dependencies/<host>/<owner>/<module>``; tag = commit.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bsr_team_cache.domain.digest import B5, Digest, b5_from_contents, parse_digest
from bsr_team_cache.domain.moduleref import ModuleName, parse_module_name
from bsr_team_cache.errors import DigestMismatchError, RegistryError
from bsr_team_cache.oci.base import OCI_MANIFEST, RegistryBackend, embedded_data, sha256_digest

ARTIFACT_TYPE = "application/vnd.buf.module.v1"
CONFIG_MEDIA_TYPE = "application/vnd.buf.module.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.buf.module.files.v1.tar+gzip"
_REPO_COMPONENT = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class ModuleDepRecord:
    module: ModuleName
    commit: str
    digest: Digest


@dataclass(frozen=True)
class ModuleArtifact:
    """A module commit's files plus what buf needs to trust and place them."""

    module: ModuleName
    commit: str
    digest: Digest
    deps: tuple[ModuleDepRecord, ...]
    files: dict[str, bytes]
    create_time: str = ""
    # Labels this commit was resolved from when it was published (informational: labels move,
    # the team label index is the place to look them up).
    labels: tuple[str, ...] = ()

    def verify(self) -> None:
        actual = b5_from_contents(self.files, [d.digest for d in self.deps])
        if actual != self.digest:
            raise DigestMismatchError(
                f"{self.module}:{self.commit}: files hash to {actual}, expected {self.digest}"
            )

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.files.values())


def _component(text: str) -> str:
    cleaned = _REPO_COMPONENT.sub("-", text.lower()).strip("-._")
    return cleaned or "x"


def module_repository(team: str, module: ModuleName, namespace: str = "") -> str:
    """``[ns/]teams/<team>/dependencies/<host>/<owner>/<module>``, legal as an OCI name."""
    parts = [p for p in namespace.strip("/").split("/") if p]
    parts += [
        "teams",
        _component(team),
        "dependencies",
        _component(module.registry.replace(":", "-")),
        _component(module.owner),
        _component(module.name),
    ]
    return "/".join(parts)


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def files_layer(files: dict[str, bytes]) -> bytes:
    """A byte-for-byte reproducible tar+gzip of the files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files, key=str.encode):
            info = tarfile.TarInfo(path)
            info.size = len(files[path])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[path]))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def read_files_layer(data: bytes, where: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
            for member in tar:
                if (
                    not member.isfile()
                    or member.name.startswith("/")
                    or ".." in member.name.split("/")
                ):
                    raise RegistryError(f"{where}: unsafe entry {member.name!r} in the files layer")
                extracted = tar.extractfile(member)
                assert extracted is not None
                files[member.name] = extracted.read()
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise RegistryError(f"{where}: unreadable files layer ({exc})") from None
    return files


@dataclass(frozen=True)
class EncodedArtifact:
    """The three blobs of a module artifact, as pushed and as stored locally."""

    manifest: bytes
    config: bytes
    layer: bytes

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    def blobs(self) -> list[tuple[bytes, str]]:
        return [(self.config, sha256_digest(self.config)), (self.layer, sha256_digest(self.layer))]


def encode_module(artifact: ModuleArtifact) -> EncodedArtifact:
    config = _canonical_json(
        {
            "name": str(artifact.module),
            "commit": artifact.commit,
            "digest": str(artifact.digest),
            "create_time": artifact.create_time,
            "labels": sorted(set(artifact.labels)),
            "deps": [
                {"name": str(d.module), "commit": d.commit, "digest": str(d.digest)}
                for d in sorted(artifact.deps, key=lambda d: str(d.module))
            ],
        }
    )
    layer = files_layer(artifact.files)
    manifest = _canonical_json(
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
                    "mediaType": LAYER_MEDIA_TYPE,
                    "digest": sha256_digest(layer),
                    "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": "files.tar.gz"},
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
    return EncodedArtifact(manifest, config, layer)


def decode_module(
    manifest_bytes: bytes, read_blob: Callable[[str], bytes], commit: str, where: str
) -> ModuleArtifact:
    """Parse an artifact whose blobs ``read_blob`` returns verified; check commit and b5."""
    try:
        manifest = json.loads(manifest_bytes)
        if manifest.get("artifactType") != ARTIFACT_TYPE:
            raise RegistryError(f"{where}: not a buf module artifact")
        config = json.loads(read_blob(manifest["config"]["digest"]))
        layer = read_blob(manifest["layers"][0]["digest"])
        artifact = ModuleArtifact(
            module=parse_module_name(config["name"]),
            commit=config["commit"],
            digest=parse_digest(config["digest"], expected_type=B5),
            deps=tuple(
                ModuleDepRecord(
                    parse_module_name(d["name"]),
                    d["commit"],
                    parse_digest(d["digest"], expected_type=B5),
                )
                for d in config["deps"]
            ),
            files=read_files_layer(layer, where),
            create_time=config.get("create_time", ""),
            labels=tuple(config.get("labels", ())),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: malformed module artifact ({exc})") from None
    if artifact.commit != commit:
        raise RegistryError(f"{where}: artifact is for commit {artifact.commit}")
    artifact.verify()
    return artifact


def push_module(registry: RegistryBackend, repo: str, artifact: ModuleArtifact) -> str:
    """Push blobs then the manifest (tag = commit). Returns the manifest digest."""
    encoded = encode_module(artifact)
    for data, digest in encoded.blobs():
        if not registry.blob_exists(repo, digest):
            registry.push_blob(repo, data, digest)
    return registry.push_manifest(repo, artifact.commit, encoded.manifest, OCI_MANIFEST)


def pull_module(
    registry: RegistryBackend,
    repo: str,
    commit: str,
    *,
    proceed: Callable[[], bool] | None = None,
) -> ModuleArtifact | None:
    """Read and verify (sha256 of every blob, then b5 of the files); None if absent, or if
    ``proceed`` (asked once the manifest is in) says the files are no longer wanted."""
    where = f"{registry.describe()}/{repo}:{commit}"
    found = registry.read_manifest(repo, commit)
    if found is None or (proceed is not None and not proceed()):
        return None
    try:
        manifest = json.loads(found[0])
        config_digest = manifest["config"]["digest"]
        layer_digest = manifest["layers"][0]["digest"]
    except (KeyError, IndexError, TypeError, ValueError):
        # Malformed: let decode_module report it precisely.
        return decode_module(found[0], lambda d: registry.read_blob(repo, d), commit, where)
    config = embedded_data(manifest["config"], f"{where} config")
    if config is not None:
        blobs = {config_digest: config, layer_digest: registry.read_blob(repo, layer_digest)}
    else:  # pushed by another tool: config and layer in parallel, one round trip
        with ThreadPoolExecutor(max_workers=1) as side:
            layer = side.submit(registry.read_blob, repo, layer_digest)
            blobs = {config_digest: registry.read_blob(repo, config_digest)}
            blobs[layer_digest] = layer.result()
    return decode_module(found[0], blobs.__getitem__, commit, where)
