"""Dependency bundles: many module commits behind one manifest, pulled with one manifest request
plus parallel blob transfers (small layers travel inside the manifest and need none).

A bundle lives at ``[ns/]teams/<team>/bundles/<name>`` with tags ``latest`` and an immutable
``v<N>``. Its layers are the member modules' files layers, mounted from the module repositories
(no blob is uploaded twice); its config (embedded in the manifest) holds each member's name,
commit, b5 digest, deps and layer digest, so a member is rebuilt and verified without reading the
module repositories.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from bsr_team_cache.domain.digest import B5, parse_digest
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import BSRTeamCacheError, RegistryError
from bsr_team_cache.oci.artifact import (
    LAYER_MEDIA_TYPE,
    ModuleArtifact,
    ModuleDepRecord,
    files_layer,
    read_files_layer,
)
from bsr_team_cache.oci.base import (
    OCI_MANIFEST,
    RegistryBackend,
    descriptor_bytes,
    embedded_data,
    read_typed_manifest,
    sha256_digest,
)
from bsr_team_cache.oci.documents import canonical_json
from bsr_team_cache.team.config import validate_repository_name

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


def validate_bundle_name(name: str) -> str:
    return validate_repository_name("bundle", name, 100)


def bundle_repository(team: str, name: str, namespace: str = "") -> str:
    prefix = f"{namespace.strip('/')}/" if namespace.strip("/") else ""
    return f"{prefix}teams/{team}/bundles/{validate_bundle_name(name)}"


def shared_bundle_repository(name: str, namespace: str = "") -> str:
    """The seed's organization-wide place: ``shared/organization/bundles/<name>``."""
    prefix = f"{namespace.strip('/')}/" if namespace.strip("/") else ""
    return f"{prefix}shared/organization/bundles/{validate_bundle_name(name)}"


@dataclass(frozen=True)
class BundleMember:
    artifact_module: str
    commit: str
    digest: str
    deps: tuple[tuple[str, str, str], ...]  # (name, commit, b5)
    create_time: str
    layer_digest: str
    layer_size: int
    # The layer itself when it travels inside the bundle manifest (small modules).
    data: bytes | None = field(default=None, compare=False, repr=False)

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


def member_of(artifact: ModuleArtifact) -> BundleMember:
    layer = files_layer(artifact.files)
    return BundleMember(
        str(artifact.module),
        artifact.commit,
        str(artifact.digest),
        tuple((str(d.module), d.commit, str(d.digest)) for d in artifact.deps),
        artifact.create_time,
        sha256_digest(layer),
        len(layer),
        layer,
    )


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
) -> str:
    """Push a bundle; member layers are mounted from ``sources[layer digest]`` (a repository
    that has it), uploaded from ``layers`` only if the registry declines to mount."""

    def place(member: BundleMember) -> None:
        digest = member.layer_digest
        if registry.blob_exists(repo, digest):
            return
        source = sources.get(digest)
        if source and registry.mount_blob(repo, digest, source):
            return
        data = (layers or {}).get(digest)
        if data is None and source:
            data = registry.read_blob(source, digest)
        if data is None:
            raise RegistryError(f"bundle {bundle.name}: no copy of {member.key}'s files layer")
        registry.push_blob(repo, data, digest)

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(bundle.members)))) as pool:
        list(pool.map(place, bundle.members))
    config = _config(bundle)
    if not registry.blob_exists(repo, sha256_digest(config)):
        registry.push_blob(repo, config, sha256_digest(config))
    embedded: dict[str, str] = {}
    budget = EMBED_TOTAL_MAX
    for m in sorted(bundle.members, key=lambda m: m.layer_size):
        data = m.data if m.data is not None else (layers or {}).get(m.layer_digest)
        if data is None or len(data) > EMBED_LAYER_MAX or len(data) > budget:
            continue
        embedded[m.layer_digest] = base64.b64encode(data).decode()
        budget -= len(data)
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
                    "mediaType": LAYER_MEDIA_TYPE,
                    "digest": m.layer_digest,
                    "size": m.layer_size,
                    "annotations": {
                        "org.opencontainers.image.title": f"{m.artifact_module}@{m.commit}.tar.gz"
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


def read_bundle(
    registry: RegistryBackend, repo: str, reference: str = LATEST
) -> tuple[Bundle, dict[str, str]] | None:
    """(bundle, manifest annotations), verified; None if absent."""
    found = read_typed_manifest(registry, repo, reference, BUNDLE_TYPE)
    if found is None:
        return None
    manifest, where, _ = found
    try:
        config = json.loads(descriptor_bytes(registry, repo, manifest["config"], where))
        bundle = Bundle(
            name=config["name"],
            version=config["version"],
            team=config["team"],
            description=config.get("description", ""),
            creator=config.get("creator", ""),
            created=config.get("created", ""),
            members=tuple(
                BundleMember(
                    m["name"],
                    m["commit"],
                    m["digest"],
                    tuple((d["name"], d["commit"], d["digest"]) for d in m["deps"]),
                    m.get("create_time", ""),
                    m["layer"]["digest"],
                    int(m["layer"]["size"]),
                )
                for m in config["members"]
            ),
        )
        inline = {
            layer["digest"]: data
            for layer in manifest.get("layers", [])
            if (data := embedded_data(layer, where)) is not None
        }
        if inline:
            members = tuple(replace(m, data=inline.get(m.layer_digest)) for m in bundle.members)
            bundle = replace(bundle, members=members)
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: malformed bundle ({exc})") from None
    return bundle, dict(manifest.get("annotations") or {})


def pull_members(
    registry: RegistryBackend,
    repo: str,
    members: Iterable[BundleMember],
    parallel: int = 16,
) -> list[ModuleArtifact]:
    """Read members' layers in parallel; each is verified (sha256, then b5)."""
    wanted = list(members)

    def one(member: BundleMember) -> ModuleArtifact:
        where = f"{registry.describe()}/{repo} {member.key}"
        layer = (
            member.data
            if member.data is not None
            else registry.read_blob(repo, member.layer_digest)
        )
        artifact = ModuleArtifact(
            parse_module_name(member.artifact_module),
            member.commit,
            parse_digest(member.digest, expected_type=B5),
            tuple(
                ModuleDepRecord(parse_module_name(n), c, parse_digest(d, expected_type=B5))
                for n, c, d in member.deps
            ),
            read_files_layer(layer, where),
            member.create_time,
        )
        artifact.verify()
        return artifact

    if not wanted:
        return []
    remote = [m for m in wanted if m.data is None]
    if not remote:
        return [one(m) for m in wanted]
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(remote)))) as pool:
        return list(pool.map(one, wanted))


def new_bundle(
    name: str,
    team: str,
    description: str,
    creator: str,
    version: str,
    artifacts: Iterable[ModuleArtifact],
) -> Bundle:
    members = {}
    for artifact in artifacts:
        member = member_of(artifact)
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
