"""Dependency bundles vs the same modules pulled one by one, and registry storage for N members,
measured side by side through bsr_team_cache.devnet (default 20 ms RTT, 100 Mbit/s).

    python bench/bench_bundles.py [--repeat 5] [--members 4]

For 8 and 30 modules (generated, ~20 KB of proto each) in CNCF Distribution:
  one by one   manifest + files layer per module, one module after the other (the seed's baseline)
  parallel     the same requests, 16 modules at a time (what `fetch` does without a bundle)
  bundle       one bundle manifest, then the members' layers in parallel
Storage: N members fetch the same 30 modules through the team registry; the registry's bytes
vs N private caches (each member's local store).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_seconds, table

from bsr_team_cache._wire import default_ssl_context
from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bsr.connect import ConnectTransport
from bsr_team_cache.bsr.devbsr import DevBSRServer, ModuleRepository
from bsr_team_cache.devnet import ShapingProxy
from bsr_team_cache.domain.buflock import read_buf_lock
from bsr_team_cache.oci.artifact import module_repository, pull_module
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.samples import write_generated_modules
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.bundles import bundle_repository, pull_members, read_bundle
from bsr_team_cache.team.cache import TeamCache
from bsr_team_cache.team.fetch import fetch

TEAM = "bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--mbit", type=float, default=100.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        names = write_generated_modules(tmp / "data", 30)
        bsr_server, ca_cert = DevBSRServer.with_tls(ModuleRepository(tmp / "data"), tmp / "tls")
        bsr_server.start()
        registry_server = DistributionServer(tmp / "registry").start()
        link = ShapingProxy(
            ("127.0.0.1", registry_server.port), rtt_ms=args.rtt_ms, mbit=args.mbit
        ).start()
        ctx = default_ssl_context()
        ctx.load_verify_locations(cafile=str(ca_cert))
        host = f"localhost:{bsr_server.port}"
        try:
            with BSRModuleClient(ConnectTransport(verify=ctx)) as bsr:
                rows = _bundles(args, tmp, names, host, bsr, registry_server, link.port)
                storage = _storage(args, tmp, names, host, bsr, registry_server)
        finally:
            link.stop()
            registry_server.stop()
            bsr_server.stop()
    print(f"link: {args.rtt_ms:g} ms RTT, {args.mbit:g} Mbit/s (bsr_team_cache.devnet)\n")
    print(table(rows))
    print()
    print(table(storage))


def _bundles(args, tmp, names, host, bsr, registry_server, proxy_port) -> list[tuple[str, ...]]:
    direct = HTTPRegistry(registry_server.url)
    cache = TeamCache(
        TEAM, registry=direct, bsr=bsr, store=LocalStore(tmp / "creator"), member="bench"
    )
    rows = [("modules", "one by one", "parallel", "bundle", "bundle vs one by one")]
    for count in (8, 30):
        refs = [f"{host}/{n}" for n in names[:count]]
        cache.create_bundle(refs, f"b{count}", f"{count} modules")
        repo = bundle_repository(TEAM, f"b{count}")
        bundle = read_bundle(direct, repo)[0]
        members = list(bundle.members)

        t1, tp, tb = _measure(args, repo, members, proxy_port)
        rows.append(
            (
                str(count),
                f"{t1 * 1000:.0f} ms",
                f"{tp * 1000:.0f} ms",
                f"{tb * 1000:.0f} ms",
                f"{(1 - tb / t1):.0%} less time ({t1 / tb:.1f}x)",
            )
        )
    return rows


def _measure(args, repo: str, members: list, proxy_port: int) -> tuple[float, float, float]:
    """(one by one, parallel, bundle) median seconds, each with fresh connections."""
    from bsr_team_cache.domain.moduleref import parse_module_name

    def remote() -> HTTPRegistry:
        return HTTPRegistry(f"http://127.0.0.1:{proxy_port}")

    def pull(reg: HTTPRegistry, m) -> None:
        module = parse_module_name(m.artifact_module)
        assert pull_module(reg, module_repository(TEAM, module), m.commit) is not None

    def one_by_one() -> None:
        with remote() as reg:
            for m in members:
                pull(reg, m)

    def parallel() -> None:
        with remote() as reg, ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda m: pull(reg, m), members))

    def via_bundle() -> None:
        with remote() as reg:
            found = read_bundle(reg, repo)
            assert len(pull_members(reg, repo, found[0].members)) == len(members)

    return (
        median_seconds(one_by_one, repeat=args.repeat),
        median_seconds(parallel, repeat=args.repeat),
        median_seconds(via_bundle, repeat=args.repeat),
    )


def _storage(args, tmp, names, host, bsr, registry_server) -> list[tuple[str, ...]]:
    fresh = DistributionServer(tmp / "storage-registry").start()
    try:
        registry = HTTPRegistry(fresh.url)
        private = []
        for i in range(args.members):
            project = tmp / f"member{i}"
            project.mkdir()
            (project / "buf.yaml").write_text(
                "version: v2\ndeps:\n" + "".join(f"  - {host}/{n}\n" for n in names)
            )
            if i:
                (project / "buf.lock").write_text((tmp / "member0" / "buf.lock").read_text())
            with LocalStore(tmp / f"store{i}") as store:
                fetch(
                    project,
                    team=TEAM,
                    registry=registry,
                    bsr=bsr,
                    store=store,
                    buf_cache=tmp / f"buf{i}",
                    update_lock=i == 0,
                )
                private.append(store.stats().bytes)
        lock = read_buf_lock(tmp / "member0" / "buf.lock")
        assert len(lock.deps) == len(names)
        _, shared = fresh.blob_count()
        artifacts = 0  # the module artifacts themselves; the rest is label indexes
        for dep in lock.deps:
            raw, _ = registry.read_manifest(module_repository(TEAM, dep.module), dep.commit)
            manifest = json.loads(raw)
            artifacts += len(raw) + manifest["config"]["size"]
            artifacts += sum(layer["size"] for layer in manifest["layers"])
    finally:
        fresh.stop()
    n = args.members
    return [
        (f"storage, {n} members, {len(names)} modules", "bytes", "vs private caches"),
        (f"{n} private caches (local stores)", f"{sum(private):,}", "1.00"),
        (
            "team registry (Distribution)",
            f"{shared:,}",
            f"{shared / sum(private):.2f} (1/N = {1 / n:.2f})",
        ),
        ("  of which module artifacts", f"{artifacts:,}", f"{artifacts / sum(private):.2f}"),
        ("  of which label indexes", f"{shared - artifacts:,}", ""),
    ]


if __name__ == "__main__":
    main()
