"""Team access through the CLI, enforced by a real Distribution (``auth: token``) trusting a
real ``auth-server``: what members of two teams, a reader and a site admin can do with the
commands they run every day, and the audit log that shows each refusal."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bsr_team_cache._proc import stop_process
from bsr_team_cache.auth.users import CredentialStore
from bsr_team_cache.errors import AccessDeniedError
from bsr_team_cache.oci.base import sha256_digest
from bsr_team_cache.oci.credentials import Credentials
from bsr_team_cache.oci.devregistry import (
    DistributionServer,
)
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.team.bundles import read_bundle, shared_bundle_repository
from tests.auth.test_server import start_registry_behind_auth_server
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

PASSWORDS = {
    "root": "root-password",
    "alice": "alice-password",
    "bob": "bob-password",
    "carol": "carol-password",
}


@dataclass
class Access:
    registry: DistributionServer
    state: Path

    def env(self, user: str | None, store: Path, team: str, bsr) -> dict[str, str]:
        env = {
            "SSL_CERT_FILE": str(bsr.ca_cert),
            "BSR_TEAM_CACHE_REGISTRY": self.registry.url,
            "BSR_TEAM_CACHE_TEAM": team,
            "BSR_TEAM_CACHE_DIR": str(store / (user or "anonymous")),
            "BSR_TEAM_CACHE_MEMBER": user or "anonymous",
        }
        if user is not None:
            env["BSR_TEAM_CACHE_REGISTRY_USERNAME"] = user
            env["BSR_TEAM_CACHE_REGISTRY_PASSWORD"] = PASSWORDS[user]
        return env

    def records(self) -> list[dict]:
        path = self.state / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Access]:
    work = tmp_path_factory.mktemp("access")
    state = work / "state"
    users = CredentialStore(state, rounds=4)
    for name, password in PASSWORDS.items():
        users.add_user(name, password, site_admin=name == "root")
    registry, auth, _ = start_registry_behind_auth_server(work, state)
    try:
        yield Access(registry, state)
    finally:
        registry.stop()
        stop_process(auth)


def _project(root: Path, deps: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "buf.yaml").write_text("version: v2\ndeps:\n" + "".join(f"  - {d}\n" for d in deps))
    return root


def test_roles_and_shares_are_enforced_by_the_registry(
    access: Access, bsr_env, tmp_path: Path
) -> None:
    host = bsr_env.host
    stores = tmp_path / "stores"

    def cli(user: str | None, team: str, *args: str):
        return run_cli(*args, env=access.env(user, stores, team, bsr_env))

    # A site admin creates the teams (the creator is each team's first admin) and hands them
    # over: alice admin of a, bob a reader of a; carol a member of b.
    done = cli("root", "a", "setup", "--role", "alice=admin", "--role", "bob=reader")
    assert done.returncode == 0, done.stderr
    done = cli("root", "b", "setup", "--role", "carol=member")
    assert done.returncode == 0, done.stderr

    # alice fetches (publishing the BSR's modules), bundles and shares them with team b.
    project = _project(tmp_path / "p", [f"{host}/acme/pets"])
    done = cli("alice", "a", "fetch", str(project), "--update-lock", "--no-buf-cache", "-q")
    assert done.returncode == 0 and "not published" not in done.stderr, done.stderr
    done = cli("alice", "a", "bundle", "--name", "shop", "--deps", f"{host}/acme/pets")
    assert done.returncode == 0, done.stderr
    done = cli("alice", "a", "share", "--name", "shop", "--with", "b")
    assert done.returncode == 0, done.stderr

    # carol (team b) pulls the share...
    done = cli("carol", "b", "bundle", "--name", "shop", "--pull", "--from-team", "a")
    assert done.returncode == 0, done.stderr
    # ...but cannot overwrite it, nor push to team a: the registry says no, not this client.
    carol = HTTPRegistry(access.registry.url, credentials=Credentials("carol", PASSWORDS["carol"]))
    shared = shared_bundle_repository("shop")
    found = read_bundle(carol, shared)
    assert found is not None
    with pytest.raises(
        AccessDeniedError,
        match=r"did not grant repository:shared/organization/bundles/shop:(pull,push|push,pull)",
    ):
        carol.push_blob(shared, b"forged", sha256_digest(b"forged"))
    with pytest.raises(AccessDeniedError, match="teams/a/dependencies"):
        carol.push_blob(
            f"teams/a/dependencies/{host.replace(':', '-')}/acme/x", b"x", sha256_digest(b"x")
        )

    # bob, a reader of a, fetches from the team registry; what he downloads from the BSR is
    # not published: the registry refuses his push, a warning and nothing lost.
    done = cli("bob", "a", "fetch", str(project), "--no-buf-cache", "-q")
    assert done.returncode == 0, done.stderr
    done = cli("bob", "a", "warm", "--deps", f"{host}/grpc/grpc")
    assert done.returncode == 0, done.stderr
    assert "access denied" in done.stderr and "ask a team admin" in done.stderr

    # Anonymous: refused by the token service, then by the registry.
    done = cli(None, "a", "fetch", str(project), "--no-buf-cache", "-q")
    assert "the token service refused the credentials" in done.stderr, done.stderr

    # Each refusal is a record of the auth server, and reaches team a's audit log.
    deadline = time.monotonic() + 30
    wanted = {("carol", "a"), ("bob", "a"), ("anonymous", "")}
    while time.monotonic() < deadline:
        refused = {(r["member"], r["team"]) for r in access.records() if r["operation"] == "refuse"}
        if wanted <= refused:
            break
        time.sleep(0.2)
    assert wanted <= refused, access.records()[-10:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = cli("alice", "a", "audit", "--op", "refuse", "--json")
        assert listed.returncode == 0, listed.stderr
        members = {r["member"] for r in json.loads(listed.stdout)}
        if {"carol", "bob"} <= members:
            break
        time.sleep(0.5)
    assert {"carol", "bob"} <= members
    pulls = json.loads(cli("alice", "a", "audit", "--op", "registry-pull", "--json").stdout)
    assert "carol" in {r["member"] for r in pulls}  # her pull of the share, as the registry saw it
