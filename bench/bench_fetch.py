"""A new machine getting a project's BSR dependencies, measured side by side, every service behind
its own shaped link (bsr_team_cache.devnet; default 20 ms RTT, 100 Mbit/s each).

    .venv/bin/python bench/bench_fetch.py [--repeat 5] [--warmup 1] [--rtt-ms 20] [--mbit 100]
        [--sets 10,200,googleapis] [--json FILE] [--restore auto|curl|python] [--workdir DIR]

A full run (all sets, --repeat 5) takes several minutes; --sets picks some of them. Every file
goes under --workdir (default: the temp dir), whose file-system latency is printed first: a
cold fetch and a tarball restore both create thousands of directories and files, and on a slow
file system that cost, not the network or the CPU, decides both.

Services, on loopback, each behind its own ShapingProxy: dev-bsr (TLS; what the real `buf` CLI
downloads from), CNCF Distribution (the team registry), and an http.server serving tarballs of
buf's cache (what a CI cache step restores).

Dependency sets, each its own buf project (buf.yaml v2 whose deps are on dev-bsr, buf.lock
written by `fetch --update-lock`, and one .proto that imports a file of every dep, so that
`buf build` needs them all):
  10          the 6 sample modules (acme/*, a googleapis sample) and 4 small generated ones;
  200         200 small generated modules;
  googleapis  one generated module the size of googleapis (~40 MB in ~3,900 .proto files).

Rows of each set's table, each measured --repeat times after --warmup unmeasured rounds, in
rounds (each round runs every row once, so drift of a noisy machine hits all rows alike);
preparation such as emptying directories is not timed:
  python -c pass        the interpreter's start-up, for reference;
  buf alone             `buf build` with an empty BUF_CACHE_DIR: buf downloads every dep from
                        dev-bsr through its link;
  tarball + buf build   the deps' warm buf cache (the `v3` tree a `buf build` left, packed once
                        as .tar.gz) restored with `curl -sf URL | tar -xz -C DIR` from the
                        tarball server's link, then `buf build` offline;
    of which restore    the restore alone;
  team fetch (cold) + buf build
                        `bsr-team-cache fetch -q` (the console script installed beside this
                        interpreter; `python -m bsr_team_cache` without one) from the team registry into an empty local
                        store and empty buf cache (member A having run `fetch --update-lock`
                        once, which published the deps and wrote buf.lock, and, for sets of two
                        modules or more, a second machine having fetched them from the team
                        registry, which published the lock pack), then `buf build` offline;
    of which fetch      the fetch alone;
  python GET of the pack alone
                        (sets of two modules or more) a Python process that connects to the
                        registry's link, sends the one request a cold fetch starts with (the
                        lock pack's manifest) and reads the answer to its end, doing nothing
                        else: the least any Python client can spend before it has the bytes.
                        Against "of which restore" it says how much of the gap is the
                        interpreter and the protocol rather than the fetch's own work;
  warm fetch            `bsr-team-cache fetch -q` again, local store and buf cache warm;
  team fetch --no-packs (cold) + build
                        the cold team fetch without the lock pack: module by module.
For every set of two modules or more also: the cold team fetch (--no-packs) + build once
member A made a team bundle of the deps (fetch finds it), and with `fetch --bundle NAME`.

"Offline" is checked, not assumed: those builds run with SSL_CERT_FILE naming a CA that did not
sign dev-bsr's certificate, and the BSR link must see no connection while they run. The "links"
column counts the connections each row opened per link (median over runs; links it did not
use are left out). "vs tarball" is the
row's median time over the tarball row's (<= 1.00x: not slower than restoring a tarball);
"speed-up" is buf alone's median time over the row's. Peak RSS is the largest ru_maxrss of the
row's processes (os.wait4; a shell pipeline counts its children; children are forked by a
small spawner process, see bench/_util.py, so ~7 MB is the floor).

Nothing is deleted while a set is measured: a row's previous output is moved aside (rename)
and all of them are deleted at the end. On ext4 without a journal (this kind of machine's
disk), a new inode skips every inode freed in the last 1-6 minutes, one lookup each
(fs/ext4/ialloc.c, recently_deleted): emptying thousands of files before each run made
creating files 5-10x slower within minutes, more so the more files a row creates (a fresh CI
machine has freed none). Before each run of a row that starts empty, os.sync() writes what
earlier runs left to disk, so that this is not done during the run. The set-up before the
rounds still deletes (the registry its upload folders, the file-system probe its files), and a
fetch that prints a warning (such as a store it could not write) stops the benchmark.

Before measuring, the package is byte-compiled (compileall) so that no run pays for compiling;
the output's first lines say whether bytecode was cached before and whether writing it is off.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import http.server
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _util import ChildRun, check_child, run_child, summary, table

import bsr_team_cache
from bsr_team_cache.bsr.devbsr import DevBSRServer, ModuleRepository, ensure_tls_files
from bsr_team_cache.demo import find_buf
from bsr_team_cache.devnet import ShapingProxy
from bsr_team_cache.domain.buflock import read_buf_lock
from bsr_team_cache.oci.devregistry import DistributionServer, find_distribution
from bsr_team_cache.samples import (
    write_generated_modules,
    write_large_module,
    write_sample_data,
)
from bsr_team_cache.team.names import pack_repository, pack_tag

ALL_SETS = ("10", "200", "googleapis")
BUNDLE = "bench-deps"

PYTHON = "python -c pass"
BUF_ALONE = "buf alone"
TARBALL = "tarball restore + buf build"
RESTORE = "  of which restore"
PACK_GET = "python GET of the pack alone"
TEAM = "team fetch (cold) + buf build"
FETCH = "  of which fetch"
TEAM_MODULES = "team fetch --no-packs (cold) + build"
WARM = "warm fetch"
TEAM_BUNDLE = "team fetch --no-packs (cold, team has a bundle) + build"
TEAM_NAMED = "team fetch --bundle NAME (cold) + build"

# What a user runs: the console script beside this interpreter (else python -m, ~5 ms more).
_SCRIPT = Path(sys.executable).parent / "bsr-team-cache"
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "bsr_team_cache"]

# One HTTP/1.1 GET, read to its end; exits 1 unless the answer is 200.
_PY_GET = (
    "import socket, sys\n"
    "host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n"
    "s = socket.create_connection((host, port))\n"
    "s.sendall(f'GET {path} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n'\n"
    "          'Accept: application/vnd.oci.image.manifest.v1+json\\r\\n'\n"
    "          'Connection: close\\r\\n\\r\\n'.encode())\n"
    "answer = bytearray()\n"
    "while chunk := s.recv(1 << 20):\n"
    "    answer += chunk\n"
    "sys.exit(0 if answer.startswith(b'HTTP/1.1 200 ') else 1)\n"
)

# Restoring without curl: the same stream, read by Python.
_PY_RESTORE = (
    "import sys, tarfile, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1]) as r, tarfile.open(fileobj=r, mode='r|gz') as t:\n"
    "    t.extractall(sys.argv[2], **({'filter': 'tar'} if hasattr(tarfile, 'tar_filter') else {}))\n"
)


# -- the dependency sets --------------------------------------------------------------------


@dataclass
class DepSet:
    key: str
    title: str
    deps: list[str]  # owner/name on dev-bsr
    uses: list[tuple[str, str]]  # (a file of a dep, a message it defines) for the project


def _first_message(path: Path) -> str:
    text = path.read_text()
    package = re.search(r"^package\s+([\w.]+)\s*;", text, re.MULTILINE)
    message = re.search(r"^message\s+(\w+)", text, re.MULTILINE)
    assert package and message, path
    return f"{package.group(1)}.{message.group(1)}"


def write_bench_data(data: Path, keys: list[str]) -> dict[str, DepSet]:
    """dev-bsr's data directory with the modules of the sets ``keys``; the sets."""
    sets: dict[str, DepSet] = {}
    data.mkdir(parents=True, exist_ok=True)
    if "10" in keys:
        write_sample_data(data)
        libs = write_generated_modules(data, 4, owner="bench")
        uses = [
            ("acme/orders/v1/order.proto", "acme.orders.v1.Order"),
            ("acme/notes/v1/note.proto", "acme.notes.v1.Note"),
            ("acme/common/v1/page.proto", "acme.common.v1.PageRequest"),
            ("acme/pets/v1/pet.proto", "acme.pets.v1.Pet"),
            ("acme/money/v1/money.proto", "acme.money.v1.Price"),
            ("google/api/http.proto", "google.api.HttpRule"),
        ]
        uses += [(f"{n}/v1/file0.proto", f"{n.replace('/', '.')}.v1.M0x0") for n in libs]
        deps = ["acme/orders", "acme/notes", "acme/common", "acme/pets", "acme/money"]
        sets["10"] = DepSet("10", "10 deps", [*deps, "googleapis/googleapis", *libs], uses)
    if "200" in keys:
        libs = write_generated_modules(data, 200, owner="gen")
        uses = [(f"{n}/v1/file0.proto", f"{n.replace('/', '.')}.v1.M0x0") for n in libs]
        sets["200"] = DepSet("200", "200 deps", libs, uses)
    if "googleapis" in keys:
        name = write_large_module(data, owner="bench", name="large")
        root = data / name / "main"
        # A few files of different packages (each imports the files before it in its package).
        picked = sorted(root.rglob("*.proto"))[::997][:4]
        uses = [(p.relative_to(root).as_posix(), _first_message(p)) for p in picked]
        sets["googleapis"] = DepSet("googleapis", "googleapis-sized (1 module)", [name], uses)
    return sets


