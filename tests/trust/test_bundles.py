"""Signed bundles: the config (every member's commit, b5 and layer) signed at the bundle's
repository and version; a bundle signed by a member without the maintainer role is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.team.bundles import (
    ANN_OWNER,
    LATEST,
    bundle_context,
    bundle_repository,
    new_bundle,
    push_bundle,
    read_bundle,
)
from bsr_team_cache.team.trust import DocumentSigner, TrustedConfig
from bsr_team_cache.trust.signatures import SignatureError
from tests.trust.conftest import BOB, MIA, signed_team
from tests.trust.test_offline_labels import _artifact

TRUSTED = TrustedConfig(signed_team(), True)
UNSIGNED = TrustedConfig(None, False)


def _push(registry: OCILayoutRegistry, name: str, signer_key, member: str) -> str:
    artifact = _artifact("buf.build/acme/pets", "a" * 32, b'syntax = "proto3";\n')
    bundle = new_bundle(name, "t", "", member, "v1", [artifact])
    repo = bundle_repository("t", name)
    signer = None
    if signer_key is not None:
        signer = DocumentSigner(signer_key, member, TRUSTED).at(bundle_context(repo, "v1"))
    push_bundle(
        registry,
        repo,
        bundle,
        sources={},
        layers={m.layer_digest: m.data for m in bundle.members},
        tags=("v1", LATEST),
        annotations={ANN_OWNER: "t"},
        signer=signer,
    )
    return repo


def test_a_maintainers_bundle_verifies_at_its_place_and_version(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path)
    repo = _push(registry, "apis", MIA, "mia")
    for reference in ("v1", LATEST):
        found = read_bundle(registry, repo, reference, trusted=TRUSTED, context_repo=repo)
        assert found is not None and found[0].members[0].commit == "a" * 32
    # Copied to another bundle's repository (or tagged as another version), it is refused.
    other = bundle_repository("t", "other")
    manifest, media_type = registry.read_manifest(repo, "v1")
    registry.push_blob(
        other,
        registry.read_blob(repo, _layer_digest(registry, repo)),
        _layer_digest(registry, repo),
    )
    registry.push_manifest(other, "v1", manifest, media_type)
    registry.push_manifest(repo, "v2", manifest, media_type)
    with pytest.raises(SignatureError) as moved:
        read_bundle(registry, other, "v1", trusted=TRUSTED, context_repo=other)
    assert str(moved.value) == (
        f"{registry.describe()}/{other}:v1: bundle not trusted (the signature by mia does not"
        " match (a changed document, or one signed for another place than"
        " teams/t/bundles/other:v1))"
    )
    with pytest.raises(SignatureError) as renamed:
        read_bundle(registry, repo, "v2", trusted=TRUSTED, context_repo=repo)
    assert str(renamed.value) == (
        f"{registry.describe()}/{repo}:v2: bundle not trusted (it is version v1)"
    )


def _layer_digest(registry: OCILayoutRegistry, repo: str) -> str:
    found = read_bundle(registry, repo, "v1")
    assert found is not None
    return found[0].members[0].layer_digest


@pytest.mark.parametrize(
    ("key", "member", "reason"),
    [
        (BOB, "bob", "signed by bob (member), not by a maintainer or admin"),
        (None, "bob", "unsigned"),
    ],
)
def test_a_bundle_not_signed_by_a_maintainer_is_refused(
    tmp_path: Path, key, member: str, reason: str
) -> None:
    registry = OCILayoutRegistry(tmp_path)
    repo = _push(registry, "apis", key, member)
    with pytest.raises(SignatureError) as refused:
        read_bundle(registry, repo, trusted=TRUSTED, context_repo=repo)
    assert str(refused.value) == (
        f"{registry.describe()}/{repo}:latest: bundle not trusted ({reason})"
    )
    # An unsigned team takes it as it is.
    found = read_bundle(registry, repo, trusted=UNSIGNED, context_repo=repo)
    assert found is not None and found[0].creator == member
