"""The team label index: merge rules and format, on the on-disk registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from bsr_team_cache.errors import InvalidContentError
from bsr_team_cache.oci.base import OCI_MANIFEST
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.team.labels import (
    LABEL_INDEX_TAG,
    LabelRecord,
    read_label_index,
    update_label_index,
)

REPO = "teams/t/dependencies/buf.build/acme/pets"


def test_update_merges_and_pushes_only_on_change(tmp_path: Path) -> None:
    reg = OCILayoutRegistry(tmp_path)
    assert read_label_index(reg, REPO) == {}
    assert update_label_index(reg, REPO, {"main": LabelRecord("a" * 32, 1000.0)})
    assert update_label_index(reg, REPO, {"v1": LabelRecord("b" * 32, 1001.0)})
    assert read_label_index(reg, REPO) == {
        "main": LabelRecord("a" * 32, 1000.0),
        "v1": LabelRecord("b" * 32, 1001.0),
    }
    # Same commit, recently refreshed: nothing pushed.
    assert not update_label_index(
        reg, REPO, {"main": LabelRecord("a" * 32, 1010.0)}, refresh_after=60
    )
    # The label moved: pushed at once.
    assert update_label_index(reg, REPO, {"main": LabelRecord("c" * 32, 1011.0)}, refresh_after=60)
    assert read_label_index(reg, REPO)["main"].commit == "c" * 32
    assert reg.list_tags(REPO) == [LABEL_INDEX_TAG]


def test_a_foreign_artifact_under_the_tag_is_an_error(tmp_path: Path) -> None:
    reg = OCILayoutRegistry(tmp_path)
    reg.push_manifest(REPO, LABEL_INDEX_TAG, b'{"schemaVersion":2}', OCI_MANIFEST)
    with pytest.raises(
        InvalidContentError, match=r"expected a application/vnd\.buf\.module\.labels\.v1 artifact"
    ):
        read_label_index(reg, REPO)
