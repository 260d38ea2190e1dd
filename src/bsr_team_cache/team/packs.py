"""Lock packs: every module a buf.lock pins, in one artifact, so that a machine new to a lock
gets its deps with one request (two for large packs) instead of two per module.

A pack lives at ``[ns/]teams/<team>/packs:lock-<sha256 of the lock's pins>``: a reader finds it
from buf.lock alone, with no index to consult. Its manifest (artifact type PACK_TYPE) embeds a
gzip-compressed config listing each member's own module manifest (the one the local store
keeps, config embedded), and one layer: the members' files layers concatenated in that order
(embedded in the manifest too when small). A reader checks the pack's shape (members pinned
by the lock, sizes that add up exactly), then decodes each member exactly as a module pulled
on its own (sha256 of its layer slice, config against the module and commit, paths and
limits, b5) and the caller matches it against buf.lock. Nothing in a pack is trusted for being
in a pack: a forged or damaged one costs a warning and the modules are pulled one by one.

A pack is written by the second machine that fetches a lock from the team registry (a lock only
one machine ever uses costs the registry nothing), from the entries of its local store. Teams
that encrypt get no packs: their members' layers are re-wrapped when members change, which a
pack's copies would escape.
"""

from __future__ import annotations

import base64
import gzip
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from bsr_team_cache._deadline import InBackground, seconds_left
from bsr_team_cache.domain.buflock import LockedDep
from bsr_team_cache.errors import InvalidContentError, RegistryError
from bsr_team_cache.oci.artifact import ModuleArtifact, decode_module, module_layer_descriptor
from bsr_team_cache.oci.base import (
    OCI_MANIFEST,
    Descriptor,
    RegistryBackend,
    descriptor_bytes,
    document_limit,
    gunzip_within,
    parse_descriptor,
    parse_json,
    sha256_digest,
    typed_manifest,
    verify_blob,
)
from bsr_team_cache.oci.documents import canonical_json
from bsr_team_cache.oci.streaming import STREAM_LAYER_BYTES

if TYPE_CHECKING:
    from bsr_team_cache.oci.encryption import PrivateKey

PACK_TYPE = "application/vnd.bsr-team-cache.pack.v1"
# The config as packs are written: its JSON gzip-compressed. It lists every member's own
# manifest, whose digests and names make most of a pack of small modules (564 KB of manifest
# for 200 modules of 60 KB of layers), and compresses about 3.6x. Packs with the plain config
# (PACK_CONFIG_TYPE, written before) are read as well.
PACK_CONFIG_GZIP_TYPE = "application/vnd.bsr-team-cache.pack.config.v1+json+gzip"
PACK_CONFIG_TYPE = "application/vnd.bsr-team-cache.pack.config.v1+json"
# The members' files layers (each a compressed tar), concatenated: a reader splits it by the
# sizes their manifests give.
PACK_LAYER_TYPE = "application/vnd.bsr-team-cache.pack.layers.v1"
# Packs are for many small modules, where requests cost more than bytes; beyond this the
# modules are pulled one by one (in parallel, and without holding them all in memory).
PACK_MAX_BYTES = 64 * 1024 * 1024
# Members' layers are at most this (the size from which a module's layer is streamed to disk
# on its own, never whole in memory): larger modules are not packed.
PACK_MEMBER_MAX_BYTES = STREAM_LAYER_BYTES
# The layer rides inside the manifest up to this size (one request), keeping the manifest far
# below registries' limits (Distribution: 4 MiB) and our own document limit.
EMBED_MAX = 1024 * 1024
_MAX_MANIFEST_B64 = 256 * 1024  # a member's module manifest, base64


class PackTooLargeError(ValueError):
    """The pack's manifest would exceed the document limit (registries refuse such manifests:
    Distribution's is 4 MiB)."""


