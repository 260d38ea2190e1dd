"""The self-contained demo: two team members share BSR modules through an on-disk registry.

The BSR is a remote service, so the demo puts its dev BSR behind a link shaped like the internet
(``devnet``); the team registry is near (a directory). Member A fetches cold (from the BSR,
publishing to the team registry) and makes a bundle; the BSR is stopped; plain ``buf build``
with an empty cache then fails (the negative control), while member B, with empty caches,
fetches everything from the team registry and the real ``buf build`` runs offline. The monitor
dashboard ends it. Nothing here needs the network or a registry server: everything runs on
127.0.0.1 in a temporary directory that is removed afterwards (unless ``workdir`` is given).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bsr_team_cache._wire import default_ssl_context
from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bsr.connect import ConnectTransport
from bsr_team_cache.bsr.devbsr import DevBSRServer, ModuleRepository
from bsr_team_cache.devnet import ShapingProxy
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.samples import write_sample_data
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.cache import TeamCache
from bsr_team_cache.team.fetch import fetch

DEMO_DEPS = ("acme/orders", "acme/notes", "acme/common")
DEMO_TEAM = "platform-team"
# The BSR as a CI runner or laptop sees buf.build: far away, with some bandwidth.
BSR_RTT_MS = 80.0
BSR_MBIT = 50.0
DEMO_PROTO = """syntax = "proto3";

package shop.v1;

import "acme/common/v1/page.proto";
import "acme/notes/v1/note.proto";
import "acme/orders/v1/order.proto";

