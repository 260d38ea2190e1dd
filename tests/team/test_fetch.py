"""The fetch path with real processes: dev-bsr, the on-disk team registry, real buf offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bsr_team_cache.bufcache.v3 import module_entry_dir
from bsr_team_cache.domain.buflock import read_buf_lock
from tests.bsr.test_real_buf import make_project
from tests.conftest import run_cli, start_dev_bsr

pytestmark = pytest.mark.slow


def _fetch(project: Path, registry: Path, cache: Path, ca: Path, *extra: str):
    env = {"SSL_CERT_FILE": str(ca), "BUF_CACHE_DIR": str(cache)}
    return run_cli(
        "fetch",
        str(project),
        "--team",
        "platform-team",
        "--registry",
        f"oci-layout:{registry}",
        "--json",
        *extra,
        env=env,
    )


def test_member_b_builds_offline_from_the_team_registry(sample_data, tmp_path, buf_bin):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    registry = tmp_path / "team-registry"
    ca = server.ca_cert
    try:
        project_a = make_project(tmp_path / "a", server.host)
        cold = _fetch(project_a, registry, tmp_path / "cache-a", ca, "--update-lock")
        assert cold.returncode == 0, cold.stderr
        report = json.loads(cold.stdout)
        assert report["hits"] == {"team": 0, "bsr": 6}
        assert all(m["published"] for m in report["modules"])
        assert server.count("Download") >= 1
    finally:
        server.stop()

    # Member B: another checkout, empty buf cache, the BSR is gone.
    project_b = make_project(tmp_path / "b", server.host)
    (project_b / "buf.lock").write_text((project_a / "buf.lock").read_text())
    cache_b = tmp_path / "cache-b"
    warm = _fetch(project_b, registry, cache_b, ca, "--export", str(tmp_path / "include"))
    assert warm.returncode == 0, warm.stderr
    assert json.loads(warm.stdout)["hits"] == {"team": 6, "bsr": 0}
    lock = read_buf_lock(project_b / "buf.lock")
    for dep in lock.deps:
        assert (module_entry_dir(cache_b, dep.module, dep.commit) / "module.yaml").is_file()
    assert (tmp_path / "include" / "acme" / "pets" / "v1" / "pet.proto").is_file()

    env = {**os.environ, "BUF_CACHE_DIR": str(cache_b), "SSL_CERT_FILE": str(ca)}
    built = subprocess.run(
        [buf_bin, "build", "-o", str(tmp_path / "img.binpb")],
        cwd=project_b,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr


def test_tampered_team_blob_is_detected_and_refetched(sample_data, tmp_path):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    registry = tmp_path / "team-registry"
    try:
        project = make_project(tmp_path / "a", server.host)
        assert (
            _fetch(project, registry, tmp_path / "c1", server.ca_cert, "--update-lock").returncode
            == 0
        )
        # Corrupt every files layer of acme/pets in the team registry.
        pets = next(registry.rglob("acme/pets"))
        for blob in (pets / "blobs" / "sha256").iterdir():
            if blob.stat().st_size > 300:
                blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
        again = _fetch(project, registry, tmp_path / "c2", server.ca_cert)
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        assert report["hits"] == {"team": 5, "bsr": 1}
        assert "is corrupt" in again.stderr
    finally:
        server.stop()


def test_nothing_cached_and_bsr_down_is_a_clear_error(sample_data, tmp_path):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    project = make_project(tmp_path / "a", server.host)
    try:
        assert (
            _fetch(
                project, tmp_path / "reg1", tmp_path / "c1", server.ca_cert, "--update-lock"
            ).returncode
            == 0
        )
    finally:
        server.stop()
    result = _fetch(project, tmp_path / "empty-registry", tmp_path / "c2", server.ca_cert)
    assert result.returncode == 1
    assert "not in the team registry" in result.stderr and "BSR is unavailable" in result.stderr
    assert "Traceback" not in result.stderr


def test_skopeo_reads_the_layout(sample_data, tmp_path):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    registry = tmp_path / "team-registry"
    try:
        project = make_project(tmp_path / "a", server.host)
        result = _fetch(project, registry, tmp_path / "c1", server.ca_cert, "--update-lock")
        assert result.returncode == 0, result.stderr
    finally:
        server.stop()
    lock = read_buf_lock(project / "buf.lock")
    for dep in lock.deps:
        repo = next(p for p in registry.rglob(dep.module.name) if (p / "oci-layout").exists())
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{repo}:{dep.commit}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert raw.returncode == 0, raw.stderr
        manifest = json.loads(raw.stdout)
        assert manifest["artifactType"] == "application/vnd.buf.module.v1"
        assert manifest["annotations"]["org.opencontainers.image.revision"] == dep.commit
    assert sys.platform.startswith("linux")