def encode_pack(members: Sequence[tuple[bytes, bytes]]) -> tuple[bytes, bytes, bytes]:
    """(manifest, config, layer) of a pack of ``members``: (module manifest, its files layer).
    The layer is embedded when small and the manifest stays within the document limit;
    PackTooLargeError if even the manifest without it would not."""
    document = canonical_json(
        {
            "members": [
                {"manifest": base64.b64encode(manifest).decode()} for manifest, _ in members
            ],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    if len(document) > document_limit():  # readers refuse a config inflating past it
        raise PackTooLargeError(f"a pack config of {len(document)} bytes")
    config = gzip.compress(document, compresslevel=9, mtime=0)
    layer = b"".join(layer for _, layer in members)
    for embed in (len(layer) <= EMBED_MAX, False):
        manifest = _pack_manifest(config, layer, embed, len(members))
        if len(manifest) <= document_limit():
            return manifest, config, layer
    raise PackTooLargeError(f"a pack manifest of {len(manifest)} bytes")


def _pack_manifest(config: bytes, layer: bytes, embed: bool, count: int) -> bytes:
    layer_descriptor: dict[str, object] = {
        "mediaType": PACK_LAYER_TYPE,
        "digest": sha256_digest(layer),
        "size": len(layer),
    }
    if embed:
        layer_descriptor["data"] = base64.b64encode(layer).decode()
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": PACK_TYPE,
            "config": {
                "mediaType": PACK_CONFIG_GZIP_TYPE,
                "digest": sha256_digest(config),
                "size": len(config),
                "data": base64.b64encode(config).decode(),
            },
            "layers": [layer_descriptor],
            "annotations": {"org.opencontainers.image.title": f"lock pack of {count}"},
        }
    )


def push_pack(
    registry: RegistryBackend, repo: str, tag: str, members: Sequence[tuple[bytes, bytes]]
) -> str:
    """Push a pack (blobs, then the manifest that makes it visible); its manifest digest."""
    manifest, config, layer = encode_pack(members)
    for data in (config, layer):  # registries check that a manifest's blobs exist
        digest = sha256_digest(data)
        if not registry.blob_exists(repo, digest):
            registry.push_blob(repo, data, digest)
    return registry.push_manifest(repo, tag, manifest, OCI_MANIFEST)


def read_pack_config(
    registry: RegistryBackend, repo: str, manifest: Mapping[str, object], where: str
) -> object:
    """The config document of the pack manifest ``manifest`` (either type), its digest checked
    and its size bounded (compressed and inflated, by the document limit); InvalidContentError
    if it is not one."""
    descriptor = parse_descriptor(
        manifest.get("config"),
        f"{where} config",
        media_types=(PACK_CONFIG_GZIP_TYPE, PACK_CONFIG_TYPE),
        max_size=document_limit(),
    )
    data = descriptor_bytes(registry, repo, descriptor, where)
    if descriptor.media_type == PACK_CONFIG_GZIP_TYPE:
        data = _inflated(data, f"{where} config")
    return parse_json(data, where, "config")


def _inflated(data: bytes, where: str) -> bytes:
    """A gzip stream's content, refused past the document limit (never inflated beyond it)."""
    limit = document_limit()
    return gunzip_within(data, limit, where, f"inflates past {limit} B")


