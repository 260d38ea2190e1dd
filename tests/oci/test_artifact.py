from __future__ import annotations

import json

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