def write_project(project: Path, host: str, depset: DepSet) -> None:
    """A buf v2 project: buf.yaml with the set's deps on ``host``, one proto using them all."""
    (project / "bench" / "v1").mkdir(parents=True)
    (project / "buf.yaml").write_text(
        "version: v2\nmodules:\n  - path: .\ndeps:\n"
        + "".join(f"  - {host}/{d}\n" for d in depset.deps)
    )
    imports = "".join(f'import "{f}";\n' for f in sorted({f for f, _ in depset.uses}))
    fields = "".join(f"  {m} dep_{i} = {i};\n" for i, (_, m) in enumerate(depset.uses, 1))
    (project / "bench" / "v1" / "uses.proto").write_text(
        f'syntax = "proto3";\n\npackage bench.v1;\n\n{imports}\nmessage Uses {{\n{fields}}}\n'
    )


# -- the services ---------------------------------------------------------------------------


class CountingProxy(ShapingProxy):
    """A ShapingProxy that counts the connections it accepted (hooks its ``_connect``)."""

    def __init__(self, target: tuple[str, int], *, rtt_ms: float, mbit: float) -> None:
        super().__init__(target, rtt_ms=rtt_ms, mbit=mbit)
        self.connections = 0
        self._count_lock = threading.Lock()

    def _connect(self, client: socket.socket) -> None:
        with self._count_lock:
            self.connections += 1
        super()._connect(client)


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Services:
    bsr_host: str  # localhost:PORT of the BSR's link, as buf.yaml names it
    registry_url: str  # the team registry, through its link
    tarball_url: str  # the tarball server's root, through its link
    www: Path  # what the tarball server serves
    ca: Path  # the CA that signed dev-bsr's certificate
    bogus_ca: Path  # a CA that did not: any BSR call fails with it
    links: dict[str, CountingProxy]

    def counts(self) -> dict[str, int]:
        return {name: link.connections for name, link in self.links.items()}


