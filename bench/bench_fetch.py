"""The fetch path, measured side by side through a shaped link (default 20 ms RTT, 100 Mbit/s).

    python bench/bench_fetch.py [--repeat 5] [--rtt-ms 20] [--mbit 100]

Sets up dev-bsr (TLS) and CNCF Distribution on loopback, each behind bsr_team_cache.devnet, and a
project with 10 dependencies (the 6 sample modules, googleapis among them, plus 4 generated
ones). Then measures:

1. warm local hit, in process: LocalStore lookup (index only) and verified read, p50/p99;
2. the whole `bsr-team-cache fetch` of the 10 deps with a warm local store and buf cache, as a
   process, against a bare Python start-up;
3. a new machine: `bsr-team-cache fetch` from the team registry into an empty local store and
   buf cache, then `buf build` offline — vs real `buf build` downloading the same deps from
   dev-bsr through the same link.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_seconds, table

from bsr_team_cache.bsr.devbsr import DevBSRServer, ModuleRepository
from bsr_team_cache.demo import DEMO_PROTO, find_buf
from bsr_team_cache.devnet import ShapingProxy
from bsr_team_cache.domain.buflock import read_buf_lock
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.samples import write_generated_modules, write_sample_data
from bsr_team_cache.store import LocalStore

DEPS = [
    "acme/orders",
    "acme/notes",
    "acme/common",
    "acme/pets",
    "acme/money",
    "googleapis/googleapis",
    *(f"bench/lib{i}" for i in range(4)),
]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def shaped_servers(tmp: Path, rtt_ms: float, mbit: float) -> Iterator[tuple[Path, int, int]]:
    """dev-bsr (TLS; the samples and 4 generated modules) and Distribution, each behind a
    shaping proxy: yields (the CA to trust, the BSR's port, the registry's port)."""
    data = write_sample_data(tmp / "data")
    write_generated_modules(data, 4)
    bsr, ca_cert = DevBSRServer.with_tls(ModuleRepository(data), tmp / "tls")
    bsr.start()
    registry = DistributionServer(tmp / "registry").start()
    bsr_link = ShapingProxy(("127.0.0.1", bsr.port), rtt_ms=rtt_ms, mbit=mbit)
    reg_link = ShapingProxy(("127.0.0.1", registry.port), rtt_ms=rtt_ms, mbit=mbit)
    bsr_link.start()
    reg_link.start()
    try:
        yield ca_cert, bsr_link.port, reg_link.port
    finally:
        bsr.stop()
        registry.stop()
        bsr_link.stop()
        reg_link.stop()


def write_project(project: Path, host: str) -> None:
    """The benchmarks' project: a buf.yaml with DEPS on ``host`` and one proto of its own."""
    (project / "shop" / "v1").mkdir(parents=True)
    (project / "buf.yaml").write_text(
        "version: v2\ndeps:\n" + "".join(f"  - {host}/{d}\n" for d in DEPS)
    )
    (project / "shop" / "v1" / "shop.proto").write_text(DEMO_PROTO)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--mbit", type=float, default=100.0)
    args = parser.parse_args()
    buf = find_buf()
    if buf is None:
        sys.exit("buf not found: pip install -e '.[test]'")
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        shaped_servers(Path(tmp_name), args.rtt_ms, args.mbit) as (ca, bsr_port, reg_port),
    ):
        _measure(args, buf, Path(tmp_name), ca, bsr_port, reg_port)


