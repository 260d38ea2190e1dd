"""The team commands as a user runs them: setup, warm, bundle, share, sync, monitor, clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture
def team_env(bsr_env, tmp_path: Path) -> dict[str, str]:
    return {
        "SSL_CERT_FILE": str(bsr_env.ca_cert),
        "BSR_TEAM_CACHE_REGISTRY": f"oci-layout:{tmp_path / 'registry'}",
        "BSR_TEAM_CACHE_TEAM": "platform-team",
        "BSR_TEAM_CACHE_DIR": str(tmp_path / "store"),
        "BSR_TEAM_CACHE_MEMBER": "alice",
    }


@pytest.mark.slow
def test_a_team_session(bsr_env, team_env: dict[str, str], tmp_path: Path) -> None:
    host = bsr_env.host
    done = run_cli(
        "setup", "--members", "alice", "--members", "bob", "--strategy", "aggressive", env=team_env
    )
    assert done.returncode == 0, done.stderr
    assert "members: alice (admin), bob (member)" in done.stdout and "max 2000 MB" in done.stdout

    warm = run_cli("warm", "--deps", f"{host}/acme/orders", "--json", env=team_env)
    assert warm.returncode == 0, warm.stderr
    assert json.loads(warm.stdout)["hits"]["bsr"] == 5  # orders and its closure

    bundle = run_cli(
        "bundle",
        "--name",
        "shop",
        "--deps",
        f"{host}/acme/orders",
        "--description",
        "the shop's deps",
        env=team_env,
    )
    assert bundle.returncode == 0, bundle.stderr
    assert "teams/platform-team/bundles/shop:v1" in bundle.stdout

    share = run_cli("share", "--name", "shop", "--with", "backend-team", env=team_env)
    assert share.returncode == 0, share.stderr
    assert "shared/organization/bundles/shop:v1" in share.stdout

    backend = {
        **team_env,
        "BSR_TEAM_CACHE_TEAM": "backend-team",
        "BSR_TEAM_CACHE_DIR": str(tmp_path / "backend-store"),
    }
    pulled = run_cli(
        "bundle", "--name", "shop", "--pull", "--from-team", "platform-team", env=backend
    )
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled shop:v1 (5 modules" in pulled.stdout

    # A new machine names the bundle: one bundle request instead of a request per module.
    from tests.bsr.test_real_buf import make_project

    project = make_project(tmp_path / "p", host)
    (project / "buf.yaml").write_text(f"version: v2\ndeps:\n  - {host}/acme/orders\n")
    lock = run_cli("fetch", str(project), "--update-lock", "--no-buf-cache", "-q", env=team_env)
    assert lock.returncode == 0, lock.stderr
    fresh = {**team_env, "BSR_TEAM_CACHE_DIR": str(tmp_path / "fresh-store")}
    named = run_cli(
        "fetch", str(project), "--bundle", "shop", "--json", "--no-buf-cache", env=fresh
    )
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["bundles"] == ["shop:v1"]
    none = run_cli(
        "fetch",
        str(project),
        "--no-bundles",
        "--json",
        "--no-buf-cache",
        env={**team_env, "BSR_TEAM_CACHE_DIR": str(tmp_path / "fresh-2")},
    )
    assert none.returncode == 0 and json.loads(none.stdout)["bundles"] == []
    assert json.loads(none.stdout)["hits"]["team"] == 5

    sync = run_cli("sync", "--json", env=team_env)
    assert sync.returncode == 0, sync.stderr
    assert json.loads(sync.stdout)["pushed"] == []  # everything was published already

    monitor = run_cli("monitor", "--json", env=team_env)
    assert monitor.returncode == 0, monitor.stderr
    assert json.loads(monitor.stdout)["team"] == "platform-team"

    cleared = run_cli("clear", env=team_env)
    assert cleared.returncode == 0 and "removed 5 modules" in cleared.stdout


def test_setup_errors(team_env: dict[str, str]) -> None:
    bad = run_cli("setup", "--members", "bob smith", env=team_env)
    assert bad.returncode == 2 and "invalid member name 'bob smith'" in bad.stderr
    size = run_cli("setup", "--max-cache-size-mb", "-1", env=team_env)
    assert size.returncode == 2 and "positive number of MB" in size.stderr
    strategy = run_cli("setup", "--strategy", "fast", env=team_env)
    assert strategy.returncode == 2 and "'fast' is not one of" in strategy.stderr


def test_bundle_and_share_errors(team_env: dict[str, str]) -> None:
    no_deps = run_cli("bundle", "--name", "x", env=team_env)
    assert no_deps.returncode == 2 and "--deps" in no_deps.stderr
    bad_name = run_cli("bundle", "--name", "Bad Name", "--deps", "buf.build/a/b", env=team_env)
    assert bad_name.returncode == 2 and "invalid bundle name 'Bad Name'" in bad_name.stderr
    missing = run_cli("share", "--name", "nope", "--with", "backend-team", env=team_env)
    assert missing.returncode == 1 and "has no bundle named 'nope'" in missing.stderr
    pull = run_cli("bundle", "--name", "nope", "--pull", env=team_env)
    assert pull.returncode == 1 and "no bundle named 'nope'" in pull.stderr


@pytest.mark.slow
def test_private_team_does_not_publish_and_sync_if_due(
    bsr_env, team_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.bsr.test_real_buf import make_project

    assert run_cli("setup", "--no-shared-cache", env=team_env).returncode == 0
    project = make_project(tmp_path / "p", bsr_env.host)
    done = run_cli("fetch", str(project), "--update-lock", "--json", "--no-buf-cache", env=team_env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["hits"]["bsr"] == 6 and not any(m["published"] for m in report["modules"])
    first = run_cli("sync", "--if-due", "--json", env=team_env)
    assert first.returncode == 0 and "skipped" not in json.loads(first.stdout)
    again = run_cli("sync", "--if-due", env=team_env)
    assert again.returncode == 0 and "not due yet" in again.stdout


def test_unwritable_buf_cache_is_a_clear_error(bsr_env, team_env: dict[str, str], tmp_path: Path):
    from tests.bsr.test_real_buf import make_project

    project = make_project(tmp_path / "p", bsr_env.host)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_cli(
        "fetch",
        str(project),
        "--update-lock",
        "--buf-cache-dir",
        str(blocker / "cache"),
        env=team_env,
    )
    assert done.returncode == 1
    assert "bsr-team-cache: error:" in done.stderr and "Not a directory" in done.stderr
    assert "Traceback" not in done.stderr
    # Nothing half-written: the modules reached the local store and the next fetch is local.
    again = run_cli("fetch", str(project), "--json", "--no-buf-cache", env=team_env)
    assert again.returncode == 0 and json.loads(again.stdout)["hits"]["local"] == 6