@contextlib.contextmanager
def services(tmp: Path, data: Path, rtt_ms: float, mbit: float) -> Iterator[Services]:
    """dev-bsr, Distribution and the tarball server, each behind its own shaped link."""
    bsr, ca = DevBSRServer.with_tls(ModuleRepository(data), tmp / "tls")
    bogus_ca = ensure_tls_files(tmp / "bogus-tls", []).ca_cert
    www = tmp / "www"
    www.mkdir()
    files = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(www))
    )
    files.daemon_threads = True
    registry = DistributionServer(tmp / "registry")
    with contextlib.ExitStack() as stack:
        bsr.start()
        stack.callback(bsr.stop)
        registry.start()
        stack.callback(registry.stop)
        threading.Thread(target=files.serve_forever, daemon=True).start()
        stack.callback(files.server_close)
        stack.callback(files.shutdown)
        links = {
            name: CountingProxy(("127.0.0.1", port), rtt_ms=rtt_ms, mbit=mbit)
            for name, port in (
                ("bsr", bsr.port),
                ("registry", registry.port),
                ("tarball", files.server_address[1]),
            )
        }
        for link in links.values():
            link.start()
            stack.callback(link.stop)
        yield Services(
            bsr_host=f"localhost:{links['bsr'].port}",
            registry_url=f"http://127.0.0.1:{links['registry'].port}/bench",
            tarball_url=f"http://127.0.0.1:{links['tarball'].port}",
            www=www,
            ca=ca,
            bogus_ca=bogus_ca,
            links=links,
        )


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Sample:
    """One run of a row: wall time, its parts, peak RSS, connections opened per link."""

    seconds: float
    rss: int
    links: dict[str, int]
    parts: dict[str, ChildRun] = field(default_factory=dict)


