"""Faults under the local store are warnings, never tracebacks: a full disk, a broken SQLite
index; and a project with hundreds of deps runs within a small open-files limit."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bsr_team_cache.bufcache.v3 import module_entry_dir
from bsr_team_cache.domain.buflock import format_buf_lock
from bsr_team_cache.samples import write_generated_modules, write_sample_data
from tests.conftest import start_dev_bsr
from tests.security.conftest import Legit, _base_env, fetch, fetch_args, hits, legit_closure
from tests.security.hostile import Machine

pytestmark = pytest.mark.slow


def _fetch_on_full_disk(machine: Machine, registry: str, ca: Path, size_kb: int):
    """The fetch with the store on a file system of ``size_kb`` (a tmpfs mounted in a user and
    mount namespace of its own: a real ENOSPC, no privileges needed)."""
    store = machine.root / "store"
    script = f'mount -t tmpfs -o size={size_kb}k tmpfs "{store}" && exec "$@"'
    argv = ["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-m", "bsr_team_cache"]
    argv += fetch_args(machine, registry)
    env = {**_base_env(), **machine.env(SSL_CERT_FILE=str(ca))}
    before = machine.snapshot_outside()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert machine.snapshot_outside() == before, "written outside its roots"
    return result


@pytest.mark.parametrize(("size_kb", "where"), [(16, "open"), (160, "put")])
def test_a_full_disk_under_the_store_is_a_warning(
    machine: Machine, legit: Legit, layout_url: str, size_kb: int, where: str
) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("util-linux's unshare is missing (Debian: util-linux)")

    result = _fetch_on_full_disk(machine, layout_url, legit.ca, size_kb)

    assert hits(result) == {"local": 0, "team": 0, "bsr": 6}
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "without the local store" in line]
    assert len(warnings) == 1, result.stderr
    if where == "open":
        assert "is the disk full, or the directory read-only?" in warnings[0]
    else:
        assert "No space left on device" in warnings[0] or "database or disk is full" in warnings[0]
    for dep in legit.lock.deps:  # buf's cache is complete all the same
        entry = module_entry_dir(machine.root / "buf-cache", dep.module, dep.commit)
        assert (entry / "module.yaml").is_file()


def test_a_broken_store_index_is_a_warning(machine: Machine, legit: Legit, layout_url: str):
    (machine.root / "store" / "store.db").write_bytes(b"this is not an SQLite database" * 100)

    result = fetch(machine, layout_url, legit.ca)

    assert hits(result) == {"local": 0, "team": 0, "bsr": 6}
    assert "store.db is unreadable" in result.stderr
    assert "going on without the local store" in result.stderr
    # Nothing cached was lost or replaced: the broken index is as it was.
    assert (
        machine.root / "store" / "store.db"
    ).read_bytes() == b"this is not an SQLite database" * 100


def test_hundreds_of_deps_within_a_small_open_files_limit(tmp_path: Path) -> None:
    """300 deps under RLIMIT_NOFILE 256: per-commit locks held all at once would need 600."""
    data = write_sample_data(tmp_path / "data")
    names = write_generated_modules(data, 300, owner="many")
    server = start_dev_bsr(data, tmp_path / "bsr")
    try:
        lock, _ = legit_closure(server.host, server.ca_cert, names)
        machine = Machine(tmp_path / "machine")
        deps = "".join(f"  - {server.host}/{n}\n" for n in names)
        (machine.project / "buf.yaml").write_text(f"version: v2\ndeps:\n{deps}")
        (machine.project / "buf.lock").write_text(format_buf_lock(lock))

        def small_limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

        registry = f"oci-layout:{tmp_path / 'registry'}"
        argv = [sys.executable, "-m", "bsr_team_cache", *fetch_args(machine, registry)]
        env = {**_base_env(), **machine.env(SSL_CERT_FILE=str(server.ca_cert))}
        cold = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=600, preexec_fn=small_limit
        )
        assert hits(cold) == {"local": 0, "team": 0, "bsr": 300}
        warm = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=600, preexec_fn=small_limit
        )
        assert hits(warm) == {"local": 300, "team": 0, "bsr": 0}
    finally:
        server.stop()
