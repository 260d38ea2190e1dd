"""Fixtures for the attack tests: the legitimate modules (as the dev BSR serves them), a
member's machine, team registries to plant content in, and the CLI run as a member runs it."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bsr.connect import ConnectTransport
from bsr_team_cache.bsr.devbsr import ModuleRepository
from bsr_team_cache.domain.buflock import BufLock, LockedDep, format_buf_lock
from bsr_team_cache.domain.moduleref import ModuleName, parse_module_ref
from bsr_team_cache.oci import open_registry
from bsr_team_cache.oci.artifact import (
    ModuleArtifact,
    ModuleDepRecord,
    module_repository,
    push_module,
)
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.devregistry import DistributionServer
from tests.bsr.test_real_buf import make_project
from tests.conftest import DevBSRProcess
from tests.security.hostile import HostileBSR, Machine

TEAM = "platform-team"


@dataclass(frozen=True)
class Legit:
    """The shop project's closure as the (honest) dev BSR serves it."""

    host: str
    ca: Path
    lock: BufLock
    artifacts: dict[str, ModuleArtifact]  # by "owner/module"

    def artifact(self, name: str) -> ModuleArtifact:
        return self.artifacts[name]

    def dep(self, name: str) -> LockedDep:
        return next(d for d in self.lock.deps if f"{d.module.owner}/{d.module.name}" == name)


def legit_closure(
    host: str, ca: Path, roots: list[str]
) -> tuple[BufLock, dict[str, ModuleArtifact]]:
    verify = ssl.create_default_context(cafile=str(ca))
    with BSRModuleClient(ConnectTransport(verify=verify, token_provider=lambda h: None)) as bsr:
        graph = bsr.graph([parse_module_ref(f"{host}/{r}") for r in roots])
        contents = bsr.download_graph(graph)
    artifacts = {}
    deps = []
    for commit_id, content in contents.items():
        info = content.commit
        deps.append(LockedDep(info.module, commit_id, info.digest))
        artifacts[f"{info.module.owner}/{info.module.name}"] = ModuleArtifact(
            info.module,
            commit_id,
            info.digest,
            tuple(
                ModuleDepRecord(c.module, c.commit_id, c.digest)
                for c in graph.transitive_deps(commit_id)
            ),
            dict(content.files),
            info.create_time.isoformat(),
        )
    return BufLock("v2", tuple(sorted(deps, key=lambda d: str(d.module)))), artifacts


@pytest.fixture(scope="session")
def legit(dev_bsr: DevBSRProcess) -> Legit:
    lock, artifacts = legit_closure(
        dev_bsr.host, dev_bsr.ca_cert, ["acme/orders", "acme/notes", "acme/common"]
    )
    return Legit(dev_bsr.host, dev_bsr.ca_cert, lock, artifacts)


@pytest.fixture
def machine(tmp_path: Path, legit: Legit) -> Machine:
    m = Machine(tmp_path / "machine")
    make_project(m.project, legit.host)
    (m.project / "buf.lock").write_text(format_buf_lock(legit.lock))
    return m


@pytest.fixture
def layout_url(tmp_path: Path) -> str:
    return f"oci-layout:{tmp_path / 'team-registry'}"


@pytest.fixture
def distribution_url(distribution: DistributionServer, tmp_path: Path) -> str:
    return f"{distribution.url}/sec-{tmp_path.name[-24:].lower().replace('_', '-')}"


def publish(url: str, artifacts, *, skip: tuple[str, ...] = ()) -> RegistryBackend:
    """Push legitimate artifacts (but ``skip``) the way a member's fetch would."""
    registry = open_registry(url)  # an http URL's path is the namespace: the client adds it
    for name, artifact in artifacts.items():
        if name not in skip:
            push_module(registry, module_repository(TEAM, artifact.module), artifact)
    return registry


def plant(url: str, artifact: ModuleArtifact, *, tag: str | None = None) -> None:
    """Push a (tampered) artifact into its module's repository, under ``tag`` if given."""
    registry = open_registry(url)
    repo = module_repository(TEAM, artifact.module)
    push_module(registry, repo, replace(artifact, commit=tag) if tag else artifact)


def run_cli(machine: Machine, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """The CLI as the member runs it; and, whatever the attack, nothing outside buf's cache,
    the store and the export directory changed on the machine."""
    writable = ["buf-cache", "store", "export"]
    if "--export" in args:
        export = Path(args[args.index("--export") + 1])
        if export.is_relative_to(machine.root):
            writable.append(str(export.relative_to(machine.root)))
    before = machine.snapshot_outside(*writable)
    result = subprocess.run(
        [sys.executable, "-m", "bsr_team_cache", *args],
        capture_output=True,
        text=True,
        env={**_base_env(), **machine.env(**(env or {}))},
        timeout=timeout,
    )
    assert machine.snapshot_outside(*writable) == before, "written outside its roots"
    return result


def fetch_args(machine: Machine, registry: str, *extra: str) -> list[str]:
    """``fetch --json`` of the machine's project (what follows ``bsr-team-cache``)."""
    project = str(machine.project)
    return ["fetch", project, "--team", TEAM, "--registry", registry, "--json", *extra]


def fetch(
    machine: Machine, registry: str, ca: Path, *extra: str, env: dict[str, str] | None = None
):
    """``bsr-team-cache fetch --json`` of the machine's project, as the member runs it."""
    env = {"SSL_CERT_FILE": str(ca), **(env or {})}
    return run_cli(machine, *fetch_args(machine, registry, *extra), env=env)


def hits(result: subprocess.CompletedProcess) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["hits"]


def _base_env() -> dict[str, str]:
    import os

    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR", "SYSTEMROOT")
    return {k: os.environ[k] for k in keep if k in os.environ}


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The CLI failed the way it should: no traceback, one error line."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [
        line for line in result.stderr.splitlines() if line.startswith("bsr-team-cache: error")
    ]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture
def hostile_bsr(sample_data: Path, tmp_path: Path, machine: Machine, legit: Legit):
    """Start a HostileBSR(mode, target) serving the sample modules; the machine's project and
    buf.lock then name its host."""
    started = []

    def start(mode: str, target: str) -> tuple[str, Path, HostileBSR]:
        app = HostileBSR(ModuleRepository(sample_data), mode, target)
        server, ca = app.start(tmp_path / "hostile-tls")
        started.append(server)
        host = f"localhost:{server.port}"
        lock = BufLock(
            "v2",
            tuple(
                LockedDep(ModuleName(host, d.module.owner, d.module.name), d.commit, d.digest)
                for d in legit.lock.deps
            ),
        )
        text = (machine.project / "buf.yaml").read_text().replace(legit.host, host)
        (machine.project / "buf.yaml").write_text(text)
        (machine.project / "buf.lock").write_text(format_buf_lock(lock))
        return host, ca, app

    yield start
    for server in started:
        server.stop()