class PackLayerUnreadable(InvalidContentError):
    """The pack's layer, read as it arrived, could not be read to its end (cut short, refused,
    not its size or digest): the members whose bytes were not taken before are pulled one by
    one. ``cause`` is what the read raised."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class _ArrivingLayer:
    """A pack's layer read by a thread of its own while the fetch checks and writes the members
    whose bytes are in: the first members' work overlaps the transfer of the others. Taking a
    member's bytes needs nothing else of the layer, as each member is checked on its own (its
    slice's sha256 against its manifest, then b5 against buf.lock); a layer whose read fails
    gives nothing more, even of the bytes it holds."""

    def __init__(self, chunks: Iterator[bytes], size: int, where: str) -> None:
        self._chunks = chunks
        self._size = size
        self._where = where
        self._data = bytearray()
        self._failure: BaseException | None = None
        self._done = self._stopped = False
        self._arrived = threading.Condition()
        InBackground(self._read, "lock-pack-layer")  # RuntimeError if no thread can start

    def _read(self) -> None:
        try:
            for chunk in self._chunks:
                with self._arrived:
                    if self._stopped:
                        return
                    if len(self._data) + len(chunk) > self._size:
                        raise InvalidContentError(
                            f"{self._where}: its layer exceeds {self._size} B"
                        )
                    self._data += chunk
                    self._arrived.notify_all()
            if len(self._data) != self._size:
                raise InvalidContentError(f"{self._where}: its layer is not {self._size} B")
        except BaseException as exc:  # given to the members still waiting
            with self._arrived:
                self._failure = exc
        finally:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            with self._arrived:
                self._done = True
                self._arrived.notify_all()

    def take(self, start: int, end: int) -> bytes:
        """The layer's bytes ``start:end`` once they are in, waiting within the caller's
        deadline; PackLayerUnreadable if the read failed, or the deadline passed first."""
        with self._arrived:
            if not self._wait(lambda: len(self._data) >= end):
                late = RegistryError(f"{self._where}: the deadline passed reading its layer")
                raise PackLayerUnreadable(str(late), late)
            if self._failure is not None or len(self._data) < end:
                cause = self._failure or InvalidContentError("its layer ended early")
                raise PackLayerUnreadable(f"{self._where}: {cause}", cause)
            with memoryview(self._data) as view:  # one copy (no resize while it is held)
                return bytes(view[start:end])

    def stop(self) -> None:
        """Read no more of it (the thread ends at its next chunk)."""
        with self._arrived:
            self._stopped = True

    def failure(self) -> BaseException | None:
        """What the read raised, once it has ended (waiting within the caller's deadline: a
        RegistryError once that passes); None if it read the layer whole, or was stopped."""
        with self._arrived:
            if not self._wait(lambda: False):
                return RegistryError(f"{self._where}: the deadline passed reading its layer")
            return self._failure

    def _wait(self, ready: Callable[[], bool]) -> bool:
        """Wait (holding ``_arrived``) until ``ready()`` or the read has ended; False if the
        caller's deadline passed first."""
        while not (ready() or self._done):
            left = seconds_left()
            if left == 0:
                return False
            self._arrived.wait(left)
        return True


class Pack:
    """A pack read and checked for shape; its members are decoded on demand (``artifact``)."""

    def __init__(
        self, where: str, members: dict[str, tuple[bytes, int, int]], layer: bytes | _ArrivingLayer
    ) -> None:
        self.where = where
        self._members = members  # commit -> (module manifest, offset and size in the layer)
        self._layer = layer

    def __contains__(self, commit: str) -> bool:
        return commit in self._members

    def __len__(self) -> int:
        return len(self._members)

    def layer_size(self, commit: str) -> int:
        """Bytes of the member's files layer (compressed), as the pack carries it."""
        return self._members[commit][2]

    def close(self) -> None:
        """Read no more of a layer still arriving (the fetch has taken what it needed)."""
        if isinstance(self._layer, _ArrivingLayer):
            self._layer.stop()

    def layer_failure(self) -> BaseException | None:
        """For a layer read as it arrived: what its read raised, once it has ended (its digest
        is checked after its last byte, when every member may have been taken, each checked on
        its own). None for a layer read whole (checked before this pack was made)."""
        if isinstance(self._layer, _ArrivingLayer):
            return self._layer.failure()
        return None

    def artifact(
        self, dep: LockedDep, private_keys: Sequence[PrivateKey] | None = None
    ) -> ModuleArtifact:
        """The member for ``dep``, checked as a module pulled on its own would be (its layer's
        sha256, config, paths, limits, b5); InvalidContentError if it is not sound,
        PackLayerUnreadable if the pack's layer could not be read as far as its bytes."""
        manifest, offset, size = self._members[dep.commit]
        if isinstance(self._layer, _ArrivingLayer):
            layer = self._layer.take(offset, offset + size)
        else:
            layer = self._layer[offset : offset + size]
        where = f"{self.where} {dep.module}:{dep.commit}"

        def read(descriptor: Descriptor) -> bytes:
            if descriptor.data is not None:  # the member's embedded config
                return descriptor.data
            if descriptor.size != len(layer):
                raise InvalidContentError(f"{where}: names a blob that is not in the pack")
            return verify_blob(layer, descriptor.digest, where)

        return decode_module(manifest, read, dep.module, dep.commit, where, private_keys)


