"""The embedded registry's index.json: parsed once per content, and never stale when another
process (another registry object) rewrites it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bsr_team_cache.oci import layout
from bsr_team_cache.oci.base import OCI_MANIFEST
from bsr_team_cache.oci.layout import OCILayoutRegistry

REPO = "teams/a/packs"


def _manifest(n: int) -> bytes:
    return b'{"schemaVersion": 2, "mediaType": "%s", "n": %d}' % (OCI_MANIFEST.encode(), n)


def test_an_index_is_parsed_once_per_content_and_never_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    real_parse = layout.parse_json

    def counting(data: bytes, where: str, what: str) -> object:
        if what == "index.json":
            parsed.append(where)
        return real_parse(data, where, what)

    monkeypatch.setattr(layout, "parse_json", counting)
    mine, theirs = OCILayoutRegistry(tmp_path), OCILayoutRegistry(tmp_path)
    for n in range(3):
        mine.push_manifest(REPO, f"t{n}", _manifest(n), OCI_MANIFEST)
    parsed.clear()
    for n in range(3):
        assert mine.read_manifest(REPO, f"t{n}") == (_manifest(n), OCI_MANIFEST)
    assert mine.list_tags(REPO) == ["t0", "t1", "t2"]
    assert len(parsed) == 1  # four reads of one content

    theirs.push_manifest(REPO, "t3", _manifest(3), OCI_MANIFEST)  # another process's write
    assert mine.list_tags(REPO) == ["t0", "t1", "t2", "t3"]
    digest = theirs.push_manifest(REPO, "t0", _manifest(9), OCI_MANIFEST)  # a tag moved
    assert mine.read_manifest(REPO, "t0") == (_manifest(9), OCI_MANIFEST)
    mine.delete_manifest(REPO, digest)  # a write through the cached index
    assert mine.list_tags(REPO) == ["t1", "t2", "t3"]
    assert theirs.list_tags(REPO) == ["t1", "t2", "t3"]
    assert mine.read_manifest(REPO, "t0") is None
