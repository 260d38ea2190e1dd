"""Fuzzing the parsers and decoders that read what users, registries and the BSR send: only the
project's own errors (BSRTeamCacheError and its kinds) may escape, never a traceback."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tarfile
from typing import Any

import httpx
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bsr_team_cache.bsr.client import BSRModuleClient, CommitInfo
from bsr_team_cache.bsr.connect import ConnectTransport
from bsr_team_cache.bsr.proto import module_v1_pb2 as mpb
from bsr_team_cache.bsr.proto import owner_v1_pb2 as opb
from bsr_team_cache.domain.buflock import parse_buf_lock
from bsr_team_cache.domain.bufyaml import parse_buf_yaml
from bsr_team_cache.domain.digest import B5, Digest
from bsr_team_cache.domain.moduleref import parse_module_name, parse_module_ref
from bsr_team_cache.errors import BSRTeamCacheError, InvalidContentError
from bsr_team_cache.oci.artifact import (
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    decode_module,
)
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.compression import GZIP_LAYER_MEDIA_TYPE, ZSTD_LAYER_MEDIA_TYPE, zstd_module
from bsr_team_cache.oci.documents import document_manifest, read_versioned_document
from bsr_team_cache.oci.layer import read_files_layer
from bsr_team_cache.team.bundles import BUNDLE_CONFIG_TYPE, BUNDLE_TYPE, read_bundle
from bsr_team_cache.team.config import config_from_json
from bsr_team_cache.team.labels import LABELS_ARTIFACT_TYPE, read_label_index

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PETS = parse_module_name("buf.build/acme/pets")
COMMIT = "ab" * 16

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)
nasty_text = st.lists(
    st.sampled_from([*"ab/:.-_@ \n\t\x00\\%~é", "..", "b5:", "shake256:", ".proto", "0" * 32]),
    max_size=20,
).map("".join)


def only_our_errors(action) -> None:
    with contextlib.suppress(BSRTeamCacheError):
        action()


# -- user input: module refs, buf.yaml, buf.lock -------------------------------------------
@FUZZ
@given(st.one_of(st.text(max_size=80), nasty_text))
def test_module_ref_parser(text: str) -> None:
    only_our_errors(lambda: parse_module_ref(text))
    only_our_errors(lambda: parse_module_name(text))


yaml_documents = st.one_of(
    st.text(max_size=300),
    json_values.map(lambda v: yaml.safe_dump(v)),
    st.fixed_dictionaries(
        {
            "version": st.sampled_from(["v1beta1", "v1", "v2", "v3", 1, None]),
            "deps": st.one_of(
                st.lists(st.one_of(nasty_text, json_values), max_size=4),
                st.lists(
                    st.dictionaries(
                        st.sampled_from(
                            ["name", "commit", "digest", "remote", "owner", "repository"]
                        ),
                        st.one_of(nasty_text, json_values),
                    ),
                    max_size=4,
                ),
                json_values,
            ),
            "modules": json_values,
            "name": st.one_of(nasty_text, json_values),
        }
    ).map(lambda v: yaml.safe_dump(v)),
)


@FUZZ
@given(yaml_documents)
def test_buf_yaml_and_buf_lock_parsers(text: str) -> None:
    only_our_errors(lambda: parse_buf_yaml(text))
    only_our_errors(lambda: parse_buf_lock(text))


# -- the files layer -----------------------------------------------------------------------
member_types = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.FIFOTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.XHDTYPE,
    ]
)
members = st.lists(
    st.tuples(
        st.one_of(nasty_text, st.text(max_size=300)),
        member_types,
        st.binary(max_size=200),
        st.sampled_from(["pax", "gnu", "ustar"]),
    ),
    max_size=6,
)


def _tar(spec: list[tuple[str, bytes, bytes, str]], flips: list[tuple[int, int]]) -> bytes:
    raw = io.BytesIO()
    for name, kind, content, fmt in spec:
        info = tarfile.TarInfo(name or "x")
        info.type = kind
        info.size = len(content) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
        info.linkname = "../../target" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        form = (
            {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT}[fmt]
            if fmt != "ustar"
            else tarfile.USTAR_FORMAT
        )
        try:
            header = info.tobuf(form, "utf-8", "surrogateescape")
        except (ValueError, UnicodeError):
            continue
        raw.write(header)
        if info.size:
            raw.write(content + bytes(-len(content) % 512))
    data = bytearray(raw.getvalue() + bytes(1024))
    for position, value in flips:  # corrupt some header bytes
        if data:
            data[position % len(data)] = value
    return bytes(data)


CODECS = {
    GZIP_LAYER_MEDIA_TYPE: gzip.compress,
    ZSTD_LAYER_MEDIA_TYPE: lambda data: zstd_module().compress(data, level=3),
}


@FUZZ
@given(
    members,
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4),
    st.sampled_from(sorted(CODECS)),
)
def test_files_layer_reader_with_arbitrary_members(spec, flips, media_type) -> None:
    layer = CODECS[media_type](_tar(spec, flips))
    try:
        files = read_files_layer(layer, "fuzz", media_type)
    except InvalidContentError:
        return
    for path in files:  # what is accepted is a safe module path
        assert path.endswith(".proto") or path in (
            "LICENSE",
            "buf.md",
            "README.md",
            "README.markdown",
        )
        assert not path.startswith("/") and ".." not in path.split("/") and "\n" not in path


@FUZZ
@given(
    st.binary(max_size=2000),
    st.sampled_from([None, *sorted(CODECS)]),
    st.sampled_from(sorted(CODECS)),
)
def test_files_layer_reader_with_arbitrary_bytes(
    data: bytes, compressed_as: str | None, media_type: str
) -> None:
    layer = CODECS[compressed_as](data) if compressed_as else data
    only_our_errors(lambda: read_files_layer(layer, "fuzz", media_type))


# -- registry documents ----------------------------------------------------------------------
class MemoryRegistry:
    """Serves whatever the test put in it (manifests by tag, blobs by digest)."""

    def __init__(self) -> None:
        self.manifests: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}

    def describe(self) -> str:
        return "memory:"

    def read_manifest(self, repo: str, reference: str):
        data = self.manifests.get(reference)
        return None if data is None else (data, OCI_MANIFEST)

    def read_blob(self, repo: str, digest: str, max_bytes: int | None = None) -> bytes:
        from bsr_team_cache.errors import MissingBlobError

        if digest not in self.blobs:
            raise MissingBlobError(f"no blob {digest}")
        return self.blobs[digest]


def _descriptor(media_type: str, data: bytes, embed: bool, tweak: dict) -> dict:
    import base64

    descriptor: dict[str, Any] = {
        "mediaType": media_type,
        "digest": sha256_digest(data),
        "size": len(data),
    }
    if embed:
        descriptor["data"] = base64.b64encode(data).decode()
    descriptor.update(tweak)
    return descriptor


tweaks = st.dictionaries(
    st.sampled_from(["mediaType", "digest", "size", "data", "annotations"]), json_values, max_size=2
)


@FUZZ
@given(
    config=json_values,
    layer=st.binary(max_size=300),
    embed=st.booleans(),
    tweak=tweaks,
    manifest_noise=st.one_of(st.none(), json_values),
)
def test_module_artifact_decoding(config, layer, embed, tweak, manifest_noise) -> None:
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": _descriptor(CONFIG_MEDIA_TYPE, config_bytes, embed, tweak),
        "layers": [_descriptor(LAYER_MEDIA_TYPE, layer, False, {})],
    }
    data = json.dumps(manifest_noise if manifest_noise is not None else manifest).encode()
    blobs = {sha256_digest(config_bytes): config_bytes, sha256_digest(layer): layer}

    def read(descriptor) -> bytes:
        if descriptor.digest not in blobs:
            raise InvalidContentError("missing")
        return blobs[descriptor.digest]

    only_our_errors(lambda: decode_module(data, read, PETS, COMMIT, "fuzz"))


@FUZZ
@given(
    document=json_values, kind=st.sampled_from(["labels", "config", "bundle"]), raw=st.booleans()
)
def test_documents_and_bundles_decoding(document, kind: str, raw: bool) -> None:
    registry = MemoryRegistry()
    payload = json.dumps(document).encode()
    if kind == "bundle":
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_TYPE,
            "config": _descriptor(BUNDLE_CONFIG_TYPE, payload, True, {}),
            "layers": document if isinstance(document, list) else [],
        }
        registry.manifests["latest"] = json.dumps(document if raw else manifest).encode()
        only_our_errors(lambda: read_bundle(registry, "r", "latest"))
        return
    artifact_type = (
        LABELS_ARTIFACT_TYPE if kind == "labels" else "application/vnd.bsr-team-cache.team.v1"
    )
    registry.manifests["labels" if kind == "labels" else "latest"] = (
        payload if raw else document_manifest(artifact_type, payload)
    )
    if kind == "labels":
        only_our_errors(lambda: read_label_index(registry, "r"))
    else:
        only_our_errors(lambda: read_versioned_document(registry, "r", "latest", artifact_type))
        only_our_errors(lambda: config_from_json(document, "fuzz"))


# -- Connect responses -----------------------------------------------------------------------
def _client(answer) -> BSRModuleClient:
    def handler(request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(
            200, content=answer(method), headers={"Content-Type": "application/proto"}
        )

    transport = ConnectTransport(
        transport=httpx.MockTransport(handler), token_provider=lambda h: None, max_attempts=1
    )
    return BSRModuleClient(transport)


commit_ids = st.one_of(st.just(COMMIT), st.just("ab" * 16 + "\n"), nasty_text, st.uuids().map(str))


@st.composite
def graph_answers(draw) -> dict[str, bytes]:
    graph = mpb.GetGraphResponse()
    ids = draw(st.lists(commit_ids, min_size=0, max_size=3))
    for i, commit_id in enumerate(ids):
        graph.graph.commits.add(
            id=commit_id,
            owner_id=draw(st.sampled_from(["o1", "o2", ""])),
            module_id=draw(st.sampled_from(["m1", "m2", ""])),
            digest=mpb.Digest(
                type=draw(st.sampled_from([0, 1, 2])),
                value=draw(st.binary(min_size=0, max_size=70)),
            ),
        )
        if i and draw(st.booleans()):
            graph.graph.edges.add(
                from_node=mpb.Graph.Node(commit_id=ids[0]),
                to_node=mpb.Graph.Node(commit_id=draw(commit_ids)),
            )
    modules = mpb.GetModulesResponse()
    for module_id in draw(st.lists(st.sampled_from(["m1", "m2"]), max_size=2)):
        modules.modules.add(
            id=module_id, name=draw(nasty_text), owner_id=draw(st.sampled_from(["o1", "o2"]))
        )
    owners = opb.GetOwnersResponse()
    for owner_id in draw(st.lists(st.sampled_from(["o1", "o2"]), max_size=2)):
        owners.owners.add(organization=opb.Organization(id=owner_id, name=draw(nasty_text)))
    download = mpb.DownloadResponse()
    for commit_id in draw(st.lists(commit_ids, max_size=2)):
        content = download.contents.add(commit=mpb.Commit(id=commit_id))
        for _ in range(draw(st.integers(0, 3))):
            content.files.add(
                path=draw(st.one_of(nasty_text, st.text(max_size=20))),
                content=draw(st.binary(max_size=30)),
            )
    answers = {
        "GetGraph": graph.SerializeToString(),
        "GetModules": modules.SerializeToString(),
        "GetOwners": owners.SerializeToString(),
        "Download": download.SerializeToString(),
    }
    if draw(st.booleans()):  # or plain garbage for one of them
        answers[draw(st.sampled_from(sorted(answers)))] = draw(st.binary(max_size=200))
    return answers


@FUZZ
@given(graph_answers())
def test_connect_response_decoding(answers: dict[str, bytes]) -> None:
    with _client(lambda method: answers[method]) as client:
        only_our_errors(lambda: client.graph([parse_module_ref(f"buf.build/acme/pets:{COMMIT}")]))
        commit = CommitInfo(
            PETS, COMMIT, Digest(B5, bytes(64)), __import__("datetime").datetime(2024, 1, 1)
        )
        only_our_errors(lambda: client.download([commit]))


def _chunk_document(columns: dict, strings: list, count: object) -> dict:
    return {"version": 1, "count": count, "strings": strings, "columns": columns}


@FUZZ
@given(
    st.one_of(
        json_values,
        st.builds(
            _chunk_document,
            st.dictionaries(
                st.sampled_from(
                    ["team", "member", "module", "commit", "time_us", "tier", "bytes", "build"]
                ),
                st.lists(st.integers(min_value=-3, max_value=1 << 62), max_size=4),
            ),
            st.lists(nasty_text | st.sampled_from(["buf.build/acme/pets", COMMIT]), max_size=6),
            st.integers(min_value=-1, max_value=5),
        ),
    ),
    st.booleans(),
)
def test_usage_chunk_and_event_decoding(document: Any, as_line: bool) -> None:
    """Team usage chunks and imported event lines: refused with the project's errors only."""
    from bsr_team_cache.usage.chunks import decode_chunk
    from bsr_team_cache.usage.events import parse_event

    with contextlib.suppress(BSRTeamCacheError):
        if as_line:
            parse_event(document)
        else:
            decode_chunk(gzip.compress(json.dumps(document).encode()), "chunk")