def read_pack(
    registry: RegistryBackend, repo: str, tag: str, wanted: Mapping[str, LockedDep]
) -> Pack | None:
    """The pack at ``tag``, checked for shape: members are modules ``wanted`` pins (by
    "module:commit"), each once, whose layers fill the pack's layer exactly. None if absent;
    InvalidContentError if it is not a sound pack."""
    return decode_pack(registry, repo, tag, registry.read_manifest(repo, tag), wanted)


def decode_pack(
    registry: RegistryBackend,
    repo: str,
    tag: str,
    found: tuple[bytes, str] | None,
    wanted: Mapping[str, LockedDep],
    *,
    arriving: bool = False,
) -> Pack | None:
    """read_pack of the manifest ``found`` (as ``registry.read_manifest`` answered); the
    layer, unless embedded, is read from ``registry``: whole before this returns, or with
    ``arriving`` by a thread of its own, members being taken as their bytes come in."""
    checked = typed_manifest(registry, repo, tag, found, PACK_TYPE)
    if checked is None:
        return None
    manifest, where, _ = checked
    config = read_pack_config(registry, repo, manifest, where)
    if len(manifest["layers"]) != 1:
        raise InvalidContentError(f"{where}: a pack has exactly one layer")
    layer_descriptor = parse_descriptor(
        manifest["layers"][0], f"{where} layer", media_types=(PACK_LAYER_TYPE,),
        max_size=PACK_MAX_BYTES,
    )  # fmt: skip
    listed = config.get("members") if isinstance(config, dict) else None
    if not isinstance(listed, list) or not 0 < len(listed) <= len(wanted):
        raise InvalidContentError(
            f"{where}: config members must be a list of 1 to {len(wanted)} modules"
        )
    parts: list[tuple[LockedDep, bytes, int]] = []
    for i, item in enumerate(listed):
        encoded = item.get("manifest") if isinstance(item, dict) else None
        if not isinstance(encoded, str) or len(encoded) > _MAX_MANIFEST_B64:
            raise InvalidContentError(f"{where}: member {i} has no module manifest")
        try:
            member_manifest = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise InvalidContentError(f"{where}: member {i}'s manifest is not base64") from None
        module, commit, layer = module_layer_descriptor(member_manifest, f"{where} member {i}")
        dep = wanted.get(f"{module}:{commit}")
        if dep is None:
            raise InvalidContentError(f"{where}: member {module}:{commit} is not pinned here")
        if any(p[0].commit == commit for p in parts):
            raise InvalidContentError(f"{where}: member {module}:{commit} is listed twice")
        if layer.size > PACK_MEMBER_MAX_BYTES:  # such modules are streamed on their own
            raise InvalidContentError(
                f"{where}: member {module}:{commit} has a layer over {PACK_MEMBER_MAX_BYTES} B"
            )
        parts.append((dep, member_manifest, layer.size))
    if sum(size for _, _, size in parts) != layer_descriptor.size:
        raise InvalidContentError(f"{where}: the members' layers do not fill the pack's layer")
    layer: bytes | _ArrivingLayer | None = None
    if arriving and layer_descriptor.data is None:
        chunks = registry.open_blob(repo, layer_descriptor.digest, layer_descriptor.size)
        try:
            layer = _ArrivingLayer(chunks, layer_descriptor.size, where)
        except RuntimeError:  # no thread: read it whole here
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    if layer is None:
        layer = descriptor_bytes(registry, repo, layer_descriptor, where)
    members, offset = {}, 0
    for dep, member_manifest, size in parts:
        members[dep.commit] = (member_manifest, offset, size)
        offset += size
    return Pack(where, members, layer)
