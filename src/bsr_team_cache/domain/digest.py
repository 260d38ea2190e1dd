"""Module digests exactly as buf computes them (``b5`` and the legacy ``b4``/``shake256``).

b5: hash each file of the module's file set with shake256 (64 bytes), write a manifest line
``shake256:<hex>  <path>\\n`` per file sorted by path, hash the manifest, then hash the
newline-joined list ``[shake256:<manifest hash>] + sorted(dep b5 digests)``.

b4: the same manifest of the same files plus the module's v1 ``buf.yaml``/``buf.lock``;
dependencies are not folded in. It prints as ``shake256:<hex>``.

Files are streamed in 1 MiB chunks, and hashed on a small thread pool: hashlib releases the GIL
for large updates, so a googleapis-sized module hashes at (or above) single-core raw speed while
memory stays flat in module size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bsr_team_cache.errors import InvalidDigestError

DIGEST_LENGTH = 64
B5 = "b5"
SHAKE256 = "shake256"
_CHUNK = 1 << 20
# Only one doc file counts, the first that exists, in this order (buf's getStorageMatcher).
DOC_FILE_NAMES = ("buf.md", "README.md", "README.markdown")
LICENSE_FILE_NAME = "LICENSE"


@dataclass(frozen=True)
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
    if not isinstance(text, str) or ":" not in text:
        raise InvalidDigestError(
            f"invalid digest {text!r}: expected b5:<128 hex> or shake256:<128 hex>"
        )
    kind, _, hex_value = text.partition(":")
    if kind not in (B5, SHAKE256):
        if kind in ("b1", "b3") or text.startswith(("b1-", "b3-")):
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
    try:
        value = bytes.fromhex(hex_value)
    except ValueError:
        raise InvalidDigestError(f"invalid digest {text!r}: not hexadecimal") from None
    return Digest(kind, value)


def shake256_bytes(data: bytes) -> bytes:
    return hashlib.shake_256(data).digest(DIGEST_LENGTH)


def shake256_file(path: Path | str) -> bytes:
    h = hashlib.shake_256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest(DIGEST_LENGTH)


def select_doc_file(root_files: Iterable[str]) -> str | None:
    """The doc file buf would pick among the names present at the module root."""
    present = set(root_files)
    for name in DOC_FILE_NAMES:
        if name in present:
            return name
    return None


def module_file_paths(root: Path) -> dict[str, Path]:
    """Map each module-relative path of the digest's file set to its file on disk."""
    root = Path(root)
    found: dict[str, Path] = {}
    root_names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        for filename in filenames:
            rel = str(rel_dir / filename) if str(rel_dir) != "." else filename
            if rel_dir == PurePosixPath("."):
                root_names.append(filename)
            if rel.endswith(".proto"):
                found[rel] = Path(dirpath, filename)
    if LICENSE_FILE_NAME in root_names:
        found[LICENSE_FILE_NAME] = root / LICENSE_FILE_NAME
    doc = select_doc_file(root_names)
    if doc is not None:
        found[doc] = root / doc
    return found


def manifest_text(file_digests: Mapping[str, bytes]) -> bytes:
    """buf's CAS manifest: ``shake256:<hex>  <path>\\n`` per file, sorted by path bytes."""
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
    dep_strings = sorted(set(dep_strings))
    joined = "\n".join([f"{SHAKE256}:{files_digest.hex()}", *dep_strings])
    return Digest(B5, shake256_bytes(joined.encode()))


def b5_from_contents(
    files: Mapping[str, bytes], dep_digests: Iterable[Digest | str] = ()
) -> Digest:
    """b5 of an in-memory module (e.g. a BSR download); ``files`` must be the digest file set."""
    return b5_from_file_digests({p: shake256_bytes(c) for p, c in files.items()}, dep_digests)


def hash_files(paths: Mapping[str, Path], *, workers: int | None = None) -> dict[str, bytes]:
    """shake256 every file, streaming, on a few threads (hashlib drops the GIL)."""
    if workers is None:
        workers = min(8, (os.cpu_count() or 1) + 1)
    items = list(paths.items())
    if workers <= 1 or len(items) < 8:
        return {rel: shake256_file(p) for rel, p in items}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashes = pool.map(lambda item: shake256_file(item[1]), items, chunksize=16)
        return {rel: h for (rel, _), h in zip(items, hashes, strict=True)}


def b5_digest(module_dir: Path | str, dep_digests: Iterable[Digest | str] = ()) -> Digest:
    """The b5 digest of the module rooted at ``module_dir`` with the given dependency digests."""
    return b5_from_file_digests(hash_files(module_file_paths(Path(module_dir))), dep_digests)


def b4_digest(
    module_dir: Path | str,
    *,
    v1_buf_yaml: bytes | None = None,
    v1_buf_lock: bytes | None = None,
) -> Digest:
    """The legacy b4 digest (``shake256:``): files plus the module's v1 buf.yaml and buf.lock."""
    digests = hash_files(module_file_paths(Path(module_dir)))
    if v1_buf_yaml is not None:
        digests["buf.yaml"] = shake256_bytes(v1_buf_yaml)
    if v1_buf_lock is not None:
        digests["buf.lock"] = shake256_bytes(v1_buf_lock)
    return Digest(SHAKE256, shake256_bytes(manifest_text(digests)))
