"""A module whose files layer is past the streaming threshold (oci/streaming.py), fetched by
separate processes through CNCF Distribution or the on-disk layout: it arrives identical and
buf builds offline with it; a corrupt layer, or files that do not hash to what buf.lock pins,
leave no store entry, no buf cache entry and no temporary file, and the BSR serves instead."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bsr_team_cache._testhooks import POINTS
from bsr_team_cache.bufcache.v3 import module_entry_dir
from bsr_team_cache.domain.buflock import LockedDep, read_buf_lock
from bsr_team_cache.oci import open_registry
from bsr_team_cache.oci.artifact import module_repository, pull_module, push_module
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.oci.streaming import STREAM_LAYER_BYTES
from bsr_team_cache.samples import write_large_module
from bsr_team_cache.store import LocalStore
from tests.conftest import start_dev_bsr
from tests.team.test_fetch import TEAM, _buf_build, _fetch, _fetch_argv, _hits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dev-bsr's data: one module ``acme/big`` of ~30 MB of .proto text (~4.6 MiB as a layer)."""
    data = tmp_path_factory.mktemp("big") / "data"
    write_large_module(data, owner="acme", name="big", files=400, total_bytes=40 << 20)
    return data


def _source_files(data: Path) -> dict[str, bytes]:
    root = data / "acme" / "big" / "main"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _project(root: Path, host: str, data: Path) -> Path:
    """A buf project that imports a file of acme/big (buf build needs the dep)."""
    source = data / "acme" / "big" / "main"
    first = min(p for p in source.rglob("*.proto"))
    package = re.search(r"^package\s+([\w.]+)\s*;", first.read_text(), re.MULTILINE)
    message = re.search(r"^message\s+(\w+)", first.read_text(), re.MULTILINE)
    assert package and message
    (root / "app" / "v1").mkdir(parents=True)
    (root / "buf.yaml").write_text(f"version: v2\ndeps:\n  - {host}/acme/big\n")
    (root / "app" / "v1" / "app.proto").write_text(
        'syntax = "proto3";\npackage app.v1;\n'
        f'import "{first.relative_to(source).as_posix()}";\n'
        f"message App {{\n  {package[1]}.{message[1]} big = 1;\n}}\n"
    )
    return root


def _big_dep(project: Path) -> LockedDep:
    (dep,) = read_buf_lock(project / "buf.lock").deps
    return dep


def _leftovers(member: Path, dep: LockedDep) -> list[str]:
    """The store's temporary files and buf's staging directories of the member."""
    tmp = member / "store" / "tmp"
    found = [p.name for p in tmp.iterdir()] if tmp.exists() else []
    parent = module_entry_dir(member / "buf-cache", dep.module, dep.commit).parent
    return found + ([p.name for p in parent.glob(".*")] if parent.exists() else [])


def _entry_files(member: Path, dep: LockedDep) -> dict[str, bytes]:
    files = module_entry_dir(member / "buf-cache", dep.module, dep.commit) / "files"
    return {
        p.relative_to(files).as_posix(): p.read_bytes() for p in files.rglob("*") if p.is_file()
    }


def _layer_digest(registry_url: str, dep: LockedDep) -> str:
    registry = open_registry(registry_url)
    repo = module_repository(TEAM, dep.module)
    manifest = json.loads(registry.read_manifest(repo, dep.commit)[0])
    assert manifest["layers"][0]["size"] >= STREAM_LAYER_BYTES  # it is streamed
    return manifest["layers"][0]["digest"]


@pytest.fixture(params=["distribution", "oci-layout"])
def team_registry(request, distribution: DistributionServer, tmp_path: Path) -> str:
    if request.param == "distribution":
        return f"{distribution.url}/big-{tmp_path.name[-24:].lower().replace('_', '-')}"
    return f"oci-layout:{tmp_path / 'team-registry'}"


