"""Attacks on the auth server's token endpoint that need no registry: scope names crafted to
make a refusal record unreadable (and so missing from `audit`) or to forge lines in the
server's log, and the refusal re-check as an amplifier of registry reads."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import pytest

from bsr_team_cache.audit import log as audit_log
from bsr_team_cache.auth.server import AuthService, RegistryTeamConfigs, ServerOptions
from bsr_team_cache.auth.tokens import SigningKey
from bsr_team_cache.auth.users import CredentialStore
from bsr_team_cache.oci.documents import push_document
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.team.config import (
    CONFIG_TAG,
    TEAM_CONFIG_TYPE,
    TeamConfig,
    config_repository,
    make_config,
)


class Configs:
    """Fixed team configurations (policy.TeamConfigs) for requests that read no registry."""

    def __init__(self, configs: Iterable[TeamConfig]) -> None:
        self._configs = {c.team: c for c in configs}

    def get(self, team: str) -> TeamConfig | None:
        return self._configs.get(team)

    def all(self) -> Iterable[TeamConfig]:
        return self._configs.values()

    def teams(self) -> list[str]:
        return sorted(self._configs)

    def forget_older_than(self, age: float, teams: Iterable[str] = (), **_: bool) -> bool:
        return False


def _service(state: Path, configs: object) -> AuthService:
    options = ServerOptions(registry="http://127.0.0.1:1", state_dir=state)
    store = CredentialStore(state, rounds=4)
    store.add_user("bob", "bob-password")
    return AuthService(
        options,
        key=SigningKey.generate("test"),
        store=store,
        configs=configs,  # type: ignore[arg-type]
        registry=None,  # type: ignore[arg-type]
    )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _query(*scopes: str) -> str:
    return "service=bsr-team-cache&" + "&".join(f"scope={quote(s, safe='')}" for s in scopes)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("teams/b/x\nauth-server:_granted", "teams/b/x\\nauth-server:_granted"),
        ("teams/b/\x1b[2J", "teams/b/\\x1b[2J"),
        ("teams/b/" + "x" * 5000, "teams/b/" + "x" * 245 + "..."),
    ],
)
def test_a_crafted_scope_name_does_not_hide_the_refusal_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, shown: str
) -> None:
    service = _service(tmp_path, Configs([make_config("b", members=["carol"])]))
    legit = "repository:teams/b/dependencies/buf.build/acme/pets:push"
    answer = service.token(_query(legit, f"repository:{name}:push"), _basic("bob", "wrong"))
    assert answer.status == 401
    found = audit_log.read(tmp_path, audit_log.AuditQuery(operation="refuse"))
    assert found.skipped == 0
    assert [(r["team"], r["member"], r["refs"]) for r in found.records] == [
        ("b", "bob", [legit, f"repository:{shown}:push"])
    ]
    log_lines = capsys.readouterr().err.splitlines()
    assert log_lines == [
        f"auth-server: refused bob: {legit} (bad credentials)",
        f"auth-server: refused bob: repository:{shown}:push (bad credentials)",
    ]


class CountingLayout(OCILayoutRegistry):
    """An on-disk registry that counts the manifests read per repository."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()

    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        self.reads[repo] += 1
        return super().read_manifest(repo, reference)


def test_a_refusal_re_reads_only_what_it_depends_on(tmp_path: Path) -> None:
    registry = CountingLayout(tmp_path / "registry")
    for config in (
        make_config("a", members=["alice"]),
        make_config("b", members=["bob"]),
        make_config("c", members=["carol"]),
    ):
        repo = config_repository(config.team)
        push_document(registry, repo, CONFIG_TAG, TEAM_CONFIG_TYPE, config.to_json())
    catalog_reads = Counter[str]()

    def catalog() -> list[str]:
        catalog_reads["catalog"] += 1
        return [config_repository(t) for t in ("a", "b", "c")]

    now = [1000.0]
    configs = RegistryTeamConfigs(registry, catalog, "", ttl=5.0, clock=lambda: now[0])
    service = _service(tmp_path / "state", configs)
    assert [c.team for c in configs.all()] == ["a", "b", "c"]  # every cache warm
    registry.reads.clear()
    catalog_reads.clear()
    now[0] += 1.0  # within the cache period, past the re-check age

    answer = service.token(_query("repository:teams/a/config:pull"), _basic("bob", "bob-password"))
    assert answer.status == 200
    assert registry.reads == Counter({"teams/a/config": 1})  # team a's refusal re-checked
    assert [c.team for c in configs.all()] == ["a", "b", "c"]
    assert (registry.reads, catalog_reads) == (Counter({"teams/a/config": 1}), Counter())


class PushDuringRead(OCILayoutRegistry):
    """An on-disk registry where a new configuration is pushed (and the cache told to forget)
    while the first read of it is in flight: that read returns the old configuration."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.on_read: list[object] = []

    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        found = super().read_manifest(repo, reference)
        while self.on_read:
            self.on_read.pop()()  # type: ignore[operator]
        return found


def test_a_config_read_in_flight_when_it_is_forgotten_is_not_cached(tmp_path: Path) -> None:
    registry = PushDuringRead(tmp_path / "registry")
    repo = config_repository("a")
    push_document(registry, repo, CONFIG_TAG, TEAM_CONFIG_TYPE,
                  make_config("a", members=["alice", "dave"]).to_json())  # fmt: skip
    configs = RegistryTeamConfigs(registry, lambda: [repo], "", ttl=5.0, clock=lambda: 1000.0)

    def push_and_forget() -> None:
        new = make_config("a", members=["alice"])
        push_document(registry, repo, CONFIG_TAG, TEAM_CONFIG_TYPE, new.to_json())
        assert configs.forget_older_than(0.0, ["a"], team_list=True) is False  # nothing cached

    registry.on_read.append(push_and_forget)
    first = configs.get("a")
    assert first is not None and sorted(first.members) == ["alice", "dave"]  # read before
    second = configs.get("a")  # the clock has not moved: a cached read would be returned
    assert second is not None and sorted(second.members) == ["alice"]
    assert configs.get("a") is second  # and that one is cached
