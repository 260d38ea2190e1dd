"""`buf build` downloading every sample module from dev-bsr vs the same build on a warm cache.

    python bench/bench_devbsr_build.py [--repeat 5]

Starts dev-bsr (TLS, loopback) with the sample modules, runs real `buf dep update` once for a
project depending on them all, then measures side by side:
  cold = `buf build` with an empty BUF_CACHE_DIR (GetGraph + Download from dev-bsr)
  warm = `buf build` with the cache that the cold build filled (no network)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_seconds, table

from bsr_team_cache.bsr.devbsr import DevBSRServer, ModuleRepository
from bsr_team_cache.demo import DEMO_DEPS, DEMO_PROTO, find_buf
from bsr_team_cache.samples import write_sample_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    buf = find_buf()
    if buf is None:
        sys.exit("buf not found: pip install -e '.[test]'")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        repo = ModuleRepository(write_sample_data(tmp / "data"))
        server, ca_cert = DevBSRServer.with_tls(repo, tmp / "tls")
        server.start()
        try:
            host = f"localhost:{server.port}"
            project = tmp / "project"
            (project / "shop" / "v1").mkdir(parents=True)
            (project / "buf.yaml").write_text(
                "version: v2\ndeps:\n" + "".join(f"  - {host}/{d}\n" for d in DEMO_DEPS)
            )
            (project / "shop" / "v1" / "shop.proto").write_text(DEMO_PROTO)
            cache = tmp / "cache"
            env = {**os.environ, "SSL_CERT_FILE": str(ca_cert), "BUF_CACHE_DIR": str(cache)}

            def run(*argv: str) -> None:
                subprocess.run([buf, *argv], cwd=project, env=env, check=True, capture_output=True)

            run("dep", "update")

            def cold() -> None:
                shutil.rmtree(cache, ignore_errors=True)
                run("build", "-o", os.devnull)

            t_cold = median_seconds(cold, repeat=args.repeat)
            t_warm = median_seconds(lambda: run("build", "-o", os.devnull), repeat=args.repeat)
        finally:
            server.stop()
    total = sum(len(c.files) for c in repo.commits.values())
    print(f"{len(repo.commits)} commits, {total} files served by dev-bsr")
    print(
        table(
            [
                ("buf build", "median", "vs warm"),
                (
                    "cold cache (downloads from dev-bsr)",
                    f"{t_cold * 1000:.0f} ms",
                    f"{t_cold / t_warm:.2f}x",
                ),
                ("warm buf cache (no network)", f"{t_warm * 1000:.0f} ms", "1.00x"),
            ]
        )
    )


if __name__ == "__main__":
    main()
