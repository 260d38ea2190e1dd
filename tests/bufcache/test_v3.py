from __future__ import annotations

from pathlib import Path

import pytest

from bsr_team_cache.bufcache.v3 import buf_cache_dir, module_entry_dir, write_module
from bsr_team_cache.domain.digest import parse_digest
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import BSRTeamCacheError

PETS = parse_module_name("localhost:8443/acme/pets")
MONEY = parse_module_name("localhost:8443/acme/money")
COMMIT = "41b522898fb54799af1f78eb67f18d87"


def test_layout_and_module_yaml_as_buf_writes_them(tmp_path):
    dep = (MONEY, "2bb75b8cc22842fa8841c641fb25d3a6", parse_digest("b5:" + "98" * 64))
    assert write_module(tmp_path, PETS, COMMIT, {"acme/pets/v1/pet.proto": b"x"}, [dep])
    entry = module_entry_dir(tmp_path, PETS, COMMIT)
    assert entry == tmp_path / "v3/modules/b5/localhost:8443/acme/pets" / COMMIT
    assert (entry / "files/acme/pets/v1/pet.proto").read_bytes() == b"x"
    assert (entry / "module.yaml").read_text() == (
        "version: v1\nfiles_dir: files\ndeps:\n"
        "  - name: localhost:8443/acme/money\n"
        "    commit: 2bb75b8cc22842fa8841c641fb25d3a6\n"
        f"    digest: b5:{'98' * 64}\n"
    )
    assert not write_module(tmp_path, PETS, COMMIT, {"other": b"y"}, [])  # valid entry kept
    assert not list(entry.parent.glob(".*"))  # no staging left behind


def test_half_written_entry_is_replaced(tmp_path):
    entry = module_entry_dir(tmp_path, PETS, COMMIT)
    (entry / "files").mkdir(parents=True)
    (entry / "files" / "junk.proto").write_text("half")
    assert write_module(tmp_path, PETS, COMMIT, {"a.proto": b"a"}, [])
    assert not (entry / "files" / "junk.proto").exists()


def test_a_large_module_is_written_whole_and_a_link_in_its_place_refused(tmp_path):
    """Past the threaded-write threshold every file lands with its bytes; a symbolic link in
    the entry's place is refused, never followed."""
    files = {f"big/d{i % 7}/f{i}.proto": f"// {i}\n".encode() * (i % 50 + 1) for i in range(600)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    entry = module_entry_dir(tmp_path / "cache", PETS, COMMIT)
    entry.parent.mkdir(parents=True)
    entry.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(BSRTeamCacheError, match="symbolic link"):
        write_module(tmp_path / "cache", PETS, COMMIT, files, [])
    assert list(elsewhere.iterdir()) == []
    entry.unlink()
    assert write_module(tmp_path / "cache", PETS, COMMIT, files, [])
    written = {
        str(p.relative_to(entry / "files")): p.read_bytes()
        for p in (entry / "files").rglob("*")
        if p.is_file()
    }
    assert written == files
    assert not list(entry.parent.glob(".*"))  # no staging left behind


def test_unsafe_paths_are_refused(tmp_path):
    with pytest.raises(BSRTeamCacheError, match="unsafe file path"):
        write_module(tmp_path, PETS, COMMIT, {"../evil.proto": b"x"}, [])
    assert not module_entry_dir(tmp_path, PETS, COMMIT).exists()


def test_cache_dir_resolution_matches_buf():
    assert str(buf_cache_dir({"BUF_CACHE_DIR": "/c"})) == "/c"
    assert str(buf_cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"})) == "/x/buf"
    assert str(buf_cache_dir({"HOME": "/h"})) == "/h/.cache/buf"


def test_buf_layout_check(tmp_path: Path, buf_bin: str) -> None:
    from bsr_team_cache.bufcache.v3 import check_buf_layout, parse_buf_version
    from bsr_team_cache.errors import BSRTeamCacheError

    assert check_buf_layout(buf_bin) == "v3"  # the pinned real buf
    assert parse_buf_version("1.75.0\n") == (1, 75, 0)
    old = tmp_path / "buf"
    old.write_text("#!/bin/sh\necho 1.28.1\n")
    old.chmod(0o755)
    with pytest.raises(BSRTeamCacheError, match=r"buf 1\.28\.1.*predates v3.*--no-buf-cache"):
        check_buf_layout(str(old))
    weird = tmp_path / "weird"
    weird.write_text("#!/bin/sh\necho hello\n")
    weird.chmod(0o755)
    with pytest.raises(BSRTeamCacheError, match="cannot tell the version"):
        check_buf_layout(str(weird))
