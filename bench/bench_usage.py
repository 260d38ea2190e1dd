"""The usage layer on a synthetic team's event log: time and peak RSS of each command-sized
case at 100k and 1M events, with the ratio to its target printed beside it.

    .venv/bin/python bench/bench_usage.py [--sizes 100000,1000000] [--repeat 3] [--keep DIR]

Logs: a synthetic team (bsr_team_cache.usage.synthetic: 50 members, a year, CI and laptops)
written once per size into an events.db (the time this takes is printed, not a target);
--keep DIR keeps them there and reuses them on the next run.

Cases (CASES; add one with its own child script): each runs in a child process forked by a
small spawner (bench/_util.py, so its peak RSS is its own), --repeat times, reporting
  inner      the case's own work, timed inside the child (the library call);
  process    the child's wall time from fork to exit: interpreter start-up and imports too;
  peak RSS   the child's ru_maxrss (largest of the repeats).
Ratios: process time (min) against the target seconds, peak RSS against the target MB; a
ratio under 1.00 meets the target. For sync (shipping) and merging, "inner" is the target's
measure (the process also copies the log).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import check_child, run_child, table

from bsr_team_cache.usage.log import EventLog
from bsr_team_cache.usage.synthetic import Scenario, synthetic_team, write_log

TEAM = "platform-team"
TIMEZONE = "Europe/Berlin"
MB = 1024 * 1024


def scenario(events: int) -> Scenario:
    """A 50-person team over a year at 1M events (fewer events: the same team, fewer days)."""
    days = max(14, round(365 * events / 1_000_000))
    return Scenario(events=events, days=days, members=50, ci_runners=12, timezone=TIMEZONE)


# A child script prints one JSON object with "seconds" (its own work) and may add fields.
ANALYZE_SCRIPT = f"""
import json, sys, time
from bsr_team_cache.usage.analysis import analyze
from bsr_team_cache.usage.log import EventLog
log = EventLog(sys.argv[1])
start = time.perf_counter()
report = analyze(log, team={TEAM!r}, timezone={TIMEZONE!r})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "requests": report["requests"],
    "opportunities": len(report["bundle_opportunities"]),
    "peaks": report["peak_hours"]["peak_hours"]}}))
"""


# monitor's report over the whole log (since the first event), as `monitor --json` computes it.
MONITOR_SCRIPT = f"""
import json, sys, time
from bsr_team_cache.usage.log import EventLog
from bsr_team_cache.usage.metrics import compute
log = EventLog(sys.argv[1])
start = time.perf_counter()
report = compute(log, team={TEAM!r}, since=0.0, timezone={TIMEZONE!r})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "requests": report["requests"],
    "hit_rate": round(report["hit_rate"], 4), "days": len(report["trends"]["daily"])}}))
"""

# sync's shipping of every event of the log (all new: recorded here, never shipped) to an
# on-disk registry; the log is copied first (not timed), so that each run ships them all.
SHIP_SCRIPT = f"""
import json, shutil, sys, tempfile, time
from pathlib import Path
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.usage.chunks import ship, usage_repository
from bsr_team_cache.usage.log import EventLog
tmp = Path(tempfile.mkdtemp())
shutil.copy(sys.argv[1], tmp / "events.db")
log = EventLog(tmp / "events.db")
registry = OCILayoutRegistry(tmp / "registry")
start = time.perf_counter()
report = ship(log, registry, usage_repository({TEAM!r}), team={TEAM!r}, member="m",
              host="h", store_bytes=0)
seconds = time.perf_counter() - start
size = sum(p.stat().st_size for p in (tmp / "registry").rglob("*") if p.is_file())
shutil.rmtree(tmp)
print(json.dumps({{"seconds": seconds, "events": report.events, "chunks": report.chunks,
    "registry_bytes": size}}))
"""

# Another machine's first read of those events: the chunks merged into an empty log.
MERGE_SCRIPT = f"""
import json, shutil, sys, tempfile, time
from pathlib import Path
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.usage.chunks import merge, ship, usage_repository
from bsr_team_cache.usage.log import EventLog
tmp = Path(tempfile.mkdtemp())
shutil.copy(sys.argv[1], tmp / "events.db")
registry = OCILayoutRegistry(tmp / "registry")
repo = usage_repository({TEAM!r})
ship(EventLog(tmp / "events.db"), registry, repo, team={TEAM!r}, member="m", host="h",
     store_bytes=0)
