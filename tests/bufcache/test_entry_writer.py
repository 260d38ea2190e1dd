"""Building one entry of buf's cache file by file (EntryWriter, what a streamed layer fills):
nothing is visible before ``commit``; ``discard`` leaves nothing; files come from any thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bsr_team_cache.bufcache.v3 import EntryWriter, module_entry_dir, write_module
from bsr_team_cache.domain.digest import parse_digest
from bsr_team_cache.domain.moduleref import parse_module_name

PETS = parse_module_name("localhost:8443/acme/pets")
MONEY = parse_module_name("localhost:8443/acme/money")
COMMIT = "41b522898fb54799af1f78eb67f18d87"
DEP = (MONEY, "2bb75b8cc22842fa8841c641fb25d3a6", parse_digest("b5:" + "98" * 64))
FILES = {f"acme/pets/d{i % 9}/v1/f{i}.proto": f"// {i}\n".encode() * (i + 1) for i in range(300)}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_files_added_from_several_threads_make_the_entry_write_module_makes(
    tmp_path: Path,
) -> None:
    writer = EntryWriter.open(tmp_path / "cache", PETS, COMMIT)
    assert writer is not None
    paths = list(FILES)

    def add_share(start: int) -> None:
        for path in paths[start::3]:
            content = FILES[path]
            writer.add(path, (content[: len(content) // 2], content[len(content) // 2 :]))

    threads = [threading.Thread(target=add_share, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entry = module_entry_dir(tmp_path / "cache", PETS, COMMIT)
    assert not entry.exists()  # staged only

    assert writer.commit([DEP])

    write_module(tmp_path / "whole", PETS, COMMIT, FILES, [DEP])
    assert _tree(entry) == _tree(module_entry_dir(tmp_path / "whole", PETS, COMMIT))
    assert not list(entry.parent.glob(".*"))  # no staging left behind
    assert EntryWriter.open(tmp_path / "cache", PETS, COMMIT) is None  # complete: left alone


def test_a_discarded_entry_leaves_nothing(tmp_path: Path) -> None:
    writer = EntryWriter(tmp_path, PETS, COMMIT)
    for path, content in list(FILES.items())[:50]:
        writer.add(path, (content,))

    writer.discard()
    writer.discard()  # again: nothing to do

    entry = module_entry_dir(tmp_path, PETS, COMMIT)
    assert not entry.exists() and list(entry.parent.iterdir()) == []


def test_an_entry_completed_meanwhile_is_kept(tmp_path: Path) -> None:
    writer = EntryWriter(tmp_path, PETS, COMMIT)
    writer.add("acme/pets/v1/mine.proto", (b"mine",))
    assert write_module(tmp_path, PETS, COMMIT, {"acme/pets/v1/theirs.proto": b"theirs"}, [])

    assert not writer.commit([])

    entry = module_entry_dir(tmp_path, PETS, COMMIT)
    assert _tree(entry / "files") == {"acme/pets/v1/theirs.proto": b"theirs"}
    assert not list(entry.parent.glob(".*"))


def test_a_file_where_a_directory_must_go_is_an_error_and_discard_cleans_up(
    tmp_path: Path,
) -> None:
    writer = EntryWriter(tmp_path, PETS, COMMIT)
    writer.add("a.proto", (b"x",))
    with pytest.raises(OSError):
        writer.add("a.proto/b.proto", (b"y",))
    with pytest.raises(FileExistsError):
        writer.add("a.proto", (b"again",))  # never overwritten
    writer.discard()
    assert list(module_entry_dir(tmp_path, PETS, COMMIT).parent.iterdir()) == []
