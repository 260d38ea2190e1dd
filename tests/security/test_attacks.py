"""A lying team registry or BSR, driven through the CLI as a member runs it: for each attack,
what the fetch does instead of harming the machine, that nothing was written outside buf's
cache, the store and the export dir, and that a legitimate module still arrives from the next
tier when one exists."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace

import pytest

from bsr_team_cache.bufcache.v3 import module_entry_dir
from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.oci import open_registry
from bsr_team_cache.oci.artifact import (
    ModuleArtifact,
    ModuleDepRecord,
    encode_module,
    module_repository,
    push_module,
)
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.documents import push_document
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.config import CONFIG_TAG, TEAM_CONFIG_TYPE, config_repository
from bsr_team_cache.team.labels import LABEL_INDEX_TAG, LABELS_ARTIFACT_TYPE
from tests.security.conftest import (
    TEAM,
    Legit,
    fetch,
    hits,
    one_line_error,
    plant,
    publish,
)
from tests.security.hostile import Machine, free_port

pytestmark = pytest.mark.slow

# From an entry's directory, v3/modules/b5/<registry>/<owner>/<name>/<commit>, seven levels
# up is the machine: a "commit" that climbs there and names the victim directory.
TRAVERSAL = "../" * 7 + "victim"
EVIL_FILES = {"evil/v1/evil.proto": b'syntax = "proto3";\npackage evil.v1;\n'}


def _synthetic(name: str, commit: str, deps: tuple[ModuleDepRecord, ...] = ()) -> ModuleArtifact:
    """An artifact whose b5 digest is right for its files: only its names lie."""
    digest = b5_from_contents(EVIL_FILES, [d.digest for d in deps])
    return ModuleArtifact(
        parse_module_name(name), commit, digest, deps, dict(EVIL_FILES), "2024-01-01T00:00:00Z"
    )


def _entries(machine: Machine) -> list[str]:
    root = machine.root / "buf-cache" / "v3" / "modules" / "b5"
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("module.yaml"))


@pytest.mark.parametrize("where", ["label index", "dependency record"])
def test_a_path_posing_as_a_commit_never_leaves_the_cache(
    machine: Machine, legit: Legit, layout_url: str, where: str
) -> None:
    """Offline, without buf.lock: the label index (or a dependency record in an artifact's
    config) names a "commit" that climbs out of buf's cache to the victim directory."""
    dead = f"localhost:{free_port()}"  # the BSR cannot be reached
    registry = open_registry(layout_url)
    module = "acme/orders" if where == "dependency record" else "acme/pets"
    (machine.project / "buf.lock").unlink()
    (machine.project / "buf.yaml").write_text(f"version: v2\ndeps:\n  - {dead}/{module}\n")
    if where == "label index":
        root = _synthetic(f"{dead}/acme/pets", TRAVERSAL)
        plant(layout_url, root)
        label = TRAVERSAL
    else:
        money = _synthetic(f"{dead}/acme/money", TRAVERSAL)
        plant(layout_url, money)
        dep = ModuleDepRecord(money.module, TRAVERSAL, money.digest)
        root = _synthetic(f"{dead}/acme/orders", "ab" * 16, (dep,))
        plant(layout_url, root)
        label = root.commit
    push_document(
        registry,
        module_repository(TEAM, root.module),
        LABEL_INDEX_TAG,
        LABELS_ARTIFACT_TYPE,
        {"labels": {"": {"commit": label, "resolved_at": time.time()}}},
    )
    before = machine.snapshot_outside()

    result = fetch(machine, layout_url, legit.ca)

    assert result.returncode == 1
    error = one_line_error(result)
    assert "cannot resolve the deps" in error
    assert (machine.victim / "canary.txt").read_text() == "precious\n"
    assert machine.snapshot_outside() == before
    assert _entries(machine) == []
    if where == "label index":
        assert "malformed label index entry ''" in result.stderr
    else:
        assert "invalid commit id" in result.stderr


def test_an_artifact_naming_another_module_is_refused(
    machine: Machine, legit: Legit, distribution_url: str, buf_bin: str
) -> None:
    publish(distribution_url, legit.artifacts)
    pets = legit.artifact("acme/pets")
    impostor = replace(pets, module=parse_module_name(f"{legit.host}/acme/evil"))
    registry = open_registry(distribution_url)
    push_module(registry, module_repository(TEAM, pets.module), impostor)
    before = machine.snapshot_outside()

    result = fetch(machine, distribution_url, legit.ca)

    assert hits(result) == {"local": 0, "team": 5, "bsr": 1}
    assert "the artifact is for module" in result.stderr and "acme/evil" in result.stderr
    assert not any("acme/evil" in e for e in _entries(machine))
    entry = module_entry_dir(machine.root / "buf-cache", pets.module, pets.commit)
    assert {str(p.relative_to(entry / "files")) for p in (entry / "files").rglob("*.proto")} == set(
        pets.files
    )
    assert machine.snapshot_outside() == before


