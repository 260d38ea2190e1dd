"""The self-contained demo: a dev BSR on loopback, sample modules, the client and real buf.

Nothing here needs the network or a registry server: everything runs on 127.0.0.1 in a
temporary directory that is removed afterwards (unless ``keep`` is set).
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

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bsr.connect import ConnectTransport, default_ssl_context
from bsr_team_cache.bsr.devbsr import DevBSR, DevBSRServer, ModuleRepository, ensure_tls_files
from bsr_team_cache.domain.buflock import read_buf_lock
from bsr_team_cache.domain.moduleref import parse_module_ref
from bsr_team_cache.samples import write_sample_data

DEMO_DEPS = ("acme/orders", "acme/notes", "acme/common")
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
    steps: list[tuple[str, float, str]] = field(default_factory=list)
    buf_agrees: bool | None = None


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


def _timed(report: DemoReport, what: str, fn: Callable, detail: str = ""):
    start = time.perf_counter()
    result = fn()
    report.steps.append((what, time.perf_counter() - start, detail))
    return result


def _run(root: Path, report: DemoReport, say: Callable[[str], None]) -> None:
    data = write_sample_data(root / "bsr-data")
    repo = _timed(report, "load sample modules, compute digests", lambda: ModuleRepository(data))
    tls = ensure_tls_files(root / "tls", ["127.0.0.1"])
    server = DevBSRServer(
        DevBSR(repo), host="127.0.0.1", port=0, cert_file=tls.server_cert, key_file=tls.server_key
    ).start()
    host = f"localhost:{server.port}"
    say(f"dev BSR serving {len(repo.modules)} modules on https://{host}")
    try:
        ctx = default_ssl_context()
        ctx.load_verify_locations(cafile=str(tls.ca_cert))
        refs = [parse_module_ref(f"{host}/{d}") for d in DEMO_DEPS]
        with BSRModuleClient(ConnectTransport(verify=ctx)) as client:
            graph = _timed(report, "resolve graph (GetGraph)", lambda: client.graph(refs))
            contents = _timed(
                report, "download + verify b5 (Download)", lambda: client.download_graph(graph)
            )
        for content in sorted(contents.values(), key=lambda c: str(c.commit.module)):
            report.rows.append(
                {
                    "module": str(content.commit.module),
                    "commit": content.commit.commit_id,
                    "digest": str(content.commit.digest),
                    "files": len(content.files),
                    "bytes": content.size,
                }
            )
        buf = find_buf()
        if buf is None:
            say("buf CLI not found: skipping the buf dep update / buf build part")
        else:
            _run_buf(buf, root, host, tls.ca_cert, report)
    finally:
        server.stop()
    _print(report, say)


def _run_buf(buf: str, root: Path, host: str, ca: Path, report: DemoReport) -> None:
    project = root / "shop"
    (project / "shop" / "v1").mkdir(parents=True)
    (project / "buf.yaml").write_text(
        "version: v2\ndeps:\n" + "".join(f"  - {host}/{d}\n" for d in DEMO_DEPS)
    )
    (project / "shop" / "v1" / "shop.proto").write_text(DEMO_PROTO)
    env = {**os.environ, "SSL_CERT_FILE": str(ca), "BUF_CACHE_DIR": str(root / "buf-cache")}

    def buf_run(*args: str) -> None:
        result = subprocess.run(
            [buf, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"buf {' '.join(args)} failed: {result.stderr.strip()}")

    _timed(report, "real `buf dep update` (cold)", lambda: buf_run("dep", "update"))
    _timed(report, "real `buf build` (warm buf cache)", lambda: buf_run("build", "-o", "/dev/null"))
    lock = read_buf_lock(project / "buf.lock")
    ours = {r["module"]: r["digest"] for r in report.rows}
    report.buf_agrees = all(ours.get(str(d.module)) == str(d.digest) for d in lock.deps) and len(
        lock.deps
    ) == len(ours)


def _print(report: DemoReport, say: Callable[[str], None]) -> None:
    say("")
    say(f"{'module':<40} {'commit':<12} {'digest':<20} {'files':>5} {'bytes':>9}")
    for row in report.rows:
        name = row["module"].split("/", 1)[1]
        say(
            f"{name:<40} {row['commit'][:12]:<12} {row['digest'][:20]:<20}"
            f" {row['files']:>5} {row['bytes']:>9}"
        )
    say("")
    for what, seconds, _ in report.steps:
        say(f"  {what:<45} {seconds * 1000:8.1f} ms")
    if report.buf_agrees is not None:
        verdict = "match" if report.buf_agrees else "DO NOT match"
        say(f"\nbuf.lock digests written by the real buf CLI {verdict} ours.")
