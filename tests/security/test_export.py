"""--export writes the deps' .proto files only, never through a link it did not make, and never
over a file it did not write."""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import Legit, fetch, hits, one_line_error, publish
from tests.security.hostile import Machine

pytestmark = pytest.mark.slow


def _protos(legit: Legit) -> set[str]:
    return {p for a in legit.artifacts.values() for p in a.files if p.endswith(".proto")}


def test_export_into_the_project_keeps_its_own_files(
    machine: Machine, legit: Legit, layout_url: str
) -> None:
    publish(layout_url, legit.artifacts)
    own = {"README.md": "# shop\n", "LICENSE": "shop's license\n", "buf.md": "shop docs\n"}
    for name, text in own.items():
        (machine.project / name).write_text(text)
    shop = (machine.project / "shop" / "v1" / "shop.proto").read_text()

    result = fetch(machine, layout_url, legit.ca, "--export", str(machine.project))

    assert hits(result) == {"local": 0, "team": 6, "bsr": 0}
    for name, text in own.items():
        assert (machine.project / name).read_text() == text
    assert (machine.project / "shop" / "v1" / "shop.proto").read_text() == shop
    for path in _protos(legit):
        assert (machine.project / path).is_file()
    record = json.loads((machine.project / ".bsr-team-cache-export.json").read_text())
    assert set(record["files"]) == _protos(legit)
    # Again: the files it wrote are its own to rewrite.
    assert (
        hits(fetch(machine, layout_url, legit.ca, "--export", str(machine.project)))["local"] == 6
    )


def test_export_never_follows_a_planted_link(
    machine: Machine, legit: Legit, layout_url: str
) -> None:
    publish(layout_url, legit.artifacts)
    export = machine.root / "export"
    (export / "acme").symlink_to(machine.victim, target_is_directory=True)
    before = machine.snapshot_outside("buf-cache", "store")

    result = fetch(machine, layout_url, legit.ca, "--export", str(export))

    assert result.returncode == 2
    assert "acme is a symbolic link or a file" in one_line_error(result)
    assert sorted(p.name for p in machine.victim.iterdir()) == ["canary.txt"]
    after = machine.snapshot_outside("buf-cache", "store")
    assert all(k.startswith("export/") for k in after.keys() - before.keys())
    assert {k: v for k, v in after.items() if not k.startswith("export/")} == {
        k: v for k, v in before.items() if not k.startswith("export/")
    }
    assert after["export/acme"] == before["export/acme"] == f"link:{machine.victim}"


def test_export_never_overwrites_a_file_it_did_not_write(
    machine: Machine, legit: Legit, layout_url: str
) -> None:
    publish(layout_url, legit.artifacts)
    export = machine.root / "export"
    theirs = export / "acme" / "pets" / "v1" / "pet.proto"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("// someone else's file\n")

    result = fetch(machine, layout_url, legit.ca, "--export", str(export))

    assert result.returncode == 2
    error = one_line_error(result)
    assert f"{theirs} exists and was not written by bsr-team-cache" in error
    assert "remove it, or export into a directory of its own" in error
    assert theirs.read_text() == "// someone else's file\n"
    # A file it wrote and someone changed since is not overwritten either.
    theirs.unlink()
    assert fetch(machine, layout_url, legit.ca, "--export", str(export)).returncode == 0
    theirs.write_text("// edited by hand\n")
    again = fetch(machine, layout_url, legit.ca, "--export", str(export))
    assert again.returncode == 2
    assert "was changed since it was exported" in one_line_error(again)
    assert theirs.read_text() == "// edited by hand\n"
