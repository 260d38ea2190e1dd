"""v1 projects (buf.yaml v1, buf.lock v1 with b4 digests) end to end, with the real buf CLI:
`buf dep update` against dev-bsr (v1beta1), member A fetches and publishes, the BSR stops,
member B fetches from the team registry (Distribution) and `buf build` runs offline; one
artifact per commit serves v1 and v2 projects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bsr_team_cache.domain.buflock import read_buf_lock
from bsr_team_cache.oci import open_registry
from bsr_team_cache.oci.artifact import module_repository
from bsr_team_cache.oci.devregistry import DistributionServer
from tests.conftest import run_cli, start_dev_bsr

pytestmark = pytest.mark.slow
TEAM = "platform-team"
# acme/legacy keeps a v1 buf.yaml and buf.lock of its own (part of its b4 digest).
CLOSURE = {
    "acme/common",
    "acme/legacy",
    "acme/money",
    "acme/orders",
    "acme/pets",
    "googleapis/googleapis",
}
SHOP = """syntax = "proto3";
package shop.v1;
import "acme/orders/v1/order.proto";
import "acme/legacy/v1/invoice.proto";
message Cart {
  acme.orders.v1.Order order = 1;
  acme.legacy.v1.Invoice invoice = 2;
}
"""


def _project(root: Path, host: str, version: str) -> Path:
    (root / "shop" / "v1").mkdir(parents=True, exist_ok=True)
    (root / "shop" / "v1" / "shop.proto").write_text(SHOP)
    deps = f"  - {host}/acme/orders\n  - {host}/acme/legacy\n"
    (root / "buf.yaml").write_text(f"version: {version}\ndeps:\n{deps}")
    return root


def _buf(buf_bin: str, *args: str, cwd: Path, cache: Path, ca: Path):
    env = {**os.environ, "BUF_CACHE_DIR": str(cache), "SSL_CERT_FILE": str(ca)}
    return subprocess.run(
        [buf_bin, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _fetch(project: Path, registry: str, member: Path, ca: Path, *extra: str):
    env = {
        "SSL_CERT_FILE": str(ca),
        "BUF_CACHE_DIR": str(member / "buf-cache"),
        "BSR_TEAM_CACHE_DIR": str(member / "store"),
    }
    args = ("fetch", str(project), "--team", TEAM, "--registry", registry, "--json", *extra)
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def registry_url(distribution: DistributionServer, tmp_path: Path) -> str:
    return f"{distribution.url}/v1-{tmp_path.name[-24:].lower().replace('_', '-')}"


def test_a_v1_project_builds_offline_from_the_team_registry(
    sample_data: Path, tmp_path: Path, buf_bin: str, registry_url: str
) -> None:
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    ca = server.ca_cert
    v1 = _project(tmp_path / "v1", server.host, "v1")
    v2 = _project(tmp_path / "v2", server.host, "v2")
    try:
        # Real buf writes the v1 lock (b4 digests), through the v1beta1 API of dev-bsr.
        done = _buf(buf_bin, "dep", "update", cwd=v1, cache=tmp_path / "buf-own", ca=ca)
        assert done.returncode == 0, done.stderr
        assert _buf(buf_bin, "dep", "update", cwd=v2, cache=tmp_path / "b2", ca=ca).returncode == 0
        lock = read_buf_lock(v1 / "buf.lock")
        assert lock.version == "v1"
        assert {f"{d.module.owner}/{d.module.name}" for d in lock.deps} == CLOSURE
        assert all(str(d.digest).startswith("shake256:") for d in lock.deps)
        beta = [r for r in server.requests() if r["service"].endswith(".v1beta1.DownloadService")]
        assert beta and all(r["status"] == "ok" for r in beta)
        # Member A: everything from the BSR, published to the team registry.
        cold = _fetch(v1, registry_url, tmp_path / "member-a", ca)
        assert cold["hits"] == {"local": 0, "team": 0, "bsr": 6}
        assert all(m["published"] for m in cold["modules"])
    finally:
        server.stop()

    # Member B: empty caches, the BSR gone: the team registry has everything.
    member_b = tmp_path / "member-b"
    warm = _fetch(v1, registry_url, member_b, ca)
    assert warm["hits"] == {"local": 0, "team": 6, "bsr": 0}
    built = _buf(buf_bin, "build", "-o", os.devnull, cwd=v1, cache=member_b / "buf-cache", ca=ca)
    assert built.returncode == 0, built.stderr
    # What fetch wrote is what buf itself writes for these modules (shake256 entries, v1
    # buf.yaml/buf.lock of acme/legacy, module.yaml byte for byte).
    ours = _tree(member_b / "buf-cache" / "v3" / "modules")
    bufs = _tree(tmp_path / "buf-own" / "v3" / "modules")
    assert ours == bufs
    legacy = [k for k in ours if "/acme/legacy/" in k]
    assert any(k.endswith("v1_buf_lock/buf.lock") for k in legacy)
    # Again: every b4 entry is in place, so the check of placed.py answers alone.
    again = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bsr_team_cache", "fetch", str(v1), "--team",
         TEAM, "--registry", registry_url],
        env={**os.environ, "SSL_CERT_FILE": str(ca), "BUF_CACHE_DIR": str(member_b / "buf-cache"),
             "BSR_TEAM_CACHE_DIR": str(member_b / "store")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("6 modules (6 local, 0 team, 0 bsr)")
    assert "| bsr_team_cache.placed\n" in again.stderr
    assert "bsr_team_cache.team.fetch" not in again.stderr
    assert _tree(member_b / "buf-cache" / "v3" / "modules") == ours

    # A v2 project pinning the same commits: the same artifacts serve it (one per commit).
    member_c = tmp_path / "member-c"
    other = _fetch(v2, registry_url, member_c, ca)
    assert other["hits"] == {"local": 0, "team": 6, "bsr": 0}
    built = _buf(buf_bin, "build", "-o", os.devnull, cwd=v2, cache=member_c / "buf-cache", ca=ca)
    assert built.returncode == 0, built.stderr
    # The b5 entries too are what buf writes (its own `dep update` of the v2 project).
    ours = _tree(member_c / "buf-cache" / "v3" / "modules")
    assert ours == _tree(tmp_path / "b2" / "v3" / "modules")
    assert sum(k.endswith("/module.yaml") for k in ours) == 6
    registry = open_registry(registry_url)
    for dep in lock.deps:
        assert registry.list_tags(module_repository(TEAM, dep.module)) == [dep.commit]


def test_artifacts_made_for_v2_projects_gain_b4_when_a_v1_project_needs_it(
    sample_data: Path, tmp_path: Path, buf_bin: str, registry_url: str
) -> None:
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    ca = server.ca_cert
    v1 = _project(tmp_path / "v1", server.host, "v1")
    v2 = _project(tmp_path / "v2", server.host, "v2")
    try:
        # fetch --update-lock writes the lock buf.yaml's version calls for.
        first = _fetch(v2, registry_url, tmp_path / "m1", ca, "--update-lock")
        assert read_buf_lock(v2 / "buf.lock").version == "v2"
        assert first["hits"]["bsr"] == 6
        second = _fetch(v1, registry_url, tmp_path / "m2", ca, "--update-lock")
        lock = read_buf_lock(v1 / "buf.lock")
        assert lock.version == "v1" and all(d.digest.type == "shake256" for d in lock.deps)
        # The team's artifacts had b5 only: the BSR gives b4, and they are published again.
        assert second["hits"] == {"local": 0, "team": 0, "bsr": 6}
        assert all(m["published"] for m in second["modules"])
        # Our v1 lock is the one real buf writes.
        ours = (v1 / "buf.lock").read_text()
        assert _buf(buf_bin, "dep", "update", cwd=v1, cache=tmp_path / "b", ca=ca).returncode == 0
        assert (v1 / "buf.lock").read_text() == ours
    finally:
        server.stop()
    for project in (v1, v2):
        member = tmp_path / f"fresh-{project.name}"
        assert _fetch(project, registry_url, member, ca)["hits"] == {
            "local": 0,
            "team": 6,
            "bsr": 0,
        }
        built = _buf(
            buf_bin, "build", "-o", os.devnull, cwd=project, cache=member / "buf-cache", ca=ca
        )
        assert built.returncode == 0, built.stderr