@dataclass
class Case:
    """A row measured by running ``run`` after ``prepare`` (which is not timed)."""

    name: str
    run: Callable[[], Sample]
    prepare: Callable[[], None] = lambda: None


@dataclass
class RowResult:
    name: str
    seconds: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    links: list[dict[str, int]] = field(default_factory=list)

    def add(self, seconds: float, rss: int, links: dict[str, int]) -> None:
        self.seconds.append(seconds)
        self.rss.append(rss)
        self.links.append(links)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def as_json(self) -> dict:
        lo, med = summary(self.seconds)
        return {
            "seconds": self.seconds,
            "min_s": lo,
            "median_s": med,
            "peak_rss_mb": max(self.rss) / 2**20 if self.rss else None,
            "connections_per_run": self.links,
        }


def _dir_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


class SetBench:
    """The rows of one dependency set, on shared services."""

    def __init__(self, depset: DepSet, svc: Services, root: Path, buf: str, use_curl: bool) -> None:
        self.depset = depset
        self.svc = svc
        self.root = root
        self.buf = buf
        self.use_curl = use_curl
        self.project = root / "project"
        self.spent = root / "set-aside"
        self._set_aside = 0
        self.team = f"bench-{depset.key}"
        self.info: dict[str, object] = {}
        self.rows: dict[str, RowResult] = {}
        self.base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BUF_", "BSR_TEAM_CACHE_", "SSL_CERT_"))
        }
        # buf on PATH, as on a machine that builds with it: the fetch then asks its version
        # (once per machine) to know which cache layout to write.
        path = self.base_env.get("PATH", os.defpath)
        self.base_env["PATH"] = os.pathsep.join([str(Path(buf).parent), path])

    # -- processes ----------------------------------------------------------------------
    def env(self, buf_cache: Path, store: Path | None = None, *, offline: bool = False) -> dict:
        env = {
            **self.base_env,
            "BUF_CACHE_DIR": str(buf_cache),
            "SSL_CERT_FILE": str(self.svc.bogus_ca if offline else self.svc.ca),
        }
        if store is not None:
            env["BSR_TEAM_CACHE_DIR"] = str(store)
        return env

    def member(self, name: str) -> tuple[Path, Path]:
        """(buf cache, local store) of a team member."""
        return self.root / name / "buf-cache", self.root / name / "store"

    def fetch(self, member: str, *extra: str) -> ChildRun:
        cache, store = self.member(member)
        argv = [*CLI, "fetch", str(self.project)]
        argv += ["--team", self.team, "--registry", self.svc.registry_url, "-q", *extra]
        run = check_child(f"fetch ({member})", run_child(argv, env=self.env(cache, store)))
        said = run.stderr.decode(errors="replace")
        if "warning:" in said:  # e.g. a store it could not write: it measured something else
            raise RuntimeError(f"fetch ({member}) warned:\n{said.strip()[-3000:]}")
        return run

    def build(self, cache: Path, *, offline: bool) -> ChildRun:
        argv = [self.buf, "build", "-o", os.devnull]
        before = self.svc.links["bsr"].connections
        run = run_child(argv, env=self.env(cache, offline=offline), cwd=self.project)
        what = f"buf build ({'offline' if offline else 'from dev-bsr'}, cache {cache})"
        check_child(what, run)
        if offline and self.svc.links["bsr"].connections != before:
            raise RuntimeError(f"{what} connected to the BSR: it was meant to be offline")
        return run

    def restore(self, target: Path) -> ChildRun:
        url = f"{self.svc.tarball_url}/{self.depset.key}.tar.gz"
        if self.use_curl:
            script = 'set -o pipefail; curl -sf "$1" | tar -xz -C "$2"'
            argv = ["bash", "-c", script, "restore", url, str(target)]
        else:
            argv = [sys.executable, "-c", _PY_RESTORE, url, str(target)]
        return check_child("tarball restore", run_child(argv, env=self.base_env))

    def pack_get_argv(self) -> list[str]:
        """The lock pack's GET alone, from a Python process (_PY_GET): its argv, made once
        buf.lock is written (and not while a row is timed)."""
        url = urllib.parse.urlsplit(self.svc.registry_url)
        deps = read_buf_lock(self.project / "buf.lock").deps
        repo = pack_repository(self.team, url.path.strip("/"))
        path = f"/v2/{repo}/manifests/{pack_tag(deps)}"
        return [sys.executable, "-c", _PY_GET, str(url.hostname), str(url.port), path]

    def get_pack(self, argv: list[str]) -> ChildRun:
        return check_child("the pack's GET", run_child(argv, env=self.base_env))

    def timed(self, steps: dict[str, Callable[[], ChildRun]]) -> Sample:
        before = self.svc.counts()
        start = time.perf_counter()
        parts = {name: step() for name, step in steps.items()}
        seconds = time.perf_counter() - start
        after = self.svc.counts()
        links = {k: after[k] - before[k] for k in after}
        return Sample(seconds, max(p.max_rss_bytes for p in parts.values()), links, parts)

    # -- set-up ---------------------------------------------------------------------------
    def setup(self) -> None:
        """The project; member A's `fetch --update-lock` (publishes, writes buf.lock); the
        tarball of the buf cache a `buf build` fills."""
        write_project(self.project, self.svc.bsr_host, self.depset)
        before = self.svc.counts()
        run = self.fetch("member-a", "--update-lock")
        self.info["member A fetch --update-lock, BSR -> team registry (s)"] = run.seconds
        opened = {k: v - before[k] for k, v in self.svc.counts().items() if v > before[k]}
        self.info["its connections"] = " ".join(f"{k} {v}" for k, v in opened.items())
        cache = self.root / "for-tarball"
        run = self.build(cache, offline=False)
        self.info["buf build filling the tarball's cache (s)"] = run.seconds
        files, size = _dir_size(cache / "v3")
        tarball = self.svc.www / f"{self.depset.key}.tar.gz"
        subprocess.run(["tar", "-czf", str(tarball), "-C", str(cache), "v3"], check=True)
        self.info["buf cache v3 tree (files)"] = files
        self.info["buf cache v3 tree (MB)"] = size / 1e6
        self.info["its .tar.gz (MB)"] = tarball.stat().st_size / 1e6
        self.set_aside(cache)
        self.negative_control()
        if len(self.depset.deps) >= 2:
            # The second machine to use the lock takes it from the team registry and makes the
            # lock pack (docs/artifact-format.md) that the cold team fetch rows then read.
            run = self.fetch("member-p")
            self.info["second machine's fetch, making the lock pack (s)"] = run.seconds

    def negative_control(self) -> None:
        """An offline build must fail without the deps in its cache: else "offline" is unproven."""
        empty = self.root / "negative-control"
        argv = [self.buf, "build", "-o", os.devnull]
        run = run_child(argv, env=self.env(empty, offline=True), cwd=self.project)
        if run.returncode == 0:
            raise RuntimeError(
                "buf built with an empty cache and a CA that did not sign dev-bsr's certificate:"
                " the offline builds are not shown to be offline"
            )
        self.info["offline build with an empty cache (negative control)"] = "fails, as it must"
        self.set_aside(empty)

    def set_aside(self, path: Path) -> None:
        """Move ``path`` out of the way, to be deleted with the work directory (see the module
        docstring: deleting now would slow the file creation of the runs that follow)."""
        if path.exists():
            self.spent.mkdir(parents=True, exist_ok=True)
            self._set_aside += 1
            path.rename(self.spent / f"{self._set_aside}-{path.name}")

    def fresh(self, *dirs: Path) -> Callable[[], None]:
        def prepare() -> None:
            for d in dirs:
                self.set_aside(d)
                d.mkdir(parents=True)
            # What earlier runs wrote goes to disk now, not during the run that follows.
            os.sync()

        return prepare

    # -- the rows -------------------------------------------------------------------------
    def cases(self) -> list[Case]:
        alone = self.root / "buf-alone"
        restored = self.root / "restored"
        python = [sys.executable, "-c", "pass"]
        packed = len(self.depset.deps) >= 2
        get = self.pack_get_argv() if packed else []
        return [
            Case(PYTHON, lambda: self.timed({"python": lambda: run_child(python)})),
            Case(
                BUF_ALONE,
                lambda: self.timed({"build": lambda: self.build(alone, offline=False)}),
                self.fresh(alone),
            ),
            Case(
                TARBALL,
                lambda: self.timed(
                    {
                        "restore": lambda: self.restore(restored),
                        "build": lambda: self.build(restored, offline=True),
                    }
                ),
                self.fresh(restored),
            ),
            self.team_case(TEAM),
            # Runs right after the cold fetch: its store and buf cache are warm.
            Case(WARM, lambda: self.timed({"fetch": lambda: self.fetch("member-b")})),
            *(
                [
                    Case(PACK_GET, lambda: self.timed({"get": lambda: self.get_pack(get)})),
                    self.team_case(TEAM_MODULES, "--no-packs"),
                ]
                if packed
                else []
            ),
        ]

    def team_case(self, name: str, *extra: str) -> Case:
        b_cache, b_store = self.member("member-b")
        return Case(
            name,
            lambda: self.timed(
                {
                    "fetch": lambda: self.fetch("member-b", *extra),
                    "build": lambda: self.build(b_cache, offline=True),
                }
            ),
            self.fresh(b_cache, b_store),
        )

    def measure(self, cases: list[Case], repeat: int, warmup: int) -> None:
        """``warmup`` + ``repeat`` rounds of every case; the last ``repeat`` are kept."""
        for round_ in range(warmup + repeat):
            for case in cases:
                case.prepare()
                sample = case.run()
                if round_ < warmup:
                    continue
                self.rows.setdefault(case.name, RowResult(case.name)).add(
                    sample.seconds, sample.rss, sample.links
                )
                for part, child in sample.parts.items():
                    sub = {TARBALL: {"restore": RESTORE}, TEAM: {"fetch": FETCH}}
                    sub_name = sub.get(case.name, {}).get(part)
                    if sub_name:
                        self.rows.setdefault(sub_name, RowResult(sub_name)).add(
                            child.seconds, child.max_rss_bytes, {}
                        )

    def bundle_rows(self, repeat: int, warmup: int) -> None:
        """Member A bundles the deps; the cold team fetch again, finding the bundle and named."""
        cache, store = self.member("member-a")
        argv = [sys.executable, "-m", "bsr_team_cache", "bundle", "--team", self.team]
        argv += ["--registry", self.svc.registry_url, "--name", BUNDLE, "--deps"]
        argv += [f"{self.svc.bsr_host}/{d}" for d in self.depset.deps]
        check_child("bundle", run_child(argv, env=self.env(cache, store)))
        cases = [
            self.team_case(TEAM_BUNDLE, "--no-packs"),
            self.team_case(TEAM_NAMED, "--bundle", BUNDLE),
        ]
        self.measure(cases, repeat, warmup)


