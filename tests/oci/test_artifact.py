from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import DigestMismatchError, InvalidContentError, RegistryError
from bsr_team_cache.oci.artifact import (
    ARTIFACT_TYPE,
    ModuleArtifact,
    files_layer,
    module_repository,
    pull_module,
    push_module,
)
from bsr_team_cache.oci.layout import OCILayoutRegistry

FILES = {"a/v1/a.proto": b'syntax = "proto3";\n', "LICENSE": b"MIT\n"}
PETS = parse_module_name("localhost:8443/acme/pets")


def _artifact() -> ModuleArtifact:
    return ModuleArtifact(
        parse_module_name("localhost:8443/acme/pets"),
        "ab" * 16,
        b5_from_contents(FILES),
        (),
        dict(FILES),
        "2024-01-01T00:00:00+00:00",
    )


def test_repository_names_are_legal_oci_names():
    name = parse_module_name("localhost:8443/Acme/Pets_API")
    assert module_repository("Platform Team", name, "org/ns") == (
        "org/ns/teams/platform-team/dependencies/localhost-8443/acme/pets_api"
    )


def test_layer_is_reproducible_and_order_independent():
    assert files_layer(FILES) == files_layer(dict(reversed(list(FILES.items()))))


def test_push_pull_round_trip_and_tags(tmp_path):
    registry = OCILayoutRegistry(tmp_path)
    artifact = _artifact()
    repo = "teams/t/dependencies/x/acme/pets"
    digest = push_module(registry, repo, artifact)
    assert push_module(registry, repo, artifact) == digest  # idempotent, same bytes
    assert registry.list_tags(repo) == [artifact.commit]
    pulled = pull_module(registry, repo, artifact.module, artifact.commit)
    assert pulled == artifact
    manifest = json.loads(registry.read_manifest(repo, artifact.commit)[0])
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert pull_module(registry, repo, artifact.module, "cd" * 16) is None


def test_tampering_is_detected(tmp_path):
    registry = OCILayoutRegistry(tmp_path)
    repo = "teams/t/dependencies/x/acme/pets"
    push_module(registry, repo, _artifact())
    blobs = sorted((tmp_path / repo / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    blobs[-1].write_bytes(b"garbage")
    with pytest.raises(DigestMismatchError, match="is corrupt"):
        pull_module(registry, repo, PETS, "ab" * 16)


def test_wrong_files_fail_b5_verification(tmp_path):
    registry = OCILayoutRegistry(tmp_path)
    bad = ModuleArtifact(
        parse_module_name("localhost:8443/acme/pets"),
        "ab" * 16,
        b5_from_contents({"other.proto": b"x"}),
        (),
        dict(FILES),
    )
    push_module(registry, "r/x", bad)
    with pytest.raises(DigestMismatchError, match="files hash to"):
        pull_module(registry, "r/x", PETS, "ab" * 16)


def test_path_traversal_repo_is_refused(tmp_path):
    with pytest.raises(RegistryError, match="invalid repository name"):
        OCILayoutRegistry(tmp_path).list_tags("../etc")


def test_config_is_embedded_and_labels_recorded(tmp_path):
    import base64
    import dataclasses

    from bsr_team_cache.oci.artifact import encode_module

    artifact = dataclasses.replace(_artifact(), labels=("v1", "main", "v1"))
    encoded = encode_module(artifact)
    manifest = json.loads(encoded.manifest)
    assert base64.b64decode(manifest["config"]["data"]) == encoded.config
    assert json.loads(encoded.config)["labels"] == ["main", "v1"]
    reg = OCILayoutRegistry(tmp_path)
    push_module(reg, "r", artifact)
    pulled = pull_module(reg, "r", artifact.module, artifact.commit)
    assert pulled is not None and set(pulled.labels) == {"main", "v1"}
    # Embedded config that does not match its descriptor is refused like a corrupt blob.
    manifest["config"]["data"] = base64.b64encode(b'{"tampered": true}').decode()
    reg.push_manifest("r", "bad", json.dumps(manifest).encode(), manifest["mediaType"])
    with pytest.raises(InvalidContentError, match="embedded data does not match size"):
        pull_module(reg, "r", artifact.module, "bad")
    same_size = b"x" * len(encoded.config)
    manifest["config"]["data"] = base64.b64encode(same_size).decode()
    reg.push_manifest("r", "bad", json.dumps(manifest).encode(), manifest["mediaType"])
    with pytest.raises(DigestMismatchError):
        pull_module(reg, "r", artifact.module, "bad")


def _padded_layers() -> dict[str, bytes]:
    """Layers with the right files and something more a peer could add (zstd, as written; and
    gzip, as written before)."""
    import gzip
    import io
    import tarfile

    from bsr_team_cache.oci.compression import zstd_module

    zstd = zstd_module()
    exact = files_layer(FILES)
    raw = zstd.decompress(exact)
    hidden = io.BytesIO()
    with tarfile.open(fileobj=hidden, mode="w") as tar:
        info = tarfile.TarInfo("../evil.sh")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"boom"))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        last = tar.getmembers()[-1]
    archive_end = last.offset_data + -(-last.size // 512) * 512  # before the zero blocks
    named = io.BytesIO()
    with gzip.GzipFile(fileobj=named, mode="wb", filename="files.tar", mtime=0) as out:
        out.write(raw)
    return {
        "trailing bytes": exact + b"\x00garbage" * 1000,
        "a second zstd frame": exact + zstd.compress(b"more"),
        "members after one zero block": zstd.compress(
            raw[:archive_end] + bytes(512) + hidden.getvalue()
        ),
        "zero padding past tar's records": zstd.compress(raw + bytes(128 << 10)),
        "a second gzip member": gzip.compress(raw, mtime=0) + gzip.compress(b"more"),
        "a file name in the gzip header": named.getvalue(),
    }


def test_a_layer_is_kept_as_it_arrived_only_when_it_is_exactly_its_files(tmp_path):
    """What a peer adds around the right files (reachable by readers other than ours, or just
    bytes to store and re-publish) is dropped: the layer is made again from the files."""
    registry = OCILayoutRegistry(tmp_path / "registry")
    artifact = _artifact()
    push_module(registry, "pets", artifact)
    got = pull_module(registry, "pets", PETS, artifact.commit)
    assert got is not None and got.layer == files_layer(FILES)  # ours: kept as it arrived
    for what, layer in _padded_layers().items():
        planted = ModuleArtifact(**{**artifact.__dict__, "layer": layer, "layer_of": 0})
        push_module(registry, "pets", planted)
        got = pull_module(registry, "pets", PETS, artifact.commit)
        assert got is not None and got.files == FILES, what
        assert got.layer is None and got.files_layer() == files_layer(FILES), what


def test_a_layer_follows_its_files_through_replace():
    artifact = _artifact()
    assert artifact.files_layer() == files_layer(FILES)
    other = {"b/v1/b.proto": b'syntax = "proto3";\n'}
    assert replace(artifact, files=other).files_layer() == files_layer(other)
    assert replace(artifact, labels=("main",)).files_layer() is artifact.files_layer()
