"""The one reader of private key files (_fs.read_private_file): the signing key of the auth
server, a team's document signing key and a member's decryption key all go through it. The
temporary files and directories of the store and buf's cache (_fs.new_temp_file/_dir)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bsr_team_cache._fs import new_temp_dir, new_temp_file, read_private_file
from bsr_team_cache.errors import ConfigError

PEM = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"


def _refusal(path: Path, max_bytes: int = 1024) -> str:
    with pytest.raises(ConfigError) as refused:
        read_private_file(path, "private key", max_bytes)
    return str(refused.value)


def test_a_private_file_is_read_through_a_link(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(PEM)
    key.chmod(0o600)
    link = tmp_path / "mounted.pem"  # a mounted secret is often a link to the file
    link.symlink_to(key)
    assert read_private_file(link, "private key", 1024) == PEM


def test_what_is_not_a_private_key_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(PEM)
    key.chmod(0o640)
    assert _refusal(key) == (
        f"{key}: the private key is readable by others (mode 0640); it must be private:"
        f" chmod 600 {key} (a mounted secret: mode 0400)"
    )
    key.chmod(0o600)
    assert _refusal(key, max_bytes=10) == f"{key}: the private key is larger than 10 bytes"
    fifo = tmp_path / "fifo.pem"  # would block a reader for ever
    os.mkfifo(fifo, 0o600)
    assert _refusal(fifo) == f"{fifo}: the private key is not a regular file"
    absent = tmp_path / "absent.pem"
    assert _refusal(absent) == (
        f"{absent}: cannot read the private key (No such file or directory)"
    )


def test_a_key_of_another_owner_is_read_as_ssh_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group or others reading a key is refused only when the key is this user's (ssh's
    rule): a secret mounted read-only by another owner is not this user's to fix."""
    key = tmp_path / "mounted.pem"
    key.write_bytes(PEM)
    key.chmod(0o440)
    owner = key.stat().st_uid
    monkeypatch.setattr(os, "getuid", lambda: owner + 1)  # this process: another user
    assert read_private_file(key, "private key", 1024) == PEM
    monkeypatch.setattr(os, "getuid", lambda: owner)
    assert "readable by others (mode 0440)" in _refusal(key)


def test_temporary_files_and_directories_are_new_and_private(tmp_path: Path) -> None:
    made = []
    for _ in range(50):
        fd, path = new_temp_file(tmp_path, ".layer.")
        os.write(fd, b"x")
        os.close(fd)
        made.append(path)
        made.append(new_temp_dir(tmp_path, ".commit."))
    assert len(set(made)) == 100 and sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(p) for p in made
    )
    files = [Path(p) for p in made if ".layer." in p]
    dirs = [Path(p) for p in made if ".commit." in p]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs} == {0o700}
    assert all(p.name.startswith(".layer.") and len(p.name) == len(".layer.") + 12 for p in files)
    with pytest.raises(FileNotFoundError):
        new_temp_file(tmp_path / "absent", ".layer.")