# -- reporting ------------------------------------------------------------------------------

ROW_ORDER = (
    PYTHON,
    BUF_ALONE,
    TARBALL,
    RESTORE,
    TEAM,
    FETCH,
    PACK_GET,
    WARM,
    TEAM_MODULES,
    TEAM_BUNDLE,
    TEAM_NAMED,
)


def _links(row: RowResult) -> str:
    if not any(row.links):
        return ""
    names = sorted({k for run in row.links for k in run})
    medians = {n: statistics.median(run.get(n, 0) for run in row.links) for n in names}
    return " ".join(f"{n} {medians[n]:g}" for n in names if medians[n])


def render_set(bench: SetBench) -> str:
    rows = bench.rows
    tarball = rows[TARBALL].median
    buf_alone = rows[BUF_ALONE].median
    lines: list[tuple[str, ...]] = [
        ("", "min", "median", "vs tarball", "speed-up", "peak RSS", "links (conns)")
    ]
    for name in ROW_ORDER:
        row = rows.get(name)
        if row is None:
            continue
        lo, med = summary(row.seconds)
        compared = name not in (PYTHON, RESTORE, FETCH, PACK_GET, WARM)
        lines.append(
            (
                name,
                f"{lo * 1000:.0f} ms",
                f"{med * 1000:.0f} ms",
                f"{med / tarball:.2f}x" if compared else "",
                f"{buf_alone / med:.2f}x" if compared else "",
                f"{max(row.rss) / 2**20:.0f} MB",
                _links(row),
            )
        )
    info = textwrap.fill(
        "; ".join(
            f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in bench.info.items()
        ),
        width=100,
        initial_indent="set-up: ",
        subsequent_indent="  ",
    )
    n = len(bench.depset.deps)
    head = f"== {bench.depset.title}: {n} module{'s' if n > 1 else ''} on dev-bsr"
    ratio = rows[TEAM].median / tarball
    verdict = "meets" if ratio <= 1.0 else "misses"
    tail = (
        f"team fetch (cold) + buf build vs tarball + buf build: {ratio:.2f}x ({verdict} the"
        f" goal <= 1.00x); vs buf alone: {buf_alone / rows[TEAM].median:.2f}x faster"
    )
    if PACK_GET in rows:
        # The GET alone, plus the build as it ran after the fetch: the ratio of a fetch that
        # did nothing once its bytes were in.
        build = rows[TEAM].median - rows[FETCH].median
        floor = (rows[PACK_GET].median + build) / tarball
        tail += (
            f"\na Python process's GET of the pack alone: {rows[PACK_GET].median * 1000:.0f} ms"
            f" against the restore's {rows[RESTORE].median * 1000:.0f} ms; with the build,"
            f" {floor:.2f}x the tarball's time (no client in Python does better)"
        )
    return f"{head}\n{info}\n{table(lines)}\n{tail}"


