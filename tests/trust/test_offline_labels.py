"""The issue's must-show: in a signed team, a label index forged by a member without the
maintainer role (signed with their own registered key) is ignored offline with a warning, while
the maintainer's index resolves the label offline. On the on-disk registry and on Distribution."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.domain.buflock import LockedDep
from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name, parse_module_ref
from bsr_team_cache.errors import BSRTeamCacheError
from bsr_team_cache.oci.artifact import ModuleArtifact, module_repository, push_module
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.documents import canonical_json, push_document
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.labels import (
    LABEL_INDEX_TAG,
    LABELS_ARTIFACT_TYPE,
    LabelRecord,
    label_index_repository,
    labels_context,
    update_label_index,
)
from bsr_team_cache.team.resolve import TeamContext, label_writer, resolve_refs
from bsr_team_cache.trust.keys import SIGNING_KEY_ENV
from bsr_team_cache.trust.signatures import sign
from tests.security.hostile import free_port
from tests.trust.conftest import BOB, MIA, create_signed_team, pem

LEGIT = "a" * 32
EVIL = "e" * 32


def _artifact(name: str, commit: str, text: bytes) -> ModuleArtifact:
    files = {"pets/v1/pets.proto": text}
    return ModuleArtifact(
        parse_module_name(name),
        commit,
        b5_from_contents(files, []),
        (),
        files,
        "2024-01-01T00:00:00Z",
    )


@pytest.fixture(
    params=["oci-layout", pytest.param("distribution", marks=pytest.mark.slow)],
)
def team_registry(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[RegistryBackend, str]:
    """(registry, namespace): an on-disk OCI layout, or a real Distribution (a namespace of
    its own, so that signatures are shown to name repositories without it)."""
    if request.param == "oci-layout":
        return OCILayoutRegistry(tmp_path / "registry"), ""
    distribution = request.getfixturevalue("distribution")
    return HTTPRegistry(distribution.url), f"must-show-{time.time_ns()}"


def test_a_members_forged_label_index_is_ignored_offline(
    team_registry: tuple[RegistryBackend, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, ns = team_registry
    dead = f"localhost:{free_port()}"  # the BSR cannot be reached
    pets = parse_module_name(f"{dead}/acme/pets")
    legit = _artifact(str(pets), LEGIT, b'syntax = "proto3";\npackage pets.v1;\n')
    evil = _artifact(str(pets), EVIL, b'syntax = "proto3";\npackage evil.v1;\n')
    for artifact in (legit, evil):  # members publish modules: both are in the registry
        push_module(registry, module_repository("t", pets, ns), artifact)
    create_signed_team(registry, LocalStore(tmp_path / "alice"), ns)
    repo = label_index_repository("t", pets, ns)
    where = f"{registry.describe()}/{repo}:{LABEL_INDEX_TAG}"

    # mia (maintainer) resolved the default label through the BSR: her machine signs the index.
    monkeypatch.setenv(SIGNING_KEY_ENV, pem(MIA))
    mia_machine = LocalStore(tmp_path / "mia")
    warnings: list[str] = []
    writes, signer = label_writer(TeamContext(registry, "t", ns, "mia"), mia_machine, warnings)
    assert writes and signer is not None
    now = time.time()
    assert update_label_index(
        registry, repo, {"": LabelRecord(LEGIT, now)}, signer=signer.at(labels_context("t", pets))
    )
    # bob (member) does not write the index of a signed team, even with his key configured.
    monkeypatch.setenv(SIGNING_KEY_ENV, pem(BOB))
    bob_machine = LocalStore(tmp_path / "bob")
    assert label_writer(TeamContext(registry, "t", ns, "bob"), bob_machine, []) == (False, None)

    # A new machine, the BSR unreachable: mia's index resolves the label.
    dan_machine = LocalStore(tmp_path / "dan")
    ref = parse_module_ref(str(pets))

    def offline() -> list[str]:
        resolution = resolve_refs(
            [ref], bsr=BSRModuleClient(), team=TeamContext(registry, "t", ns), store=dan_machine
        )
        assert resolution.source == "label index"
        assert resolution.lock.deps == (LockedDep(pets, LEGIT, legit.digest),)
        return resolution.warnings

    said = offline()
    assert said[0].startswith("the BSR is unavailable (")
    assert said[1].startswith("trusting team t's configuration on first use (signed by alice;")
    assert said[2] == f"{ref} resolved to {LEGIT} from the label index (0 min old)"

    # bob forges the index, signed with his registered key, straight to the registry.
    forged = {"labels": {"": {"commit": EVIL, "resolved_at": now + 1}}}
    signature = sign(BOB, "bob", labels_context("t", pets), canonical_json(forged))
    push_document(registry, repo, LABEL_INDEX_TAG, LABELS_ARTIFACT_TYPE, forged, signature)

    with pytest.raises(BSRTeamCacheError) as refused:
        resolve_refs(
            [ref], bsr=BSRModuleClient(), team=TeamContext(registry, "t", ns), store=dan_machine
        )
    message = str(refused.value)
    assert message.startswith("cannot resolve the deps: the BSR is unavailable (")
    ignored = (
        f"team label index of {pets} ignored ({where}: signed by bob (member), not by a"
        " maintainer or admin)"
    )
    assert f"{ref}: no label index entry ({ignored})" in message
    assert EVIL not in message

    # mia's next refresh replaces the forgery (it is not merged into hers) and resolves again.
    assert update_label_index(
        registry,
        repo,
        {"": LabelRecord(LEGIT, now + 2)},
        signer=signer.at(labels_context("t", pets)),
    )
    assert offline()[1] == f"{ref} resolved to {LEGIT} from the label index (0 min old)"