message Cart {
  acme.orders.v1.Order order = 1;
  acme.notes.v1.Note note = 2;
  acme.common.v1.PageRequest page = 3;
}
"""


@dataclass
class DemoReport:
    rows: list[dict] = field(default_factory=list)
    steps: list[tuple[str, float]] = field(default_factory=list)
    buf_offline_ok: bool = False
    negative_control: str = ""  # what plain buf said with the BSR down and an empty cache
    bundle: str = ""
    dashboard: list[str] = field(default_factory=list)


def find_buf() -> str | None:
    found = shutil.which("buf")
    if found:
        return found
    beside = Path(sys.executable).parent / "buf"
    return str(beside) if beside.exists() else None


def run_demo(workdir: Path | None = None, say: Callable[[str], None] = print) -> DemoReport:
    report = DemoReport()
    own_tmp = workdir is None
    root = Path(tempfile.mkdtemp(prefix="bsr-team-cache-demo-")) if own_tmp else Path(workdir)
    try:
        _run(root, report, say)
    finally:
        if own_tmp:
            shutil.rmtree(root, ignore_errors=True)
    return report


def _timed(report: DemoReport, what: str, fn: Callable):
    start = time.perf_counter()
    result = fn()
    report.steps.append((what, time.perf_counter() - start))
    return result


def _run(root: Path, report: DemoReport, say: Callable[[str], None]) -> None:
    data = write_sample_data(root / "bsr-data")
    repo = _timed(report, "load sample modules, compute digests", lambda: ModuleRepository(data))
    server, ca_cert = DevBSRServer.with_tls(repo, root / "tls")
    server.start()
    link = ShapingProxy(("127.0.0.1", server.port), rtt_ms=BSR_RTT_MS, mbit=BSR_MBIT).start()
    host = f"localhost:{link.port}"
    registry = OCILayoutRegistry(root / "team-registry")
    say(
        f"the BSR: a dev BSR with {len(repo.modules)} sample modules at https://{host},"
        f" {BSR_RTT_MS:g} ms away at {BSR_MBIT:g} Mbit/s (as buf.build is from a CI runner)"
    )
    say(f"the team registry: {registry.describe()}, near (the embedded on-disk default)")
    say("each member runs, in the project's directory:")
    say(f"  bsr-team-cache fetch --team {DEMO_TEAM} --registry {registry.describe()}")
    say("  (member A adds --update-lock, which writes buf.lock; member B uses it)\n")
    ctx = default_ssl_context()
    ctx.load_verify_locations(cafile=str(ca_cert))
    buf = find_buf()
    try:
        project_a = _project(root / "member-a", host)
        store_a = LocalStore(root / "member-a-store")
        with BSRModuleClient(ConnectTransport(verify=ctx)) as client:
            result_a = _timed(
                report,
                "member A: fetch (cold: BSR, publish to team)",
                lambda: fetch(
                    project_a,
                    team=DEMO_TEAM,
                    registry=registry,
                    bsr=client,
                    buf_cache=root / "member-a-buf-cache",
                    store=store_a,
                    update_lock=True,
                    member="a",
                ),
            )
            team = TeamCache(DEMO_TEAM, registry=registry, bsr=client, store=store_a, member="a")
            pinned = [f"{m.name}:{m.commit}" for m in result_a.modules]
            report.bundle = team.create_bundle(pinned, "shop-deps", "the shop's dependencies")
            _timed(report, "member A: sync (ships its usage events)", team.sync)
        if buf is not None:
            _run_buf(buf, project_a, root / "buf-direct-cache", ca_cert, report)
    finally:
        link.stop()
        server.stop()
    say(f"member A made a bundle of them: {report.bundle}")
    say("the BSR is down from here on")
    if buf is not None:
        report.negative_control = _negative_control(buf, project_a, root, ca_cert)
        say(f"plain `buf build`, empty cache: fails ({report.negative_control})")
    project_b = _project(root / "member-b", host)
    shutil.copyfile(project_a / "buf.lock", project_b / "buf.lock")
    store_b = LocalStore(root / "member-b-store")
    with BSRModuleClient(ConnectTransport(verify=ctx, max_attempts=1)) as client:
        result_b = _timed(
            report,
            "member B: fetch (team registry, BSR down)",
            lambda: fetch(
                project_b,
                team=DEMO_TEAM,
                registry=registry,
                bsr=client,
                store=store_b,
                buf_cache=root / "member-b-buf-cache",
                export=root / "member-b-include",
                member="b",
            ),
        )
        result_b2 = _timed(
            report,
            "member B: fetch again, new buf cache (local store)",
            lambda: fetch(
                project_b,
                team=DEMO_TEAM,
                registry=registry,
                bsr=client,
                store=store_b,
                buf_cache=root / "member-b-buf-cache-2",
                member="b",
            ),
        )
        team_b = TeamCache(DEMO_TEAM, registry=registry, bsr=client, store=store_b, member="b")
        report.dashboard = team_b.metrics().dashboard_lines()
    tiers_b = {m.name: m for m in result_b.modules}
    tiers_b2 = {m.name: m for m in result_b2.modules}
    for a in sorted(result_a.modules, key=lambda m: m.name):
        b, b2 = tiers_b[a.name], tiers_b2[a.name]
        report.rows.append(
            {
                "module": a.name,
                "commit": a.commit,
                "a": a.tier,
                "b": b.tier,
                "b2": b2.tier,
                "bytes": b.bytes,
            }
        )
    if buf is not None:
        env = {**os.environ, "BUF_CACHE_DIR": str(root / "member-b-buf-cache")}
        _timed(
            report, "member B: real `buf build` offline", lambda: _buf_build(buf, project_b, env)
        )
        report.buf_offline_ok = True
    else:
        say("buf CLI not found: skipping the real buf steps")
    _print(report, say)


def _negative_control(buf: str, project_a: Path, root: Path, ca: Path) -> str:
    """Plain buf, an empty cache, the BSR down: what it says (it must fail)."""
    project = root / "buf-alone"
    shutil.copytree(project_a, project)
    env = {**os.environ, "SSL_CERT_FILE": str(ca), "BUF_CACHE_DIR": str(root / "empty-cache")}
    done = _buf_build_run(buf, project, env)
    if done.returncode == 0:
        raise RuntimeError("buf built without the BSR and without a cache: the demo is wrong")
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return (lines[0] if lines else f"exit {done.returncode}")[:160]


def _project(directory: Path, host: str) -> Path:
    (directory / "shop" / "v1").mkdir(parents=True)
    (directory / "buf.yaml").write_text(
        "version: v2\ndeps:\n" + "".join(f"  - {host}/{d}\n" for d in DEMO_DEPS)
    )
    (directory / "shop" / "v1" / "shop.proto").write_text(DEMO_PROTO)
    return directory


def _run_buf(buf: str, project_a: Path, cache: Path, ca: Path, report: DemoReport) -> None:
    """For comparison: real buf on its own, downloading everything from the BSR."""
    project = project_a.parent / "buf-direct"
    shutil.copytree(project_a, project)
    env = {**os.environ, "SSL_CERT_FILE": str(ca), "BUF_CACHE_DIR": str(cache)}

    _timed(
        report,
        "for comparison: real `buf build`, cold, from BSR",
        lambda: _buf_build(buf, project, env),
    )


def _buf_build_run(buf: str, project: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [buf, "build", "-o", os.devnull],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _buf_build(buf: str, project: Path, env: dict[str, str]) -> None:
    done = _buf_build_run(buf, project, env)
    if done.returncode != 0:
        raise RuntimeError(f"buf build in {project} failed: {done.stderr.strip()}")


def _print(report: DemoReport, say: Callable[[str], None]) -> None:
    say("")
    say(
        f"{'module':<30} {'commit':<12} {'member A':<9} {'member B':<9} {'B again':<8} {'bytes':>8}"
    )
    for row in report.rows:
        name = row["module"].split("/", 1)[1]
        say(
            f"{name:<30} {row['commit'][:12]:<12} {row['a']:<9} {row['b']:<9} {row['b2']:<8}"
            f" {row['bytes']:>8}"
        )
    say("")
    for what, seconds in report.steps:
        say(f"  {what:<50} {seconds * 1000:8.1f} ms")
    say(
        f"  (wall time on this machine; the BSR {BSR_RTT_MS:g} ms away, the team registry on"
        " disk: B's fetch is what every new laptop and CI runner of the team pays)"
    )
    if report.buf_offline_ok:
        say(
            "\nmember B built with the real buf CLI and no BSR:"
            " every dep came from the team registry."
        )
    if report.dashboard:
        say("")
        for line in report.dashboard:
            say(line)