# -- environment ----------------------------------------------------------------------------

_PROBE_MODULES = (
    "bsr_team_cache",
    "bsr_team_cache.__main__",
    "bsr_team_cache.cli",
    "bsr_team_cache.team.fetch",
    "bsr_team_cache.store",
)


def bytecode_state() -> dict[str, object]:
    """Whether writing bytecode is off, and which probe modules have a current .pyc."""
    cached = {}
    for name in _PROBE_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        pyc = Path(importlib.util.cache_from_source(spec.origin))
        fresh = pyc.exists() and pyc.stat().st_mtime >= Path(spec.origin).stat().st_mtime
        cached[name] = fresh
    return {
        "sys.dont_write_bytecode": sys.dont_write_bytecode,
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
        "pyc_present": cached,
    }


def describe_bytecode(before: dict, after: dict, package_dir: Path) -> str:
    def present(state: dict) -> str:
        return f"{sum(state['pyc_present'].values())}/{len(state['pyc_present'])}"

    return (
        f"bytecode: sys.dont_write_bytecode={before['sys.dont_write_bytecode']},"
        f" PYTHONDONTWRITEBYTECODE={before['PYTHONDONTWRITEBYTECODE'] or 'unset'};"
        f" current .pyc of {present(before)} probe modules before; compiled {package_dir}"
        f" with compileall before measuring ({present(after)} after)"
    )


