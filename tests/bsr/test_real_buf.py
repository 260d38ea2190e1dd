"""The real buf CLI (PyPI buf-bin) against dev-bsr: our digests and lock files equal buf's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.domain.buflock import format_buf_lock, parse_buf_lock
from bsr_team_cache.domain.moduleref import parse_module_ref
from tests.conftest import SHOP_DEP_CLOSURE, run_cli

pytestmark = pytest.mark.slow

SHOP_PROTO = """syntax = "proto3";

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


def make_project(root: Path, host: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "buf.yaml").write_text(
        "version: v2\n"
        "deps:\n"
        f"  - {host}/acme/orders\n"
        f"  - {host}/acme/notes\n"
        f"  - {host}/acme/common\n"
    )
    (root / "shop" / "v1").mkdir(parents=True, exist_ok=True)
    (root / "shop" / "v1" / "shop.proto").write_text(SHOP_PROTO)
    return root


def buf(buf_bin: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [buf_bin, *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_buf_dep_update_and_build_agree_with_our_digests(buf_bin, bsr_env, tmp_path):
    project = make_project(tmp_path / "shop", bsr_env.host)
    env = {"SSL_CERT_FILE": str(bsr_env.ca_cert), "BUF_CACHE_DIR": str(tmp_path / "bufcache")}
    result = buf(buf_bin, "dep", "update", cwd=project, env=env)
    assert result.returncode == 0, result.stderr

    lock_text = (project / "buf.lock").read_text()
    lock = parse_buf_lock(lock_text, project / "buf.lock")
    # Our writer reproduces buf's file byte for byte.
    assert format_buf_lock(lock) == lock_text
    names = [str(d.module).split("/", 1)[1] for d in lock.deps]
    assert names == SHOP_DEP_CLOSURE

    with BSRModuleClient() as client:
        graph = client.graph([parse_module_ref(f"{d.module}:{d.commit}") for d in lock.deps])
    for dep in lock.deps:
        info = graph.commits[dep.commit]
        assert info.digest == dep.digest, dep.module
        dep_args: list[str] = []
        for d in graph.transitive_deps(dep.commit):
            dep_args += ["--dep", str(d.digest)]
        module_dir = bsr_env.data_dir / dep.module.owner / dep.module.name / "main"
        out = run_cli("digest", str(module_dir), *dep_args)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(dep.digest), dep.module

    result = buf(buf_bin, "build", "-o", str(tmp_path / "image.binpb"), cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    image = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "image.binpb").read_bytes())
    names = {f.name for f in image.file}
    assert {
        "shop/v1/shop.proto",
        "acme/orders/v1/order.proto",
        "acme/notes/v1/note.proto",
        "acme/common/v1/page.proto",
        "acme/pets/v1/pet.proto",
        "google/rpc/status.proto",
    } <= names


def test_buf_resolves_a_pinned_label(buf_bin, bsr_env, tmp_path):
    project = tmp_path / "pinned"
    project.mkdir()
    (project / "buf.yaml").write_text(f"version: v2\ndeps:\n  - {bsr_env.host}/acme/pets:v1\n")
    (project / "a.proto").write_text(
        'syntax = "proto3";\npackage a;\nimport "acme/pets/v1/pet.proto";\n'
        "message A { acme.pets.v1.Pet pet = 1; }\n"
    )
    env = {"SSL_CERT_FILE": str(bsr_env.ca_cert), "BUF_CACHE_DIR": str(tmp_path / "bufcache")}
    assert buf(buf_bin, "dep", "update", cwd=project, env=env).returncode == 0
    lock = parse_buf_lock((project / "buf.lock").read_text())
    with BSRModuleClient() as client:
        (v1,) = client.resolve([parse_module_ref(f"{bsr_env.host}/acme/pets:v1")])
    assert lock.dep(v1.module).commit == v1.commit_id
    result = buf(buf_bin, "build", cwd=project, env=env)
    assert result.returncode == 0, result.stderr


def test_buf_reports_an_unknown_label_from_dev_bsr(buf_bin, bsr_env, tmp_path):
    project = tmp_path / "bad"
    project.mkdir()
    (project / "buf.yaml").write_text(f"version: v2\ndeps:\n  - {bsr_env.host}/acme/pets:nope\n")
    env = {"SSL_CERT_FILE": str(bsr_env.ca_cert), "BUF_CACHE_DIR": str(tmp_path / "bufcache")}
    result = buf(buf_bin, "dep", "update", cwd=project, env=env)
    assert result.returncode != 0
    assert "nope" in result.stderr
