"""b5 digest throughput vs raw hashlib.shake_256 over the same bytes, and memory vs module size.

    python bench/bench_digest.py [--mb 40] [--module DIR]

Builds googleapis-sized modules from the text of googleapis-common-protos' .proto files:
  * "googleapis mix": file sizes follow the real googleapis tree's distribution (deciles
    below, measured on github.com/googleapis/googleapis: 7,292 files, 67.6 MB, median 3.2 KB,
    mean 9.3 KB, long tail);
  * "small files": googleapis-common-protos' own files copied many times (mean 5.3 KB),
    the worst case for per-file overhead.
Then measures side by side in one run:
  raw = shake_256 of every file's bytes already in memory (no I/O, one thread)
  b5  = bsr_team_cache b5_digest(module_dir) (walks, reads, hashes, manifest, digest)
and the peak Python heap while digesting modules of 1x and 4x the bytes with the same files.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_seconds, table

from bsr_team_cache.domain.digest import b5_digest, module_file_paths
from bsr_team_cache.samples import write_googleapis_module

# (quantile, bytes) of .proto file sizes in googleapis/googleapis (google/ tree).
GOOGLEAPIS_SIZE_QUANTILES = [
    (0.0, 600),
    (0.1, 1624),
    (0.2, 1784),
    (0.3, 2035),
    (0.4, 2490),
    (0.5, 3195),
    (0.6, 4397),
    (0.7, 5852),
    (0.8, 9529),
    (0.9, 18222),
    (0.99, 73980),
    (1.0, 400_000),
]


def _size_at(u: float) -> int:
    qs = [q for q, _ in GOOGLEAPIS_SIZE_QUANTILES]
    i = min(max(bisect.bisect_right(qs, u), 1), len(qs) - 1)
    (q0, s0), (q1, s1) = GOOGLEAPIS_SIZE_QUANTILES[i - 1], GOOGLEAPIS_SIZE_QUANTILES[i]
    return int(s0 + (s1 - s0) * (u - q0) / (q1 - q0))


def _corpus(tmp: Path) -> bytes:
    seed = tmp / "_seed"
    write_googleapis_module(seed)
    return b"".join(p.read_bytes() for p in sorted(seed.rglob("*.proto")))


def build_mix_module(root: Path, corpus: bytes, target_mb: float, scale: int = 1) -> int:
    """Files with googleapis' size distribution; ``scale`` multiplies every file's size."""
    mean = sum(_size_at((i + 0.5) / 1000) for i in range(1000)) / 1000
    count = int(target_mb * 1e6 / mean)
    total = 0
    for i in range(count):
        size = _size_at(((i * 7919) % count + 0.5) / count) * scale
        start = (i * 104729) % (len(corpus) - 1)
        data = (corpus[start:] + corpus)[:size]
        path = root / f"google/area{i % 40:02d}/v{i % 3 + 1}/file{i:05d}.proto"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    return total


def build_small_files_module(root: Path, tmp: Path, target_mb: float) -> int:
    seed = tmp / "_small_seed"
    write_googleapis_module(seed)
    protos = sorted(seed.rglob("*.proto"))
    seed_bytes = sum(p.stat().st_size for p in protos)
    copies = max(1, round(target_mb * 1e6 / seed_bytes))
    for i in range(copies):
        for p in protos:
            dest = root / f"copy{i:03d}" / p.relative_to(seed)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(p.read_bytes())
    return copies * seed_bytes


def measure(module: Path) -> tuple[int, float, float, float]:
    files = module_file_paths(module)
    blobs = [Path(p).read_bytes() for p in files.values()]

    def raw() -> None:
        for blob in blobs:
            hashlib.shake_256(blob).digest(64)

    t_raw = median_seconds(raw)
    t_b5 = median_seconds(lambda: b5_digest(module))
    return len(files), sum(len(b) for b in blobs) / 1e6, t_raw, t_b5


def peak_heap(module: Path) -> int:
    tracemalloc.start()
    b5_digest(module)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=40.0)
    parser.add_argument(
        "--module",
        type=Path,
        action="append",
        default=[],
        help="also measure this module directory (e.g. a googleapis checkout)",
    )
    args = parser.parse_args()
    rows = [("module", "files", "MB", "raw", "b5_digest", "b5 vs raw")]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpus = _corpus(tmp)
        mix, mix4, small = tmp / "mix", tmp / "mix4", tmp / "small"
        build_mix_module(mix, corpus, args.mb)
        build_mix_module(mix4, corpus, args.mb * 4, scale=1)  # 4x the files
        build_small_files_module(small, tmp, args.mb)
        big_files = tmp / "mix_x4_bytes"
        build_mix_module(big_files, corpus, args.mb, scale=4)  # same files, 4x the bytes
        cases = [
            ("googleapis mix", mix),
            ("small files", small),
            *[(str(m), m) for m in args.module],
        ]
        for name, module in cases:
            n, mb, t_raw, t_b5 = measure(module)
            rows.append(
                (
                    name,
                    str(n),
                    f"{mb:.1f}",
                    f"{t_raw * 1000:.0f} ms",
                    f"{t_b5 * 1000:.0f} ms",
                    f"{t_raw / t_b5:.2f}x",
                )
            )
        heap_1, heap_bytes, heap_files = peak_heap(mix), peak_heap(big_files), peak_heap(mix4)
    print(table(rows))
    print(
        f"peak heap: {heap_1 / 1e6:.2f} MB; same files with 4x the bytes: {heap_bytes / 1e6:.2f} MB"
        f" (x{heap_bytes / heap_1:.2f}); 4x the files: {heap_files / 1e6:.2f} MB"
        f" (x{heap_files / heap_1:.2f}, ~{(heap_files - heap_1) / 1e6 / 3:.2f} MB per"
        " extra module-size of file names and digests)"
    )


if __name__ == "__main__":
    main()
