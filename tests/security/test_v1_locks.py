"""v1 projects (buf.lock with b4 ``shake256:`` digests) against a lying BSR and a lying team
registry: b4 covers a module's files, not its deps, so what buf's b4 entries say about deps
must come from buf.lock, and the BSR's b4 and b5 graphs must agree."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bsr.connect import ConnectTransport
from bsr_team_cache.bufcache.v3 import module_entry_dir
from bsr_team_cache.domain.buflock import BufLock, LockedDep, format_buf_lock
from bsr_team_cache.domain.digest import SHAKE256, parse_digest
from bsr_team_cache.domain.moduleref import ModuleName, parse_module_ref
from bsr_team_cache.oci.artifact import ModuleArtifact
from tests.conftest import DevBSRProcess
from tests.security.conftest import Legit, fetch, hits, one_line_error, plant, publish
from tests.security.hostile import Machine

pytestmark = pytest.mark.slow

ROOTS = ["acme/orders", "acme/notes", "acme/common"]
FORGED = parse_digest("shake256:" + "ab" * 64)


@dataclass(frozen=True)
class LegitV1:
    lock: BufLock  # version v1, b4 digests
    artifacts: dict[str, ModuleArtifact]  # by "owner/module", with b4 and v1 files


@pytest.fixture(scope="session")
def legit_v1(dev_bsr: DevBSRProcess, legit: Legit) -> LegitV1:
    """The shop closure as the honest dev BSR serves it to a v1 project."""
    verify = ssl.create_default_context(cafile=str(dev_bsr.ca_cert))
    with BSRModuleClient(ConnectTransport(verify=verify, token_provider=lambda h: None)) as bsr:
        graph4 = bsr.graph([parse_module_ref(f"{dev_bsr.host}/{r}") for r in ROOTS], b4=True)
        contents = bsr.download(list(graph4.commits.values()), b4=True)
    b4 = {c.commit.commit_id: c for c in contents}
    artifacts = {
        name: replace(
            artifact,
            b4=b4[artifact.commit].commit.digest,
            v1_files=dict(b4[artifact.commit].v1_files),
            deps=tuple(replace(d, b4=b4[d.commit].commit.digest) for d in artifact.deps),
        )
        for name, artifact in legit.artifacts.items()
    }
    deps = tuple(replace(d, digest=b4[d.commit].commit.digest) for d in legit.lock.deps)
    return LegitV1(BufLock("v1", deps), artifacts)


def _v1_project(machine: Machine, legit: Legit, lock: BufLock, host: str) -> None:
    """The machine's project as a v1 one, naming ``host``."""
    text = (machine.project / "buf.yaml").read_text().replace(legit.host, host)
    (machine.project / "buf.yaml").write_text(text.replace("version: v2", "version: v1"))
    moved = tuple(
        LockedDep(ModuleName(host, d.module.owner, d.module.name), d.commit, d.digest)
        for d in lock.deps
    )
    (machine.project / "buf.lock").write_text(format_buf_lock(BufLock("v1", moved)))


def _b4_entries(machine: Machine) -> list[Path]:
    return sorted((machine.root / "buf-cache" / "v3" / "modules").rglob("module.yaml"))


def test_b4_and_b5_graphs_that_differ_are_a_clear_error(
    machine: Machine, legit: Legit, legit_v1: LegitV1, hostile_bsr, layout_url: str
) -> None:
    host, ca, _ = hostile_bsr("b5-graph-extra-dep", "acme/money")
    _v1_project(machine, legit, legit_v1.lock, host)
    before = machine.snapshot_outside()

    result = fetch(machine, layout_url, ca)

    assert result.returncode == 1
    assert "the BSR's b4 and b5 graphs of" in one_line_error(result)
    assert _b4_entries(machine) == []
    assert machine.snapshot_outside() == before


def test_a_dependency_digest_buf_lock_does_not_pin_never_reaches_buf_cache(
    machine: Machine, legit: Legit, legit_v1: LegitV1, layout_url: str
) -> None:
    """A member publishes acme/orders with its real files (b4 and b5 right) but a forged b4
    for its dependency acme/pets: the digests check out, only the dependency record lies."""
    _v1_project(machine, legit, legit_v1.lock, legit.host)
    publish(layout_url, legit_v1.artifacts, skip=("acme/orders",))
    orders = legit_v1.artifacts["acme/orders"]
    forged = tuple(replace(d, b4=FORGED) if d.module.name == "pets" else d for d in orders.deps)
    plant(layout_url, replace(orders, deps=forged))

    result = fetch(machine, layout_url, legit.ca)

    assert hits(result) == {"local": 0, "team": 5, "bsr": 1}
    assert "names dependency" in result.stderr and "which buf.lock does not pin" in result.stderr
    pets = next(d for d in legit_v1.lock.deps if d.module.name == "pets")
    entry = module_entry_dir(
        machine.root / "buf-cache", orders.module, orders.commit, digest_type=SHAKE256
    )
    module_yaml = (entry / "module.yaml").read_text()
    assert f"digest: {pets.digest}" in module_yaml and str(FORGED) not in module_yaml
    assert len(_b4_entries(machine)) == 6
