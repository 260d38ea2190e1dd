"""What the boundary checks cost: this tree's fetch against another checkout's, side by side.

    python bench/bench_checks.py --baseline DIR [--repeat 11] [--rtt-ms 20] [--mbit 100] [--set 10]

``DIR`` is a checkout of an earlier version (e.g. ``git worktree add DIR <commit>``); its
``src`` is put first on PYTHONPATH for its runs. Both run against the same servers through the
same shaped link (bsr_team_cache.devnet), in alternating order (A B A B ...), so that the machine's
noise falls on both alike. Measured, as bench_fetch.py does:

1. a new machine: ``fetch`` from the team registry (Distribution) into empty caches, then
   ``buf build`` offline; and real ``buf build`` downloading the same deps from dev-bsr;
2. the whole warm ``fetch`` as a process (local store and buf cache filled).

Printed: medians per tree, the new-machine speed-up over buf alone for each, and this tree's
time over the baseline's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import table
from bench_fetch import DepSet, Services, services, write_bench_data, write_project

from bsr_team_cache.demo import find_buf

THIS_TREE = Path(__file__).resolve().parent.parent


def _alternating(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds of each run, taken in turns (one warm-up each first)."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn()
    for i in range(repeat):
        order = list(runs.items()) if i % 2 == 0 else list(reversed(runs.items()))
        for name, fn in order:
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, required=True, help="checkout to compare with")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--mbit", type=float, default=100.0)
    parser.add_argument("--set", default="10", help="bench_fetch's dependency set (10, 200, ...)")
    args = parser.parse_args()
    buf = find_buf()
    if buf is None:
        sys.exit("buf not found: pip install -e '.[test]'")
    baseline_src = args.baseline.resolve() / "src"
    if not (baseline_src / "bsr_team_cache" / "__init__.py").is_file():
        sys.exit(f"{args.baseline}: not a checkout of bsr-team-cache (no src/bsr_team_cache)")
    trees = {"baseline": baseline_src, "this tree": THIS_TREE / "src"}
    for src in trees.values():  # as an install would: no tree pays for compiling at start-up
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        depset = write_bench_data(tmp / "data", [args.set])[args.set]
        with services(tmp, tmp / "data", args.rtt_ms, args.mbit) as svc:
            _measure(args, buf, tmp, svc, depset, trees)


def _measure(args, buf: str, tmp: Path, svc: Services, depset: DepSet, trees) -> None:
    registry_url = svc.registry_url
    project = tmp / "project"
    write_project(project, svc.bsr_host, depset)
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    base_env["SSL_CERT_FILE"] = str(svc.ca)
    # buf on PATH, as on a machine that builds with it (a fetch asks its version once)
    base_env["PATH"] = os.pathsep.join([str(Path(buf).parent), base_env.get("PATH", os.defpath)])

    def env(tree: str, member: str) -> dict[str, str]:
        return {
            **base_env,
            "PYTHONPATH": str(trees[tree]),
            "BUF_CACHE_DIR": str(tmp / member / "buf-cache"),
            "BSR_TEAM_CACHE_DIR": str(tmp / member / "store"),
        }

    def fetch(environment: dict[str, str], *extra: str) -> None:
        argv = [sys.executable, "-m", "bsr_team_cache", "fetch", str(project)]
        argv += ["--team", "bench", "--registry", registry_url, "-q", *extra]
        subprocess.run(argv, env=environment, check=True)

    def buf_build(environment: dict[str, str]) -> None:
        argv = [buf, "build", "-o", os.devnull]
        subprocess.run(argv, cwd=project, env=environment, check=True, capture_output=True)

    fetch(env("this tree", "member-a"), "--update-lock")  # resolves, publishes
    for tree in trees:  # each tree's own warm store and buf cache
        fetch(env(tree, f"warm-{tree}"))

    def new_machine(tree: str) -> Callable[[], None]:
        def run() -> None:
            member = f"new-{tree}"
            shutil.rmtree(tmp / member, ignore_errors=True)
            fetch(env(tree, member))
            buf_build(env(tree, member))

        return run

    def buf_alone() -> None:
        shutil.rmtree(tmp / "buf-only", ignore_errors=True)
        buf_build({**base_env, "BUF_CACHE_DIR": str(tmp / "buf-only")})

    def warm(tree: str) -> Callable[[], None]:
        return lambda: fetch(env(tree, f"warm-{tree}"))

    cold = _alternating({"buf alone": buf_alone, **{t: new_machine(t) for t in trees}}, args.repeat)
    hot = _alternating({t: warm(t) for t in trees}, args.repeat)
    python = _alternating(
        {"python": lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)},
        args.repeat,
    )["python"]

    ms = 1000.0
    print(
        f"{len(depset.deps)} deps; link: {args.rtt_ms:g} ms RTT, {args.mbit:g} Mbit/s; "
        f"{args.repeat} runs each, alternating\n"
    )
    rows = [("", "baseline", "this tree", "this / baseline")]
    rows.append(
        (
            "new machine: fetch + buf build offline",
            f"{cold['baseline'] * ms:.0f} ms",
            f"{cold['this tree'] * ms:.0f} ms",
            f"{cold['this tree'] / cold['baseline']:.3f}",
        )
    )
    speedup = {t: cold["buf alone"] / cold[t] for t in trees}
    rows.append(
        (
            f"  speed-up vs buf alone ({cold['buf alone'] * ms:.0f} ms)",
            f"{speedup['baseline']:.2f}x",
            f"{speedup['this tree']:.2f}x",
            f"{speedup['this tree'] / speedup['baseline']:.3f}",
        )
    )
    rows.append(
        (
            "warm fetch, as a process",
            f"{hot['baseline'] * ms:.0f} ms",
            f"{hot['this tree'] * ms:.0f} ms",
            f"{hot['this tree'] / hot['baseline']:.3f}",
        )
    )
    rows.append(
        (
            f"  beyond Python start-up ({python * ms:.0f} ms)",
            f"{(hot['baseline'] - python) * ms:.0f} ms",
            f"{(hot['this tree'] - python) * ms:.0f} ms",
            f"{(hot['this tree'] - python) / (hot['baseline'] - python):.3f}",
        )
    )
    print(table(rows))


if __name__ == "__main__":
    main()