def test_file_names_with_newlines_cannot_pose_as_another_file_set(
    machine: Machine, legit: Legit, distribution_url: str
) -> None:
    """buf's b5 manifest is line-based: one file whose name holds the second file's manifest
    line hashes exactly like the two files. Such a name is refused before b5 is computed."""
    publish(distribution_url, legit.artifacts)
    pets = legit.artifact("acme/pets")
    first, second = sorted(pets.files)
    shake = hashlib.shake_256(pets.files[second]).digest(64).hex()
    forged_path = f"{first}\nshake256:{shake}  {second}"
    forged = {forged_path: pets.files[first]}

    def manifest(files: dict[str, bytes]) -> str:
        return "".join(
            f"shake256:{hashlib.shake_256(files[p]).digest(64).hex()}  {p}\n" for p in sorted(files)
        )

    assert manifest(forged) == manifest(pets.files)  # the forgery is real
    plant(distribution_url, replace(pets, files=forged))

    result = fetch(machine, distribution_url, legit.ca)

    assert hits(result) == {"local": 0, "team": 5, "bsr": 1}
    assert "unsafe file path" in result.stderr
    entry = module_entry_dir(machine.root / "buf-cache", pets.module, pets.commit)
    assert sorted(
        str(p.relative_to(entry / "files")) for p in (entry / "files").rglob("*") if p.is_file()
    ) == [first, second]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("owner-newline", "the registry sent an invalid module name"),
        ("dep-commit-newline", "the registry sent an invalid commit id"),
        ("graph-missing-commit", "lacks the pinned commit"),
    ],
)
def test_a_lying_bsr_graph_is_a_clear_error(
    machine: Machine, hostile_bsr, layout_url: str, mode: str, message: str
) -> None:
    _host, ca, _ = hostile_bsr(mode, "acme/money")
    before = machine.snapshot_outside()

    result = fetch(machine, layout_url, ca)

    assert result.returncode == 1
    assert message in one_line_error(result)
    assert _entries(machine) == []  # nothing written: no module.yaml with injected keys
    assert machine.snapshot_outside() == before
    with LocalStore(machine.root / "store") as store:
        assert store.stats().entries == 0


@pytest.mark.parametrize(
    ("mode", "shown"), [("nul-path", "'a\\x00.proto'"), ("traversal-path", "'../../escaped.proto'")]
)
def test_bsr_paths_are_checked_before_anything_is_stored_or_published(
    machine: Machine, hostile_bsr, layout_url: str, mode: str, shown: str
) -> None:
    host, ca, _ = hostile_bsr(mode, "acme/pets")
    before = machine.snapshot_outside()

    result = fetch(machine, layout_url, ca)

    assert result.returncode == 1
    error = one_line_error(result)
    assert f"unsafe file path {shown}" in error and "acme/pets" in error
    assert machine.snapshot_outside() == before
    assert not (machine.root / "escaped.proto").exists()
    with LocalStore(machine.root / "store") as store:
        assert store.stats().entries == 0  # not stored ...
    registry = open_registry(layout_url)
    pets = parse_module_name(f"{host}/acme/pets")
    assert registry.list_tags(module_repository(TEAM, pets)) == []  # ... nor published


def test_a_commit_with_a_trailing_newline_in_buf_lock_is_refused(
    machine: Machine, legit: Legit, layout_url: str
) -> None:
    lines = (machine.project / "buf.lock").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith("commit:"))
    commit = lines[index].split(":", 1)[1].strip()
    lines[index] = lines[index].replace(commit, f'"{commit}\\n"')
    (machine.project / "buf.lock").write_text("\n".join(lines) + "\n")

    result = fetch(machine, layout_url, legit.ca)

    assert result.returncode == 2
    error = one_line_error(result)
    assert f"buf.lock:{index + 1}: deps[0].commit: invalid commit" in error


def _push_raw_artifact(url: str, artifact: ModuleArtifact, config: dict) -> None:
    """An artifact whose config says what ``config`` says (blobs and manifest consistent)."""
    encoded = encode_module(artifact)
    raw = json.dumps(config).encode()
    manifest = json.loads(encoded.manifest)
    manifest["config"].update(
        digest=sha256_digest(raw), size=len(raw), data=__import__("base64").b64encode(raw).decode()
    )
    registry = open_registry(url)
    repo = module_repository(TEAM, artifact.module)
    for data in (raw, encoded.layer):
        registry.push_blob(repo, data, sha256_digest(data))
    registry.push_manifest(repo, artifact.commit, json.dumps(manifest).encode(), OCI_MANIFEST)


@pytest.mark.parametrize("document", ["config name", "manifest", "team configuration"])
def test_one_malformed_document_never_stops_the_others(
    machine: Machine, legit: Legit, layout_url: str, document: str
) -> None:
    publish(layout_url, legit.artifacts)
    pets = legit.artifact("acme/pets")
    registry = open_registry(layout_url)
    if document == "config name":
        config = json.loads(encode_module(pets).config)
        _push_raw_artifact(layout_url, pets, {**config, "name": "x"})
        expected, warning = {"local": 0, "team": 5, "bsr": 1}, "invalid module reference 'x'"
    elif document == "manifest":
        repo = module_repository(TEAM, pets.module)
        registry.push_manifest(repo, pets.commit, b"[]", OCI_MANIFEST)
        expected, warning = {"local": 0, "team": 5, "bsr": 1}, "manifest is not a JSON object"
    else:
        push_document(
            registry,
            config_repository(TEAM),
            CONFIG_TAG,
            TEAM_CONFIG_TYPE,
            {"team": TEAM, "cache_strategy": "warp-speed", "members": "everyone"},
        )
        expected, warning = {"local": 0, "team": 6, "bsr": 0}, "team configuration ignored"

    result = fetch(machine, layout_url, legit.ca)

    assert hits(result) == expected
    assert warning in result.stderr
    assert "Traceback" not in result.stderr
    assert len(_entries(machine)) == 6
