"""Module digests exactly as buf computes them (``b5`` and the legacy ``b4``/``shake256``).

b5: hash each file of the module's file set with shake256 (64 bytes), write a manifest line
``shake256:<hex>  <path>\\n`` per file sorted by path, hash the manifest, then hash the
newline-joined list ``[shake256:<manifest hash>] + sorted(dep b5 digests)``.

b4: the same manifest of the same files plus the module's v1 ``buf.yaml``/``buf.lock``;
dependencies are not folded in. It prints as ``shake256:<hex>``.

Files are streamed through one reusable 1 MiB buffer per thread, so memory does not grow with
file sizes; the per-file cost is three system calls on top of the hashing itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from bsr_team_cache._records import record
from bsr_team_cache.errors import InvalidDigestError

DIGEST_LENGTH = 64
B5 = "b5"
SHAKE256 = "shake256"
_CHUNK = 1 << 20
_THREADED_MEAN_FILE_SIZE = 6 * 1024
_HEX_DIGEST_RE = re.compile(r"[0-9a-fA-F]{128}")
# Only one doc file counts, the first that exists, in this order (buf's getStorageMatcher).
DOC_FILE_NAMES = ("buf.md", "README.md", "README.markdown")
LICENSE_FILE_NAME = "LICENSE"
# A v1 module's own config files: part of its b4 digest (not of b5), kept with b4 entries.
V1_CONFIG_FILES = ("buf.yaml", "buf.lock")


@record(frozen=True)
class Digest:
    """A typed digest: ``type`` is ``b5`` or ``shake256`` (b4); ``value`` is 64 raw bytes."""

    type: str
    value: bytes

    def __str__(self) -> str:
        return f"{self.type}:{self.value.hex()}"

    @property
    def hex(self) -> str:
        return self.value.hex()


def parse_digest(text: str, *, expected_type: str | None = None) -> Digest:
    """Parse ``b5:<hex>`` or ``shake256:<hex>`` (128 hex chars)."""
    if isinstance(text, str) and text.startswith(("b1-", "b3-")):
        raise InvalidDigestError(
            f"invalid digest {text!r}: b1/b3 digests are no longer supported by buf,"
            ' run "buf dep update"'
        )
    if not isinstance(text, str) or ":" not in text:
        raise InvalidDigestError(
            f"invalid digest {text!r}: expected b5:<128 hex> or shake256:<128 hex>"
        )
    kind, _, hex_value = text.partition(":")
    if kind not in (B5, SHAKE256):
        if kind in ("b1", "b3"):
            raise InvalidDigestError(
                f"invalid digest {text!r}: {kind} digests are no longer supported by buf,"
                ' run "buf dep update"'
            )
        raise InvalidDigestError(
            f"invalid digest {text!r}: unknown digest type {kind!r} (expected b5 or shake256)"
        )
    if expected_type is not None and kind != expected_type:
        raise InvalidDigestError(
            f"invalid digest {text!r}: expected a {expected_type} digest, got {kind}"
        )
    if len(hex_value) != 2 * DIGEST_LENGTH:
        raise InvalidDigestError(
            f"invalid digest {text!r}: expected {2 * DIGEST_LENGTH} hex characters"
            f" after '{kind}:', got {len(hex_value)}"
        )
    # fullmatch, not bytes.fromhex alone: fromhex skips blanks between bytes.
    if not _HEX_DIGEST_RE.fullmatch(hex_value):
        raise InvalidDigestError(f"invalid digest {text!r}: not hexadecimal")
    return Digest(kind, bytes.fromhex(hex_value))


def shake256_bytes(data: bytes) -> bytes:
    return hashlib.shake_256(data).digest(DIGEST_LENGTH)


def select_doc_file(root_files: Iterable[str]) -> str | None:
    """The doc file buf would pick among the names present at the module root."""
    present = set(root_files)
    for name in DOC_FILE_NAMES:
        if name in present:
            return name
    return None


def module_file_paths(root: Path | str) -> dict[str, str]:
    """Map each module-relative path of the digest's file set to its file's path on disk."""
    found: dict[str, str] = {}
    root_names: list[str] = []
    stack = [("", os.fspath(root))]
    while stack:
        rel_dir, directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append((f"{rel_dir}{entry.name}/", entry.path))
                    continue
                if not rel_dir:
                    root_names.append(entry.name)
                if entry.name.endswith(".proto") and entry.is_file():
                    found[rel_dir + entry.name] = entry.path
    if LICENSE_FILE_NAME in root_names:
        found[LICENSE_FILE_NAME] = os.path.join(root, LICENSE_FILE_NAME)
    doc = select_doc_file(root_names)
    if doc is not None:
        found[doc] = os.path.join(root, doc)
    return found


def manifest_text(file_digests: Mapping[str, bytes]) -> bytes:
    """buf's CAS manifest: ``shake256:<hex>  <path>\\n`` per file, sorted by path bytes.

    The manifest is line-based, so a path holding a newline could pose as several files: such
    paths are refused here too, whatever the caller validated."""
    bad = next((p for p in file_digests if "\n" in p), None)
    if bad is not None:
        raise InvalidDigestError(f"file path {bad!r} contains a newline: it cannot be digested")
    lines = [
        f"{SHAKE256}:{file_digests[path].hex()}  {path}\n"
        for path in sorted(file_digests, key=lambda p: p.encode())
    ]
    return "".join(lines).encode()


def b5_from_file_digests(
    file_digests: Mapping[str, bytes], dep_digests: Iterable[Digest | str] = ()
) -> Digest:
    """Combine per-file shake256 digests and the deps' b5 digests into the module's b5."""
    files_digest = shake256_bytes(manifest_text(file_digests))
    dep_strings = []
    for dep in dep_digests:
        parsed = dep if isinstance(dep, Digest) else parse_digest(dep)
        if parsed.type != B5:
            raise InvalidDigestError(f"dependency digest {parsed} is not a b5 digest")
        dep_strings.append(str(parsed))
    dep_strings.sort()  # duplicates stay, as buf keeps them (two deps with the same content)
    joined = "\n".join([f"{SHAKE256}:{files_digest.hex()}", *dep_strings])
    return Digest(B5, shake256_bytes(joined.encode()))


def b5_from_contents(
    files: Mapping[str, bytes], dep_digests: Iterable[Digest | str] = ()
) -> Digest:
    """b5 of an in-memory module (e.g. a BSR download); ``files`` must be the digest file set."""
    return b5_from_file_digests({p: shake256_bytes(c) for p, c in files.items()}, dep_digests)


def _hash_into(items: Iterator[tuple[str, str]], out: dict[str, bytes]) -> None:
    """Hash files pulled from a shared iterator (several threads may pull from it at once)."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    size = len(buf)
    shake, open_, readv, close, rdonly = hashlib.shake_256, os.open, os.readv, os.close, os.O_RDONLY
    for rel, path in items:
        fd = open_(path, rdonly)
        try:
            n = readv(fd, [buf])
            h = shake(view[:n])
            while n == size:
                n = readv(fd, [buf])
                h.update(view[:n])
        finally:
            close(fd)
        out[rel] = h.digest(DIGEST_LENGTH)


