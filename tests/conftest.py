"""Shared fixtures: the sample modules, a real dev-bsr process on loopback, the real buf CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bsr_team_cache._proc import stop_process
from bsr_team_cache.oci.devregistry import DistributionServer, find_distribution
from bsr_team_cache.samples import write_sample_data

# The buf CLI the tests run: pyproject.toml's test extra pins buf-bin to it.
PINNED_BUF = "1.75.0"

# Every module that acme/orders + acme/notes (+ acme/common) pull in from the sample data.
SHOP_DEP_CLOSURE = [
    "acme/common",
    "acme/money",
    "acme/notes",
    "acme/orders",
    "acme/pets",
    "googleapis/googleapis",
]


@dataclass
class DevBSRProcess:
    """A ``bsr-team-cache dev-bsr`` subprocess and what clients need to reach it."""

    proc: subprocess.Popen
    host: str  # as module names spell it, e.g. localhost:43121
    port: int
    ca_cert: Path
    data_dir: Path
    request_log: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def requests(self) -> list[dict]:
        if not self.request_log.exists():
            return []
        return [json.loads(line) for line in self.request_log.read_text().splitlines()]

    def count(self, method: str) -> int:
        return sum(1 for r in self.requests() if r["method"] == method and r["status"] == "ok")

    def stop(self) -> None:
        stop_process(self.proc)


def start_dev_bsr(data_dir: Path, workdir: Path, *extra: str) -> DevBSRProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready.json"
    log = workdir / "requests.jsonl"
    ready.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bsr_team_cache",
        "dev-bsr",
        "--data",
        str(data_dir),
        "--port",
        "0",
        "--tls-dir",
        str(workdir / "tls"),
        "--ready-file",
        str(ready),
        "--request-log",
        str(log),
        *extra,
    ]
    with open(workdir / "stderr", "w") as stderr:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"dev-bsr exited: {(workdir / 'stderr').read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("dev-bsr did not start within 30 s")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    return DevBSRProcess(
        proc=proc,
        host=f"localhost:{info['port']}",
        port=info["port"],
        ca_cert=Path(info["ca_cert"]),
        data_dir=data_dir,
        request_log=log,
    )


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_data(tmp_path_factory.mktemp("samples") / "data")


@pytest.fixture(scope="session")
def dev_bsr(sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevBSRProcess]:
    server = start_dev_bsr(sample_data, tmp_path_factory.mktemp("dev-bsr"))
    yield server
    server.stop()


@pytest.fixture
def bsr_env(dev_bsr: DevBSRProcess, monkeypatch: pytest.MonkeyPatch) -> DevBSRProcess:
    """Trust the dev BSR's CA in this process (as buf does, through SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(dev_bsr.ca_cert))
    monkeypatch.delenv("BUF_TOKEN", raising=False)
    return dev_bsr


@pytest.fixture(scope="session")
def buf_bin() -> str:
    """The real buf CLI: the one the test extra pins (PyPI buf-bin) in this environment, never
    another buf that happens to be on PATH."""
    found = Path(sys.executable).parent / "buf"
    if not found.exists():
        pytest.fail(
            "the pinned buf CLI is missing: install the test extra (pip install -e '.[test]')"
        )
    version = subprocess.run([str(found), "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == PINNED_BUF, f"{found} is buf {version.stdout.strip()}"
    return str(found)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run ``bsr-team-cache`` as a user would (a separate process)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bsr_team_cache", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture(scope="session")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionServer]:
    """A real CNCF Distribution registry (Debian docker-registry) on a free loopback port."""
    if find_distribution() is None:
        pytest.fail("docker-registry is missing: apt-get install docker-registry (see .ci/run)")
    server = DistributionServer(tmp_path_factory.mktemp("distribution")).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _isolated_local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's real local store; subprocesses inherit the variable."""
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "default-local-store"))
    # ... nor its default registry or config file.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for name in ("BSR_TEAM_CACHE_REGISTRY", "BSR_TEAM_CACHE_TEAM", "BSR_TEAM_CACHE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def read_team_settings(registry, team: str, namespace: str = ""):
    """What the registry holds for a team: its configuration with the bundle index's records
    (unverified, unlike what commands read: for tests to check what was written)."""
    from bsr_team_cache.team.bundle_index import with_bundle_index
    from bsr_team_cache.team.config import read_team_config

    return with_bundle_index(registry, team, read_team_config(registry, team, namespace), namespace)