def test_a_large_module_arrives_identical_and_builds_offline(
    big_data: Path, tmp_path: Path, buf_bin: str, team_registry: str
) -> None:
    server = start_dev_bsr(big_data, tmp_path / "bsr")
    ca = server.ca_cert
    try:
        project = _project(tmp_path / "p", server.host, big_data)
        published = _fetch(project, team_registry, tmp_path / "member-a", ca, "--update-lock")
        assert _hits(published) == {"local": 0, "team": 0, "bsr": 1}
    finally:
        server.stop()
    dep = _big_dep(project)
    layer = _layer_digest(team_registry, dep)

    member = tmp_path / "member-b"
    cold = _fetch(project, team_registry, member, ca)

    assert _hits(cold) == {"local": 0, "team": 1, "bsr": 0}
    assert json.loads(cold.stdout)["warnings"] == []
    source = _source_files(big_data)
    assert _entry_files(member, dep) == source
    with LocalStore(member / "store") as store:
        (blobs,) = store._db.execute(
            "SELECT blobs FROM entries WHERE commit_id = ?", (dep.commit,)
        ).fetchone()
        assert layer in json.loads(blobs)  # the layer kept as it arrived
        stored = store.get(dep.module, dep.commit)  # read back whole, verified
        assert stored is not None and stored.files == source and stored.digest == dep.digest
    assert _leftovers(member, dep) == []
    built = _buf_build(buf_bin, project, member, ca)  # the BSR is gone: offline
    assert built.returncode == 0, built.stderr

    # --export needs the files: they are read whole, and exported as they are.
    exported = _fetch(
        project, team_registry, tmp_path / "member-c", ca, "--export", str(tmp_path / "inc")
    )
    assert _hits(exported) == {"local": 0, "team": 1, "bsr": 0}
    inc = tmp_path / "inc"
    assert {
        p.relative_to(inc).as_posix(): p.read_bytes()
        for p in inc.rglob("*")
        if p.is_file() and p.suffix == ".proto"
    } == {k: v for k, v in source.items() if k.endswith(".proto")}
    assert _entry_files(tmp_path / "member-c", dep) == source


def test_a_corrupt_large_layer_leaves_nothing_and_the_bsr_serves(
    big_data: Path, tmp_path: Path
) -> None:
    # Its own registry: Distribution shares blob storage across repositories.
    distribution = DistributionServer(tmp_path / "registry").start()
    try:
        _corrupt_layer_then_fetch(distribution, big_data, tmp_path)
    finally:
        distribution.stop()


def _corrupt_layer_then_fetch(
    distribution: DistributionServer, big_data: Path, tmp_path: Path
) -> None:
    server = start_dev_bsr(big_data, tmp_path / "bsr")
    url = f"{distribution.url}/corrupt"
    ca = server.ca_cert
    try:
        project = _project(tmp_path / "p", server.host, big_data)
        assert _hits(_fetch(project, url, tmp_path / "member-a", ca, "--update-lock"))["bsr"] == 1
        dep = _big_dep(project)
        layer_hex = _layer_digest(url, dep).removeprefix("sha256:")
        stored = next(p for p in distribution.storage.rglob("data") if p.parent.name == layer_hex)
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0xFF
        stored.write_bytes(bytes(data))

        member = tmp_path / "member-b"
        fetched = _fetch(project, url, member, ca)

        assert _hits(fetched) == {"local": 0, "team": 0, "bsr": 1}
        (warning,) = json.loads(fetched.stdout)["warnings"]
        assert f"blob sha256:{layer_hex} is corrupt" in warning
        assert warning.endswith("; fetching it from the BSR")
        assert _entry_files(member, dep) == _source_files(big_data)  # the BSR's copy
        assert _leftovers(member, dep) == []
    finally:
        server.stop()
    # The BSR gone too: the fetch fails, and the corrupt layer left nothing anywhere.
    alone = tmp_path / "member-c"
    failed = _fetch(project, url, alone, ca)
    assert failed.returncode == 1
    assert "is corrupt" in failed.stderr and "BSR is unavailable" in failed.stderr
    with LocalStore(alone / "store") as store:
        assert store.stats().entries == 0
    assert not module_entry_dir(alone / "buf-cache", dep.module, dep.commit).exists()
    assert _leftovers(alone, dep) == []


