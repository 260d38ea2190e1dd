"""Our OCI registry client vs oras-py vs `skopeo copy`, on the same artifacts, in one run.

    pip install -e '.[bench]'        # oras-py; skopeo and docker-registry from Debian
    python bench/bench_registry_clients.py [--large-mb 256] [--modules 50] [--rss-mb 500]

1. one large blob, push and pull on loopback (throughput; a shaped link would cap all three
   at the same rate);
2. 50 small module artifacts pulled through bsr_team_cache.devnet (20 ms RTT, 100 Mbit/s), where
   round trips dominate: ours in parallel (as `fetch` does) and sequentially, oras-py and
   skopeo one artifact after the other;
3. peak RSS of a process pushing then pulling a --rss-mb blob.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_seconds, table

from bsr_team_cache.devnet import ShapingProxy
from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.oci.artifact import ModuleArtifact, pull_module, push_module
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.layout import OCILayoutRegistry

CONFIG = b"{}"
EMPTY = "application/vnd.oci.empty.v1+json"


def _random_file(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            hasher.update(block)
            f.write(block)
            left -= len(block)
    return "sha256:" + hasher.hexdigest()


def _manifest(layer_digest: str, size: int, title: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.bench.blob.v1",
            "config": {"mediaType": EMPTY, "digest": sha256_digest(CONFIG), "size": 2},
            "layers": [
                {
                    "mediaType": "application/octet-stream",
                    "digest": layer_digest,
                    "size": size,
                    "annotations": {"org.opencontainers.image.title": title},
                }
            ],
        }
    ).encode()


def _ours_push(reg, repo: str, path: Path, digest: str) -> None:
    reg.push_blob(repo, CONFIG, sha256_digest(CONFIG))
    reg.push_blob_file(repo, path, digest)
    reg.push_manifest(repo, "v1", _manifest(digest, path.stat().st_size, path.name), OCI_MANIFEST)


def _ours_pull(reg, repo: str, outdir: Path) -> None:
    manifest = json.loads(reg.read_manifest(repo, "v1")[0])
    for layer in manifest["layers"]:
        reg.read_blob_to(
            repo, layer["digest"], outdir / layer["annotations"]["org.opencontainers.image.title"]
        )


def _skopeo(*args: str) -> None:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"skopeo {args[0]}: {done.stderr.strip()}")


def _oras_client(host: str):
    import oras.client

    return oras.client.OrasClient(hostname=host, insecure=True)


def large_blob(args, tmp: Path, registry: DistributionServer) -> list[tuple[str, ...]]:
    host = registry.url.removeprefix("http://")
    size = args.large_mb << 20
    files = {}
    for tool in ("ours", "oras", "skopeo"):  # distinct content: no tool benefits from dedup
        path = tmp / f"{tool}.bin"
        files[tool] = (path, _random_file(path, size))
    layout = tmp / "layout"
    OCILayoutRegistry(layout).push_blob_file("big", *files["skopeo"])
    lay = OCILayoutRegistry(layout)
    lay.push_blob("big", CONFIG, sha256_digest(CONFIG))
    lay.push_manifest("big", "v1", _manifest(files["skopeo"][1], size, "skopeo.bin"), OCI_MANIFEST)
    reg = HTTPRegistry(registry.url)
    oras = _oras_client(host)

    def fresh_push(tool: str, push_fn) -> None:
        # Unlink the blob from the target repository first: every tool checks for it and
        # would otherwise skip the upload on repeats.
        reg.delete_blob(f"large/{tool}", files[tool][1])
        push_fn()

    push = {
        "ours": lambda: _ours_push(reg, "large/ours", *files["ours"]),
        "oras": lambda: oras.push(
            target=f"{host}/large/oras:v1",
            files=[str(files["oras"][0])],
            quiet=True,
            disable_path_validation=True,
        ),
        "skopeo": lambda: _skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout / 'big'}:v1",
            f"docker://{host}/large/skopeo:v1",
        ),
    }
    t_push = {
        tool: median_seconds(lambda t=tool, f=fn: fresh_push(t, f), repeat=args.repeat, warmup=0)
        for tool, fn in push.items()
    }

    def fresh(name: str) -> Path:
        out = tmp / "pulled" / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        return out

    pull = {
        "ours": lambda: _ours_pull(reg, "large/ours", fresh("ours")),
        "oras": lambda: oras.pull(target=f"{host}/large/ours:v1", outdir=str(fresh("oras"))),
        "skopeo": lambda: _skopeo(
            "copy",
            "--src-tls-verify=false",
            f"docker://{host}/large/ours:v1",
            f"dir:{fresh('skopeo')}",
        ),
    }
    t_pull = {tool: median_seconds(fn, repeat=args.repeat, warmup=0) for tool, fn in pull.items()}
    reg.close()
    mb = size / 1e6
    rows = [(f"one {args.large_mb} MiB blob, loopback", "push MB/s", "pull MB/s", "pull vs skopeo")]
    for tool, label in (("ours", "bsr-team-cache"), ("oras", "oras-py"), ("skopeo", "skopeo")):
        rows.append(
            (
                label,
                f"{mb / t_push[tool]:.0f}",
                f"{mb / t_pull[tool]:.0f}",
                f"{t_pull['skopeo'] / t_pull[tool]:.2f}x",
            )
        )
    return rows


def small_modules(args, tmp: Path, registry: DistributionServer) -> list[tuple[str, ...]]:
    direct = HTTPRegistry(registry.url)
    artifacts = []
    for i in range(args.modules):
        files = {
            f"acme/m{i}/v1/m{i}_{f}.proto": (
                f'syntax = "proto3";\npackage acme.m{i}.v1;\n'
                + "".join(
                    f"message M{f}x{m} {{ string id = 1; int64 n = 2; }}\n" for m in range(30)
                )
            ).encode()
            for f in range(3)
        }
        artifact = ModuleArtifact(
            parse_module_name(f"buf.build/acme/m{i}"),
            f"{i:032x}",
            b5_from_contents(files),
            (),
            files,
        )
        push_module(direct, f"small/m{i}", artifact)
        artifacts.append(artifact)
    direct.close()
    link = ShapingProxy(("127.0.0.1", registry.port), rtt_ms=args.rtt_ms, mbit=args.mbit).start()
    host = f"127.0.0.1:{link.port}"
    try:

        def ours(parallel: int) -> None:
            with HTTPRegistry(f"http://{host}") as reg, ThreadPoolExecutor(parallel) as pool:
                got = list(
                    pool.map(
                        lambda a: pull_module(reg, f"small/m{int(a.commit, 16)}", a.commit),
                        artifacts,
                    )
                )
            assert all(g is not None for g in got)

        def oras() -> None:
            client = _oras_client(host)
            out = tmp / "oras-small"
            for a in artifacts:
                client.pull(
                    target=f"{host}/small/m{int(a.commit, 16)}:{a.commit}",
                    outdir=str(out / a.commit),
                )
            shutil.rmtree(out)

        def skopeo() -> None:
            out = tmp / "skopeo-small"
            out.mkdir(exist_ok=True)
            for a in artifacts:
                _skopeo(
                    "copy",
                    "--src-tls-verify=false",
                    f"docker://{host}/small/m{int(a.commit, 16)}:{a.commit}",
                    f"dir:{out / a.commit}",
                )
            shutil.rmtree(out)

        times = {
            "ours, 16 in parallel": median_seconds(lambda: ours(16), repeat=args.repeat),
            "ours, one at a time": median_seconds(lambda: ours(1), repeat=args.repeat),
            "oras-py": median_seconds(oras, repeat=args.repeat),
            "skopeo copy": median_seconds(skopeo, repeat=1),
        }
    finally:
        link.stop()
    rows = [
        (
            f"{args.modules} small modules, {args.rtt_ms:g} ms RTT",
            "median",
            "vs oras-py",
            "vs skopeo",
        )
    ]
    for label, t in times.items():
        rows.append(
            (
                label,
                f"{t * 1000:.0f} ms",
                f"{times['oras-py'] / t:.2f}x",
                f"{times['skopeo copy'] / t:.2f}x",
            )
        )
    return rows


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent (this
# benchmark process, large after oras-py read a blob into memory), VmHWM starts afresh.
_PEAK = r"""
def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""