def _measure(args, buf: str, tmp: Path, ca: Path, bsr_port: int, reg_port: int) -> None:
    host = f"localhost:{bsr_port}"
    registry_url = f"http://127.0.0.1:{reg_port}/bench"
    project = tmp / "project"
    write_project(project, host)
    base_env = {**os.environ, "SSL_CERT_FILE": str(ca)}

    def member_env(name: str) -> dict[str, str]:
        return {
            **base_env,
            "BUF_CACHE_DIR": str(tmp / name / "buf-cache"),
            "BSR_TEAM_CACHE_DIR": str(tmp / name / "store"),
        }

    def fetch(env: dict[str, str], *extra: str) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bsr_team_cache",
                "fetch",
                str(project),
                "--team",
                "bench",
                "--registry",
                registry_url,
                "-q",
                *extra,
            ],
            env=env,
            check=True,
        )

    def buf_build(env: dict[str, str]) -> None:
        subprocess.run(
            [buf, "build", "-o", os.devnull], cwd=project, env=env, check=True, capture_output=True
        )

    # Member A: resolves, downloads from the BSR, publishes to the team registry.
    fetch(member_env("member-a"), "--update-lock")
    lock = read_buf_lock(project / "buf.lock")
    total_bytes = 0

    # 1. Warm local hits, in process.
    with LocalStore(tmp / "member-a" / "store") as store:
        lookups: list[float] = []
        reads: dict[str, list[float]] = {}
        for _ in range(200):
            for dep in lock.deps:
                t0 = time.perf_counter()
                store.contains(dep.module, dep.commit)
                lookups.append(time.perf_counter() - t0)
        for dep in lock.deps:
            samples = reads.setdefault(str(dep.module).split("/", 1)[1], [])
            for _ in range(50):
                t0 = time.perf_counter()
                artifact = store.get(dep.module, dep.commit)
                samples.append(time.perf_counter() - t0)
            assert artifact is not None
            total_bytes += artifact.size
    small = [s for name, v in reads.items() if not name.startswith("googleapis") for s in v]
    big = reads["googleapis/googleapis"]

    # 2. Whole warm fetch as a process vs bare Python start-up.
    warm_env = member_env("member-a")
    t_python = median_seconds(
        lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeat=args.repeat
    )
    t_warm = median_seconds(lambda: fetch(warm_env), repeat=args.repeat)

    # 3. New machine: team registry -> empty caches -> buf build offline, vs buf alone.
    def ours() -> None:
        shutil.rmtree(tmp / "member-b", ignore_errors=True)
        env = member_env("member-b")
        fetch(env)
        buf_build(env)

    def ours_fetch_only() -> None:
        shutil.rmtree(tmp / "member-b", ignore_errors=True)
        fetch(member_env("member-b"))

    def buf_alone() -> None:
        shutil.rmtree(tmp / "buf-only", ignore_errors=True)
        buf_build({**base_env, "BUF_CACHE_DIR": str(tmp / "buf-only")})

    t_buf = median_seconds(buf_alone, repeat=args.repeat)
    t_ours = median_seconds(ours, repeat=args.repeat)
    t_fetch = median_seconds(ours_fetch_only, repeat=args.repeat)
    # The same, once the team has a bundle of these deps (made by member A).
    bundle_env = member_env("member-a")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bsr_team_cache",
            "bundle",
            "--team",
            "bench",
            "--registry",
            registry_url,
            "--name",
            "bench-deps",
            "--deps",
            *(f"{host}/{d}" for d in DEPS),
        ],
        env=bundle_env,
        check=True,
        capture_output=True,
    )
    t_bundle = median_seconds(ours, repeat=args.repeat)

    def ours_named_bundle() -> None:
        shutil.rmtree(tmp / "member-b", ignore_errors=True)
        env = member_env("member-b")
        fetch(env, "--bundle", "bench-deps")
        buf_build(env)

    t_named = median_seconds(ours_named_bundle, repeat=args.repeat)

    ms = 1000.0
    print(
        f"{len(lock.deps)} deps, {total_bytes / 1024:.0f} KiB of files; link: {args.rtt_ms:g} ms"
        f" RTT, {args.mbit:g} Mbit/s (bsr_team_cache.devnet)\n"
    )
    print(
        table(
            [
                ("warm local hit (in process)", "p50", "p99"),
                (
                    "index lookup",
                    f"{statistics.median(lookups) * ms:.3f} ms",
                    f"{_percentile(lookups, 0.99) * ms:.3f} ms",
                ),
                (
                    "verified read, small module",
                    f"{statistics.median(small) * ms:.2f} ms",
                    f"{_percentile(small, 0.99) * ms:.2f} ms",
                ),
                (
                    "verified read, googleapis",
                    f"{statistics.median(big) * ms:.2f} ms",
                    f"{_percentile(big, 0.99) * ms:.2f} ms",
                ),
            ]
        )
    )
    print()
    print(
        table(
            [
                ("process", "median", ""),
                ("python -c pass", f"{t_python * ms:.0f} ms", ""),
                (
                    f"bsr-team-cache fetch, {len(lock.deps)} deps, warm",
                    f"{t_warm * ms:.0f} ms",
                    f"{(t_warm - t_python) * ms:.0f} ms beyond start-up",
                ),
            ]
        )
    )
    print()
    print(
        table(
            [
                ("new machine, empty caches", "median", "speed-up"),
                ("buf build, deps from dev-bsr", f"{t_buf * ms:.0f} ms", "1.00x"),
                (
                    "fetch from team registry + buf build offline",
                    f"{t_ours * ms:.0f} ms",
                    f"{t_buf / t_ours:.2f}x",
                ),
                ("  of which fetch", f"{t_fetch * ms:.0f} ms", ""),
                (
                    "the same, the team having a bundle of these deps",
                    f"{t_bundle * ms:.0f} ms",
                    f"{t_buf / t_bundle:.2f}x",
                ),
                (
                    "the same, with fetch --bundle NAME",
                    f"{t_named * ms:.0f} ms",
                    f"{t_buf / t_named:.2f}x",
                ),
            ]
        )
    )


if __name__ == "__main__":
    main()
