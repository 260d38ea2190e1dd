"""The Connect client against a real dev-bsr process on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bsr_team_cache.bsr.auth import parse_buf_token, token_for_host
from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bsr.connect import ConnectTransport
from bsr_team_cache.domain.digest import b5_digest, module_file_paths
from bsr_team_cache.domain.moduleref import parse_module_ref
from bsr_team_cache.errors import (
    ConfigError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from tests.conftest import SHOP_DEP_CLOSURE, start_dev_bsr


def _client(**kwargs) -> BSRModuleClient:
    return BSRModuleClient(ConnectTransport(backoff=0.01, **kwargs))


def test_resolve_labels_and_default_label(bsr_env):
    host = bsr_env.host
    with _client() as client:
        v1, main, default = client.resolve(
            [
                parse_module_ref(f"{host}/acme/pets:v1"),
                parse_module_ref(f"{host}/acme/pets:main"),
                parse_module_ref(f"{host}/acme/pets"),
            ]
        )
    assert v1.commit_id != main.commit_id
    assert main.commit_id == default.commit_id
    assert str(v1.module) == f"{host}/acme/pets"
    # The same commit is found again by its id.
    with _client() as client:
        (again,) = client.resolve([parse_module_ref(f"{host}/acme/pets:{v1.commit_id}")])
    assert again == v1


def test_graph_has_transitive_deps_pruned_by_imports(bsr_env):
    host = bsr_env.host
    with _client() as client:
        graph = client.graph(
            [parse_module_ref(f"{host}/acme/orders"), parse_module_ref(f"{host}/acme/notes")]
        )
    names = {c.commit_id: str(c.module).split("/", 1)[1] for c in graph.commits.values()}
    assert sorted(names.values()) == SHOP_DEP_CLOSURE
    orders = next(c for c, n in names.items() if n == "acme/orders")
    notes = next(c for c, n in names.items() if n == "acme/notes")
    assert [str(c.module).split("/", 1)[1] for c in graph.transitive_deps(orders)] == [
        "acme/common",
        "acme/money",
        "acme/pets",
        "googleapis/googleapis",
    ]
    # acme/notes declares googleapis but imports only well-known types: buf prunes it.
    assert graph.transitive_deps(notes) == []
    assert sorted(names[r] for r in graph.roots) == ["acme/notes", "acme/orders"]


def test_download_is_byte_identical_and_verified(bsr_env):
    host = bsr_env.host
    with _client() as client:
        graph = client.graph([parse_module_ref(f"{host}/acme/orders")])
        contents = client.download_graph(graph)
    for content in contents.values():
        module = content.commit.module
        label_dir = bsr_env.data_dir / module.owner / module.name / "main"
        on_disk = module_file_paths(label_dir)
        assert sorted(content.files) == sorted(on_disk)
        for rel, path in on_disk.items():
            assert content.files[rel] == Path(path).read_bytes()
        deps = [d.digest for d in graph.transitive_deps(content.commit.commit_id)]
        assert b5_digest(label_dir, deps) == content.commit.digest


def test_googleapis_module_is_real_and_large(bsr_env):
    with _client() as client:
        (commit,) = client.resolve([parse_module_ref(f"{bsr_env.host}/googleapis/googleapis")])
        (content,) = client.download([commit])
    assert "google/api/annotations.proto" in content.files
    assert "google/rpc/status.proto" in content.files
    assert len(content.files) > 50


def test_unknown_label_is_a_clear_not_found(bsr_env):
    with _client() as client, pytest.raises(NotFoundError) as info:
        client.resolve([parse_module_ref(f"{bsr_env.host}/acme/pets:v9")])
    assert "label or commit 'v9' not found for module acme/pets" in str(info.value)
    with _client() as client, pytest.raises(NotFoundError, match="module acme/nope not found"):
        client.resolve([parse_module_ref(f"{bsr_env.host}/acme/nope")])


def test_unreachable_registry_is_unavailable_after_bounded_retries(bsr_env):
    sleeps: list[float] = []
    client = BSRModuleClient(ConnectTransport(max_attempts=3, backoff=0.01, sleep=sleeps.append))
    with client, pytest.raises(UnavailableError, match="gave up after 3 attempts"):
        client.resolve([parse_module_ref("localhost:1/acme/pets")])
    assert len(sleeps) == 2


def test_untrusted_certificate_says_how_to_fix(dev_bsr, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    client = BSRModuleClient(ConnectTransport(max_attempts=1))
    with client, pytest.raises(UnavailableError, match="SSL_CERT_FILE"):
        client.resolve([parse_module_ref(f"{dev_bsr.host}/acme/pets")])


def test_retries_through_injected_unavailable_and_rate_limit(sample_data, tmp_path, monkeypatch):
    server = start_dev_bsr(
        sample_data, tmp_path / "bsr", "--fail-first", "2", "--rate-limit-first", "1"
    )
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_cert))
        with _client(max_attempts=4) as client:
            (commit,) = client.resolve([parse_module_ref(f"{server.host}/acme/common")])
        statuses = [r["status"] for r in server.requests()]
        assert statuses == ["unavailable", "unavailable", "resource_exhausted", "ok"]
        assert commit.digest.type == "b5"
    finally:
        server.stop()


def test_retry_after_from_the_server_is_honoured(sample_data, tmp_path, monkeypatch):
    server = start_dev_bsr(
        sample_data, tmp_path / "bsr", "--rate-limit-first", "1", "--retry-after", "1"
    )
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_cert))
        with _client(max_attempts=3, sleep=sleep) as client:
            client.resolve([parse_module_ref(f"{server.host}/acme/common")])
        assert sleeps == [1.0]  # backoff alone would wait 5-10 ms: the server's 1 s wins
        limited, answered = server.requests()
        assert (limited["status"], answered["status"]) == ("resource_exhausted", "ok")
        assert answered["time"] - limited["time"] >= 1.0  # as the server saw it
    finally:
        server.stop()


def test_server_warnings_are_reported_once_per_call(sample_data, tmp_path, monkeypatch):
    server = start_dev_bsr(sample_data, tmp_path / "bsr", "--warning", "acme is \x1b[31mred")
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_cert))
        ref = parse_module_ref(f"{server.host}/acme/common")
        with _client() as client:
            client.resolve([ref])
            client.resolve([ref])
            said = f"{server.host}: acme is \\x1b[31mred"  # the escape shown, not sent
            assert client.server_warnings() == [said]  # once, though said twice
            assert client.server_warnings() == []
            client.resolve([ref])  # a later fetch with the same client hears it again
            assert client.server_warnings() == [said]
    finally:
        server.stop()


def test_auth_errors(sample_data, tmp_path, monkeypatch):
    server = start_dev_bsr(
        sample_data, tmp_path / "bsr", "--require-token", "s3cret", "--deny-owner", "googleapis"
    )
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_cert))
        monkeypatch.delenv("BUF_TOKEN", raising=False)
        monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
        ref = parse_module_ref(f"{server.host}/acme/common")
        with _client() as client, pytest.raises(UnauthenticatedError, match="set BUF_TOKEN"):
            client.resolve([ref])
        monkeypatch.setenv("BUF_TOKEN", f"s3cret@{server.host},other@buf.build")
        with _client() as client:
            assert client.resolve([ref])[0].module == ref.module
            with pytest.raises(PermissionDeniedError, match="denied"):
                client.resolve([parse_module_ref(f"{server.host}/googleapis/googleapis")])
        # ~/.netrc works as with buf.
        monkeypatch.delenv("BUF_TOKEN")
        (tmp_path / "netrc").write_text(f"machine {server.host}\nlogin me\npassword s3cret\n")
        monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
        with _client() as client:
            assert client.resolve([ref])[0].module == ref.module
    finally:
        server.stop()


def test_buf_token_forms(tmp_path):
    assert parse_buf_token("abc") == ("abc", {})
    assert parse_buf_token("t1@buf.build,t2@localhost:8443") == (
        None,
        {"buf.build": "t1", "localhost:8443": "t2"},
    )
    env = {"BUF_TOKEN": "t1@buf.build", "NETRC": str(tmp_path / "none")}
    assert token_for_host("buf.build", env) == "t1"
    assert token_for_host("other.host", env) is None
    with pytest.raises(ConfigError, match="BUF_TOKEN: entry 1 is not token@host"):
        parse_buf_token("@host")