_RSS_WORKER = (
    _PEAK
    + r"""
import json, resource, sys
from pathlib import Path
sys.path.insert(0, {bench!r})
from bench_registry_clients import _ours_push, _ours_pull
from bsr_team_cache.oci.http import HTTPRegistry
url, path, digest, out = sys.argv[1:5]
reg = HTTPRegistry(url)
_ours_push(reg, "rss/ours", Path(path), digest)
_ours_pull(reg, "rss/ours", Path(out))
print(peak_kib())
"""
)

_RSS_ORAS = (
    _PEAK
    + r"""
import resource, sys, oras.client
host, path, out = sys.argv[1:4]
c = oras.client.OrasClient(hostname=host, insecure=True)
c.push(target=f"{host}/rss/oras:v1", files=[path], quiet=True, disable_path_validation=True)
c.pull(target=f"{host}/rss/oras:v1", outdir=out)
print(peak_kib())
"""
)

_RSS_CHILDREN = r"""
import resource, subprocess, sys
for cmd in sys.argv[1:]:
    subprocess.run(cmd.split("\x1f"), check=True, capture_output=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(args, tmp: Path, registry: DistributionServer) -> list[tuple[str, ...]]:
    host = registry.url.removeprefix("http://")
    path = tmp / "rss.bin"
    digest = _random_file(path, args.rss_mb << 20)
    bench = str(Path(__file__).parent)

    def run(code: str, *argv: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True
        )
        return int(done.stdout.split()[-1]) / 1024  # Linux reports KiB

    (tmp / "rss-out").mkdir()
    ours = run(
        _RSS_WORKER.format(bench=bench), registry.url, str(path), digest, str(tmp / "rss-out")
    )
    layout = tmp / "rss-layout"
    lay = OCILayoutRegistry(layout)
    lay.push_blob_file("big", path, digest)
    lay.push_blob("big", CONFIG, sha256_digest(CONFIG))
    lay.push_manifest("big", "v1", _manifest(digest, path.stat().st_size, "rss.bin"), OCI_MANIFEST)
    sep = "\x1f"
    skopeo = run(
        _RSS_CHILDREN,
        sep.join(
            [
                "skopeo",
                "copy",
                "--dest-tls-verify=false",
                f"oci:{layout / 'big'}:v1",
                f"docker://{host}/rss/skopeo:v1",
            ]
        ),
        sep.join(
            [
                "skopeo",
                "copy",
                "--src-tls-verify=false",
                f"docker://{host}/rss/skopeo:v1",
                f"dir:{tmp / 'rss-skopeo'}",
            ]
        ),
    )
    rows = [
        (f"peak RSS, push + pull of {args.rss_mb} MiB", "MB"),
        ("bsr-team-cache", f"{ours:.0f}"),
    ]
    try:
        (tmp / "rss-oras").mkdir()
        oras = run(_RSS_ORAS, host, str(path), str(tmp / "rss-oras"))
        rows.append(("oras-py", f"{oras:.0f}"))
    except subprocess.CalledProcessError as exc:
        rows.append(("oras-py", f"failed: {exc.stderr.strip().splitlines()[-1][:60]}"))
    rows.append(("skopeo", f"{skopeo:.0f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--modules", type=int, default=50)
    parser.add_argument("--rss-mb", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--mbit", type=float, default=100.0)
    args = parser.parse_args()
    try:
        import oras  # noqa: F401
    except ImportError:
        sys.exit("oras-py is missing: pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        registry = DistributionServer(tmp / "registry").start()
        try:
            started = time.monotonic()
            for section in (large_blob, small_modules, peak_rss):
                print(table(section(args, tmp, registry)))
                print()
            print(f"({time.monotonic() - started:.0f} s)")
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
