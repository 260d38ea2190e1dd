"""What recording usage events costs a warm fetch: the same warm `fetch` (every module in the
local store and buf's cache) with recording on and off (BSR_TEAM_CACHE_RECORD_USAGE=0),
alternated in one run, as processes. Prints min/median of each and their ratio.

    python bench/bench_recording.py [--repeat 30] [--sets 10 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import check_child, run_child, summary, table
from bench_fetch import compile_package, services, write_bench_data, write_project

from bsr_team_cache.usage.log import open_event_log


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="runs of each, alternated")
    parser.add_argument("--sets", nargs="+", default=["10", "200"], choices=["10", "200"])
    args = parser.parse_args(argv)
    compile_package()
    rows = [("deps", "recording on (min / median)", "off (min / median)", "on / off (median)")]
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp_name:
        tmp = Path(tmp_name)
        sets = write_bench_data(tmp / "data", args.sets)
        with services(tmp, tmp / "data", rtt_ms=0.0, mbit=10_000.0) as svc:
            for key in args.sets:
                project = tmp / "p" / key
                write_project(project, svc.bsr_host, sets[key])
                env = {
                    **os.environ,
                    "SSL_CERT_FILE": str(svc.ca),
                    "BSR_TEAM_CACHE_REGISTRY": svc.registry_url,
                    "BSR_TEAM_CACHE_TEAM": "bench",
                    "BSR_TEAM_CACHE_DIR": str(tmp / "store" / key),
                    "BUF_CACHE_DIR": str(tmp / "buf" / key),
                }
                argv = [sys.executable, "-m", "bsr_team_cache", "fetch", str(project), "-q"]
                check_child("lock", run_child([*argv, "--update-lock"], env=env))
                check_child("warm-up", run_child(argv, env=env))
                on, off = [], []
                for _ in range(args.repeat):
                    on.append(check_child("on", run_child(argv, env=env)).seconds)
                    quiet = {**env, "BSR_TEAM_CACHE_RECORD_USAGE": "0"}
                    off.append(check_child("off", run_child(argv, env=quiet)).seconds)
                with open_event_log(tmp / "store" / key) as log:
                    recorded = log.count()
                expected = (args.repeat + 2) * len(sets[key].deps)
                assert recorded == expected, (recorded, expected)  # recording on did record
                (a, b), (c, d) = summary(on), summary(off)
                rows.append(
                    (
                        sets[key].title,
                        f"{a * 1000:.0f} / {b * 1000:.0f} ms",
                        f"{c * 1000:.0f} / {d * 1000:.0f} ms",
                        f"{statistics.median(on) / statistics.median(off):.3f}",
                    )
                )
    print(table(rows))


if __name__ == "__main__":
    main()
