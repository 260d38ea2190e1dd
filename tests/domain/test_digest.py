import hashlib
from pathlib import Path

import pytest

from bsr_team_cache.domain.digest import (
    Digest,
    b4_digest,
    b5_digest,
    b5_from_contents,
    manifest_text,
    module_file_paths,
    parse_digest,
)
from bsr_team_cache.errors import InvalidDigestError


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _sh(data: bytes) -> str:
    return hashlib.shake_256(data).hexdigest(64)


def test_b5_follows_bufs_algorithm_step_by_step(tmp_path):
    root = _write(tmp_path, {"b/v1/b.proto": "syntax = 'proto3';\n", "a.proto": "x"})
    manifest = (
        f"shake256:{_sh(b'x')}  a.proto\n"
        f"shake256:{_sh(b'syntax = ' + bytes([39]) + b'proto3' + bytes([39]) + b';' + bytes([10]))}"
        "  b/v1/b.proto\n"
    )
    dep = "b5:" + "ab" * 64
    expected = "b5:" + _sh(f"shake256:{_sh(manifest.encode())}\n{dep}".encode())
    assert str(b5_digest(root, [dep])) == expected


def test_b5_without_deps_has_no_trailing_newline(tmp_path):
    root = _write(tmp_path, {"a.proto": "x"})
    manifest = f"shake256:{_sh(b'x')}  a.proto\n".encode()
    assert str(b5_digest(root)) == "b5:" + _sh(f"shake256:{_sh(manifest)}".encode())


def test_deps_are_sorted_so_order_does_not_matter(tmp_path):
    root = _write(tmp_path, {"a.proto": "x"})
    d1, d2 = "b5:" + "01" * 64, "b5:" + "ff" * 64
    assert b5_digest(root, [d1, d2]) == b5_digest(root, [d2, d1])
    assert b5_digest(root, [d1]) != b5_digest(root, [d2])


def test_file_set_is_protos_license_and_first_doc_file(tmp_path):
    root = _write(
        tmp_path,
        {
            "a/x.proto": "",
            "LICENSE": "",
            "README.md": "",
            "buf.md": "",
            "buf.yaml": "",
            "notes.txt": "",
            "sub/LICENSE": "",
            "sub/buf.md": "",
        },
    )
    assert sorted(module_file_paths(root)) == ["LICENSE", "a/x.proto", "buf.md"]
    (root / "buf.md").unlink()
    assert sorted(module_file_paths(root)) == ["LICENSE", "README.md", "a/x.proto"]


def test_manifest_sorts_by_path_bytes():
    text = manifest_text(
        {"b.proto": b"\x00" * 64, "B.proto": b"\x01" * 64, "a/z.proto": b"\x02" * 64}
    )
    paths = [line.split("  ", 1)[1] for line in text.decode().splitlines()]
    assert paths == ["B.proto", "a/z.proto", "b.proto"]


def test_in_memory_and_on_disk_agree(tmp_path):
    files = {"p/v1/p.proto": 'syntax = "proto3";\n', "LICENSE": "MIT\n"}
    root = _write(tmp_path, files)
    dep = "b5:" + "cd" * 64
    assert b5_from_contents({k: v.encode() for k, v in files.items()}, [dep]) == b5_digest(
        root, [dep]
    )


def test_many_files_hash_on_threads_like_one(tmp_path):
    files = {f"pkg{i % 7}/f{i}.proto": f"// {i}\n" * (i + 1) for i in range(100)}
    root = _write(tmp_path, files)
    assert b5_digest(root) == b5_from_contents({k: v.encode() for k, v in files.items()})


def test_b4_includes_v1_config_files(tmp_path):
    root = _write(tmp_path, {"a.proto": "x"})
    plain = b4_digest(root)
    with_yaml = b4_digest(root, v1_buf_yaml=b"version: v1\n")
    assert plain.type == "shake256" and str(plain).startswith("shake256:")
    assert plain != with_yaml
    manifest = (
        f"shake256:{_sh(b'x')}  a.proto\nshake256:{_sh(b'version: v1' + bytes([10]))}  buf.yaml\n"
    ).encode()
    assert with_yaml.hex == _sh(manifest)


def test_parse_round_trip():
    text = "b5:" + "0f" * 64
    assert str(parse_digest(text)) == text
    assert parse_digest(text) == Digest("b5", bytes([15]) * 64)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("b5", "expected b5:<128 hex>"),
        ("b6:" + "00" * 64, "unknown digest type 'b6'"),
        ("b5:abc", "expected 128 hex characters"),
        ("b5:" + "zz" * 64, "not hexadecimal"),
        ("b1-abcdef", "no longer supported"),
        ("b3:" + "00" * 64, "no longer supported"),
    ],
)
def test_bad_digests(text, message):
    with pytest.raises(InvalidDigestError, match=message):
        parse_digest(text)


def test_expected_type_is_enforced():
    with pytest.raises(InvalidDigestError, match="expected a b5 digest, got shake256"):
        parse_digest("shake256:" + "00" * 64, expected_type="b5")