def compile_package() -> Path:
    """Byte-compile the package (as installed: here, the editable src tree)."""
    package_dir = Path(bsr_team_cache.__file__).parent
    compileall.compile_dir(package_dir, quiet=1, workers=0)
    return package_dir


def _first_line(argv: list[str]) -> str:
    """The first line ``argv`` prints, "" if it prints nothing, "?" if it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return "?"
    if done.returncode != 0:
        return "?"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def file_system_latency(where: Path, count: int = 200) -> str:
    """Microseconds per new directory and per new file (empty, closed) in ``where``: a fetch
    makes thousands of both, and the time one takes differs tenfold between file systems and
    even between directories of one (seen here: 20 to 700 us on one ext4 disk)."""
    probe = Path(tempfile.mkdtemp(prefix="fs-probe-", dir=where))
    try:
        start = time.perf_counter()
        for i in range(count):
            os.mkdir(probe / f"d{i}")
        made_dirs = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(count):
            os.close(os.open(probe / f"d{i}" / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        made_files = time.perf_counter() - start
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return (
        f"mkdir {made_dirs / count * 1e6:.0f} us, new file {made_files / count * 1e6:.0f} us"
        f" (each the mean of {count}, in {where})"
    )


def environment(buf: str, use_curl: bool, workdir: Path) -> dict[str, object]:
    repo = Path(__file__).resolve().parent.parent
    head = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(repo), "status", "--porcelain", "--", "src"])
    return {
        "python": platform.python_version(),
        "buf": _first_line([buf, "--version"]),
        "distribution": _first_line([find_distribution() or "docker-registry", "--version"]),
        "restore": "curl | tar" if use_curl else "python urllib + tarfile (no curl here)",
        "fetch command": "bsr-team-cache (console script)" if len(CLI) == 1 else "python -m",
        "buf on PATH": "yes (every child's PATH starts with its directory)",
        "git": f"{head}{' + uncommitted changes under src/' if dirty else ''}",
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "openssl": ssl.OPENSSL_VERSION,
        "file system": file_system_latency(workdir),
    }


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per row")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="each link's round trip")
    parser.add_argument("--mbit", type=float, default=100.0, help="each link's bandwidth")
    parser.add_argument(
        "--sets",
        default=",".join(ALL_SETS),
        help=f"comma-separated subset of {','.join(ALL_SETS)}",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--restore",
        choices=("auto", "curl", "python"),
        default="auto",
        help="how the tarball is restored: curl | tar (auto: if installed) or Python",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where every cache, store and service keeps its files (default: the temp dir)",
    )
    args = parser.parse_args(argv)
    if not args.workdir.is_dir():
        parser.error(f"--workdir {args.workdir}: not a directory")
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in args.sets if s not in ALL_SETS]
    if unknown or not args.sets:
        parser.error(f"--sets: unknown {unknown}; choose from {','.join(ALL_SETS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    buf = find_buf()
    if buf is None:
        sys.exit("buf not found: pip install -e '.[test]'")
    has_curl = shutil.which("curl") is not None and shutil.which("bash") is not None
    use_curl = has_curl if args.restore == "auto" else args.restore == "curl"
    if args.restore == "curl" and not has_curl:
        sys.exit("--restore curl: curl or bash is not installed")
    started = time.perf_counter()
    before = bytecode_state()
    package_dir = compile_package()
    after = bytecode_state()
    env = environment(buf, use_curl, args.workdir)
    print(describe_bytecode(before, after, package_dir))
    print(" ".join(f"{k}: {v};" for k, v in env.items()))
    if not use_curl:
        print("the tarball is restored by Python (urllib + tarfile), not `curl | tar`")
    print(
        f"links: {args.rtt_ms:g} ms RTT, {args.mbit:g} Mbit/s each (dev-bsr, registry, tarball"
        f" server); {args.repeat} measured runs per row after {args.warmup} warm-up round(s)\n"
    )
    results: dict[str, Any] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "bytecode": {"before": before, "after": after, "compiled": str(package_dir)},
        "environment": env,
        "sets": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-fetch-", dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        sets = write_bench_data(tmp / "data", args.sets)
        data_seconds = time.perf_counter() - t0
        with services(tmp, tmp / "data", args.rtt_ms, args.mbit) as svc:
            for key in args.sets:
                bench = SetBench(sets[key], svc, tmp / "sets" / key, buf, use_curl)
                compile_package()  # the package may have been edited since
                t0 = time.perf_counter()
                bench.setup()
                bench.measure(bench.cases(), args.repeat, args.warmup)
                if len(sets[key].deps) >= 2:  # a bundle holds two modules or more
                    bench.bundle_rows(args.repeat, args.warmup)
                bench.info["this set's wall time (s)"] = time.perf_counter() - t0
                print(render_set(bench) + "\n", flush=True)
                results["sets"][key] = {
                    "title": bench.depset.title,
                    "deps": bench.depset.deps,
                    "info": bench.info,
                    "rows": {name: row.as_json() for name, row in bench.rows.items()},
                    "team_vs_tarball": bench.rows[TEAM].median / bench.rows[TARBALL].median,
                    "speedup_vs_buf_alone": bench.rows[BUF_ALONE].median / bench.rows[TEAM].median,
                }
    total = time.perf_counter() - started
    results["data_generation_s"] = data_seconds
    results["total_s"] = total
    print(f"generating the modules: {data_seconds:.1f} s; whole run: {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