def _worth_a_second_thread(paths: list[str]) -> bool:
    """hashlib drops the GIL only for updates over 2 KiB, and every GIL hand-off costs a few
    microseconds: a second thread pays off when files are large enough (googleapis averages
    ~9 KB: +20 %), and costs ~8 % on trees of tiny files. Sample a few sizes to choose."""
    if len(paths) < 64:
        return False
    from bsr_team_cache._cpus import usable_cpus

    if usable_cpus() < 2:
        return False
    step = max(1, len(paths) // 32)
    sample = paths[::step][:32]
    mean = sum(os.stat(p).st_size for p in sample) / len(sample)
    return mean >= _THREADED_MEAN_FILE_SIZE


def hash_files(paths: Mapping[str, Path | str]) -> dict[str, bytes]:
    """shake256 of every file, each streamed through one reusable buffer per thread."""
    items = [(rel, os.fspath(p)) for rel, p in paths.items()]
    out: dict[str, bytes] = {}
    shared = iter(items)
    if not _worth_a_second_thread([p for _, p in items]):
        _hash_into(shared, out)
        return out
    helper = threading.Thread(target=_hash_into, args=(shared, out), daemon=True)
    helper.start()
    try:
        _hash_into(shared, out)
    finally:
        helper.join()
    if len(out) != len(items):  # the helper failed (e.g. a file vanished): say which
        _hash_into(iter([(r, p) for r, p in items if r not in out]), out)
    return out


def b5_digest(module_dir: Path | str, dep_digests: Iterable[Digest | str] = ()) -> Digest:
    """The b5 digest of the module rooted at ``module_dir`` with the given dependency digests."""
    return b5_from_file_digests(hash_files(module_file_paths(module_dir)), dep_digests)


def b4_from_file_digests(
    file_digests: Mapping[str, bytes], v1_files: Mapping[str, bytes] | None = None
) -> Digest:
    """b4 (``shake256:``) from per-file digests and the module's v1 ``buf.yaml``/``buf.lock``
    contents (keyed by those names), which join the manifest as entries of their own."""
    entries = dict(file_digests)
    for name, content in (v1_files or {}).items():
        entries[name] = shake256_bytes(content)
    return Digest(SHAKE256, shake256_bytes(manifest_text(entries)))


def b4_from_contents(
    files: Mapping[str, bytes], v1_files: Mapping[str, bytes] | None = None
) -> Digest:
    """b4 of an in-memory module (e.g. a v1beta1 download)."""
    return b4_from_file_digests({p: shake256_bytes(c) for p, c in files.items()}, v1_files)


def b4_digest(
    module_dir: Path | str,
    *,
    v1_buf_yaml: bytes | None = None,
    v1_buf_lock: bytes | None = None,
) -> Digest:
    """The legacy b4 digest (``shake256:``): files plus the module's v1 buf.yaml and buf.lock."""
    v1_files = {}
    if v1_buf_yaml is not None:
        v1_files["buf.yaml"] = v1_buf_yaml
    if v1_buf_lock is not None:
        v1_files["buf.lock"] = v1_buf_lock
    return b4_from_file_digests(hash_files(module_file_paths(module_dir)), v1_files)