def test_large_files_that_do_not_hash_to_buf_lock_leave_nothing_and_the_bsr_serves(
    big_data: Path, tmp_path: Path
) -> None:
    server = start_dev_bsr(big_data, tmp_path / "bsr")
    url = f"oci-layout:{tmp_path / 'team-registry'}"
    ca = server.ca_cert
    try:
        project = _project(tmp_path / "p", server.host, big_data)
        assert _hits(_fetch(project, url, tmp_path / "member-a", ca, "--update-lock"))["bsr"] == 1
        dep = _big_dep(project)
        registry = open_registry(url)
        repo = module_repository(TEAM, dep.module)
        real = pull_module(registry, repo, dep.module, dep.commit)
        assert real is not None
        # The files changed, the config still claims buf.lock's digest.
        files = dict(real.files)
        first = min(files)
        files[first] = files[first] + b"// planted\n"
        push_module(registry, repo, replace(real, files=files))

        member = tmp_path / "member-b"
        fetched = _fetch(project, url, member, ca)

        assert _hits(fetched) == {"local": 0, "team": 0, "bsr": 1}
        (warning,) = json.loads(fetched.stdout)["warnings"]
        assert warning.startswith(f"{dep.module}:{dep.commit}: files hash to b5:")
        assert warning.endswith(f", expected {dep.digest}; fetching it from the BSR")
        assert _entry_files(member, dep) == _source_files(big_data)
        assert _leftovers(member, dep) == []
    finally:
        server.stop()


@pytest.fixture(scope="module")
def published(big_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """(project with buf.lock, on-disk team registry holding acme/big, the BSR's CA); the BSR
    is stopped: what a member fetches comes from the team registry."""
    root = tmp_path_factory.mktemp("published")
    server = start_dev_bsr(big_data, root / "bsr")
    registry = f"oci-layout:{root / 'team-registry'}"
    try:
        project = _project(root / "p", server.host, big_data)
        published = _fetch(project, registry, root / "member-a", server.ca_cert, "--update-lock")
        assert _hits(published) == {"local": 0, "team": 0, "bsr": 1}
    finally:
        server.stop()
    return project, registry, server.ca_cert


@pytest.mark.parametrize("point", [p for p in POINTS if not p.startswith("publish.")])
def test_kill_9_while_a_large_module_streams_leaves_nothing_half_written(
    published: tuple[Path, str, Path], big_data: Path, tmp_path: Path, buf_bin: str, point: str
) -> None:
    project, registry, ca = published
    member = tmp_path / "member"
    env = {
        **os.environ,
        "SSL_CERT_FILE": str(ca),
        "BUF_CACHE_DIR": str(member / "buf-cache"),
        "BSR_TEAM_CACHE_DIR": str(member / "store"),
        "BSR_TEAM_CACHE_KILL_AT": point,
    }
    killed = subprocess.run(
        _fetch_argv(project, registry), env=env, capture_output=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL  # it did reach the point
    dep = _big_dep(project)
    with LocalStore(member / "store") as store:
        assert store.stats().entries == 0  # the row was not committed: no half entry
    entry = module_entry_dir(member / "buf-cache", dep.module, dep.commit)
    assert not entry.exists() or (entry / "module.yaml").is_file()  # absent, or complete

    final = _fetch(project, registry, member, ca)

    assert _hits(final) == {"local": 0, "team": 1, "bsr": 0}
    assert _entry_files(member, dep) == _source_files(big_data)
    with LocalStore(member / "store") as store:
        stored = store.get(dep.module, dep.commit)
        assert stored is not None and stored.digest == dep.digest
    assert _buf_build(buf_bin, project, member, ca).returncode == 0