reader = EventLog(tmp / "reader.db")
start = time.perf_counter()
report = merge(reader, registry, repo, team={TEAM!r}, own_tag="reader.0")
seconds = time.perf_counter() - start
shutil.rmtree(tmp)
print(json.dumps({{"seconds": seconds, "events": report.events, "chunks": report.chunks}}))
"""


@dataclass(frozen=True)
class Case:
    name: str
    script: str  # run as `python -c SCRIPT EVENTS_DB`
    target_seconds: float
    target_mb: float
    sizes: tuple[int, ...] = ()  # the log sizes it runs on (empty: every size)


CASES = [
    Case("analyze", ANALYZE_SCRIPT, 5.0, 500.0),
    Case("monitor", MONITOR_SCRIPT, 5.0, 500.0),
    Case("sync: ship new events", SHIP_SCRIPT, 2.0, 500.0, sizes=(100_000,)),
    # No target in the issue: a new member's first read of 100k of the team's events.
    Case("merge (a reader)", MERGE_SCRIPT, 5.0, 500.0, sizes=(100_000,)),
]


@dataclass(frozen=True)
class Result:
    case: Case
    events: int
    inner: list[float]
    process: list[float]
    rss_bytes: int
    detail: dict


def make_log(directory: Path, events: int) -> tuple[Path, float | None]:
    """The events.db of ``events`` synthetic events in ``directory`` (reused when there),
    and the seconds writing it took (None when reused)."""
    path = directory / f"events-{events}.db"
    done = directory / f"events-{events}.done"
    if path.exists() and done.exists():
        return path, None
    for stale in directory.glob(f"events-{events}.db*"):
        stale.unlink()
    start = time.perf_counter()
    with EventLog(path) as log:
        write_log(log, synthetic_team(scenario(events)))
        log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    done.touch()
    return path, time.perf_counter() - start


def measure(case: Case, log_path: Path, events: int, repeat: int) -> Result:
    argv = [sys.executable, "-c", case.script, str(log_path)]
    inner, process, rss, detail = [], [], 0, {}
    for _ in range(repeat):
        run = check_child(case.name, run_child(argv))
        detail = json.loads(run.stdout)
        inner.append(detail.pop("seconds"))
        process.append(run.seconds)
        rss = max(rss, run.max_rss_bytes)
    return Result(case, events, inner, process, rss, detail)


def report(results: list[Result]) -> str:
    rows = [
        (
            "case",
            "events",
            "inner min/med s",
            "process min/med s",
            "peak RSS MB",
            "time / target",
            "RSS / target",
        )
    ]
    for r in results:
        rows.append(
            (
                r.case.name,
                f"{r.events:,}",
                f"{min(r.inner):.2f} / {statistics.median(r.inner):.2f}",
                f"{min(r.process):.2f} / {statistics.median(r.process):.2f}",
                f"{r.rss_bytes / MB:.0f}",
                f"{min(r.process) / r.case.target_seconds:.2f} (< {r.case.target_seconds:g} s)",
                f"{r.rss_bytes / MB / r.case.target_mb:.2f} (< {r.case.target_mb:g} MB)",
            )
        )
    by_case: dict[str, list[Result]] = {}
    for r in results:
        by_case.setdefault(r.case.name, []).append(r)
    scaling = []
    for name, rs in by_case.items():
        if len(rs) >= 2:
            small, big = min(rs, key=lambda r: r.events), max(rs, key=lambda r: r.events)
            scaling.append(
                f"{name}: {big.events // small.events}x the events took"
                f" {min(big.inner) / min(small.inner):.1f}x the time (inner),"
                f" {big.rss_bytes / small.rss_bytes:.1f}x the memory"
            )
    details = [f"{r.case.name} at {r.events:,}: {json.dumps(r.detail)}" for r in results]
    return "\n".join([table(rows), "", *scaling, *details])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="event counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the logs in this directory")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    directory = args.keep or Path(tempfile.mkdtemp(prefix="bench-usage-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        results = []
        for events in sizes:
            path, wrote = make_log(directory, events)
            how = f"written in {wrote:.1f} s" if wrote is not None else "reused"
            print(f"{events:,} events: {path.stat().st_size / MB:.0f} MB log, {how}", flush=True)
            for case in CASES:
                if not case.sizes or events in case.sizes:
                    results.append(measure(case, path, events, args.repeat))
        print()
        print(report(results))
    finally:
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
