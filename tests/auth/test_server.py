"""The auth server end to end: a real Distribution with ``auth: token`` trusting a real
``bsr-team-cache auth-server`` process, and its notifications posted back to that server.
Every refusal is the registry's own answer and appears in the server's audit log."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bsr_team_cache._proc import stop_process
from bsr_team_cache.audit.team import merge
from bsr_team_cache.auth.users import CredentialStore
from bsr_team_cache.errors import AccessDeniedError, RegistryError
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.credentials import Credentials
from bsr_team_cache.oci.devregistry import (
    DistributionServer,
    NotificationEndpoint,
    TokenAuth,
    free_port,
)
from bsr_team_cache.oci.documents import EMPTY_CONFIG, push_document
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.team.config import TEAM_CONFIG_TYPE, TeamConfig, make_config

pytestmark = pytest.mark.slow

SERVICE, ISSUER = "bsr-team-cache", "bsr-team-cache-auth"
HOOK_SECRET = "notification-secret-for-tests"
PASSWORDS = {
    "root": "root-password",
    "alice": "alice-password",
    "bob": "bob-password",
    "carol": "carol-password",
    "dave": "dave-password",
}
DEPS = "teams/a/dependencies/buf.build/acme/pets"
# Long: configuration changes must reach the server through the registry's notifications.
CACHE_SECONDS = 60.0


@dataclass
class Stack:
    registry: DistributionServer
    auth: subprocess.Popen
    auth_url: str
    state: Path
    tokens: dict[str, str]  # "valid", "expired", "revoked" -> a token of carol's

    def client(self, user: str, secret: str | None = None) -> HTTPRegistry:
        password = PASSWORDS[user] if secret is None else secret
        return HTTPRegistry(self.registry.url, credentials=Credentials(user, password))

    def audit(self) -> list[dict]:
        path = self.state / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def wait_for_record(self, **fields: object) -> dict:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for record in self.audit():
                if all(record[k] == v for k, v in fields.items()):
                    return record
            time.sleep(0.2)
        raise AssertionError(f"no audit record with {fields}: {self.audit()[-5:]}")


def _config(team: str, roles: dict[str, str]) -> TeamConfig:
    return make_config(team, members=list(roles), roles=roles)


def _push_config(stack: Stack, config: TeamConfig) -> None:
    with stack.client("root") as root:
        push_document(
            root, f"teams/{config.team}/config", "latest", TEAM_CONFIG_TYPE, config.to_json()
        )


def _push_artifact(reg: HTTPRegistry, repo: str, tag: str, layer: bytes) -> str:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.test",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256_digest(EMPTY_CONFIG),
                "size": len(EMPTY_CONFIG),
            },
            "layers": [
                {
                    "mediaType": "application/octet-stream",
                    "digest": sha256_digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    for blob in (EMPTY_CONFIG, layer):
        reg.push_blob(repo, blob, sha256_digest(blob))
    return reg.push_manifest(repo, tag, manifest, OCI_MANIFEST)


def _start_auth_server(state: Path, registry_port: int, port: int, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "bsr_team_cache", "auth-server",
        "--registry", f"http://127.0.0.1:{registry_port}",
        "--state", str(state),
        "--listen", f"127.0.0.1:{port}",
        "--config-cache-seconds", str(CACHE_SECONDS),
        "--audit-ship-seconds", "1",
        "--notifications-token", HOOK_SECRET,
    ]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"auth-server exited: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/token", timeout=1).status_code == 401:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"auth-server did not answer: {log.read_text()}")
        time.sleep(0.1)


def start_registry_behind_auth_server(
    work: Path, state: Path
) -> tuple[DistributionServer, subprocess.Popen, str]:
    """A real auth-server (state in ``state``) and a Distribution trusting it and notifying it:
    (registry, the server's process, its URL). The caller stops both."""
    registry_port, auth_port = free_port(), free_port()
    auth = _start_auth_server(state, registry_port, auth_port, work / "auth-server.log")
    auth_url = f"http://127.0.0.1:{auth_port}"
    registry = DistributionServer(
        work / "registry",
        port=registry_port,
        token_auth=TokenAuth(f"{auth_url}/token", SERVICE, ISSUER, state / "cert.pem"),
        notifications=[
            NotificationEndpoint(
                "audit", f"{auth_url}/notifications", (("Authorization", f"Bearer {HOOK_SECRET}"),)
            )
        ],
    )
    try:
        registry.start()
    except BaseException:
        stop_process(auth)
        raise
    return registry, auth, auth_url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("auth-server")
    state = work / "state"
    users = CredentialStore(state, rounds=4)
    for name, password in PASSWORDS.items():
        users.add_user(name, password, site_admin=name == "root")
    _, valid = users.add_token("carol", lifetime=3600)
    revoked_token, revoked = users.add_token("carol", lifetime=3600)
    users.revoke_token(revoked_token.id)
    # A token that expired an hour ago: created two hours ago with a one-hour lifetime.
    past = CredentialStore(state, clock=lambda: time.time() - 7200, rounds=4)
    _, expired = past.add_token("carol", lifetime=3600)
    registry, auth, auth_url = start_registry_behind_auth_server(work, state)
    try:
        built = Stack(
            registry,
            auth,
            auth_url,
            state,
            {"valid": valid, "expired": expired, "revoked": revoked},
        )
        _push_config(built, _config("a", {"alice": "admin", "bob": "reader", "dave": "member"}))
        _push_config(built, _config("b", {"carol": "member"}))
        with built.client("alice") as alice:
            _push_artifact(alice, DEPS, "v1", b"pets module files")
        yield built
    finally:
        registry.stop()
        stop_process(auth)


def _token(stack: Stack, user: str | None, secret: str | None, scope: str) -> httpx.Response:
    auth = None if user is None else (user, secret if secret is not None else PASSWORDS[user])
    return httpx.get(
        f"{stack.auth_url}/token", params={"service": SERVICE, "scope": scope}, auth=auth
    )


def _start_upload(stack: Stack, repo: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{stack.registry.url}/v2/{repo}/blobs/uploads/", headers=headers)


def _granted(response: httpx.Response) -> list[dict]:
    claims = response.json()["token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["access"]


def _registry_refusal(response: httpx.Response) -> None:
    """A 401 that Distribution itself sent: its Bearer challenge names the realm and scope."""
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer realm=") and 'service="bsr-team-cache"' in challenge
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_a_member_of_another_team_cannot_push(stack: Stack) -> None:
    scope = f"repository:{DEPS}:pull,push"
    answer = _token(stack, "carol", None, scope)
    assert answer.status_code == 200
    assert _granted(answer) == []  # what is not allowed is left out of the token
    response = _start_upload(stack, DEPS, answer.json()["token"])
    _registry_refusal(response)
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    record = stack.wait_for_record(operation="refuse", member="carol", team="a")
    assert record["refs"] == [scope]
    assert record["result"] == "error: not a member of team a"
    with stack.client("carol") as carol, pytest.raises(AccessDeniedError, match="access denied"):
        carol.push_blob(DEPS, b"evil", sha256_digest(b"evil"))


def test_a_reader_pulls_and_cannot_push(stack: Stack) -> None:
    with stack.client("bob") as bob:
        assert bob.read_manifest(DEPS, "v1") is not None
        assert bob.read_manifest("teams/a/config", "latest") is not None
        for repo in (DEPS, "teams/a/bundles/core", "teams/a/labels/buf.build/acme/pets",
                     "teams/a/config", "teams/a/usage-events", "teams/a/audit"):  # fmt: skip
            with pytest.raises(AccessDeniedError, match="access denied"):
                bob.push_blob(repo, b"x", sha256_digest(b"x"))
    answer = _token(stack, "bob", None, f"repository:{DEPS}:pull,push")
    assert _granted(answer) == [{"type": "repository", "name": DEPS, "actions": ["pull"]}]
    _registry_refusal(_start_upload(stack, DEPS, answer.json()["token"]))
    refusals = [r for r in stack.audit() if r["member"] == "bob" and r["operation"] == "refuse"]
    assert {"team": "a", "refs": [f"repository:{DEPS}:push"],
            "result": "error: role reader cannot push dependencies"}.items() <= refusals[-1].items()  # fmt: skip
    grants = [r for r in stack.audit() if r["member"] == "bob" and r["operation"] == "grant"]
    assert grants[-1]["refs"] == [f"repository:{DEPS}:pull"]


@pytest.mark.parametrize(
    ("kind", "reason"), [("expired", "token expired"), ("revoked", "token revoked")]
)
def test_expired_and_revoked_tokens_are_refused(stack: Stack, kind: str, reason: str) -> None:
    scope = "repository:teams/b/usage-events:pull,push"
    answer = _token(stack, "carol", stack.tokens[kind], scope)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="bsr-team-cache"'
    assert answer.json()["errors"][0]["message"] == reason
    _registry_refusal(_start_upload(stack, "teams/b/usage-events", None))
    record = stack.wait_for_record(operation="refuse", member="carol", result=f"error: {reason}")
    assert (record["team"], record["refs"]) == ("b", [scope])
    valid = _token(stack, "carol", stack.tokens["valid"], scope)
    assert _granted(valid) == [
        {"type": "repository", "name": "teams/b/usage-events", "actions": ["pull", "push"]}
    ]
    assert _start_upload(stack, "teams/b/usage-events", valid.json()["token"]).status_code == 202


def test_anonymous_access_is_refused(stack: Stack) -> None:
    scope = f"repository:{DEPS}:pull"
    answer = _token(stack, None, None, scope)
    assert answer.status_code == 401
    _registry_refusal(httpx.get(f"{stack.registry.url}/v2/{DEPS}/manifests/v1"))
    record = stack.wait_for_record(operation="refuse", member="anonymous", team="a")
    assert (record["refs"], record["result"]) == ([scope], "error: anonymous access is refused")
    anonymous = HTTPRegistry(stack.registry.url, credentials=Credentials())
    with anonymous, pytest.raises(RegistryError, match="refused the credentials"):
        anonymous.read_manifest(DEPS, "v1")


def test_a_removed_member_is_refused_once_the_config_changes(stack: Stack) -> None:
    with stack.client("dave") as dave:
        _push_artifact(dave, DEPS, "dave-1", b"dave's first")  # granted: team a's config cached
    pushes = len([r for r in stack.audit() if r["operation"] == "registry-push"])
    _push_config(stack, _config("a", {"alice": "admin", "bob": "reader"}))
    # The registry tells the server of the new configuration (well within the cache period).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        config_pushes = [
            r
            for r in stack.audit()[pushes:]
            if r["operation"] == "registry-push" and "teams/a/config:latest" in r["refs"]
        ]
        if config_pushes:
            break
        time.sleep(0.05)
    assert config_pushes
    scope = f"repository:{DEPS}:pull,push"
    answer = _token(stack, "dave", None, scope)
    assert _granted(answer) == []
    _registry_refusal(_start_upload(stack, DEPS, answer.json()["token"]))
    record = stack.wait_for_record(operation="refuse", member="dave", team="a")
    assert (record["refs"], record["result"]) == ([scope], "error: not a member of team a")
    _push_config(stack, _config("a", {"alice": "admin", "bob": "reader", "dave": "member"}))


def test_a_skopeo_pull_is_recorded_from_the_registry_notifications(
    stack: Stack, tmp_path: Path
) -> None:
    host = stack.registry.url.removeprefix("http://")
    with stack.client("alice") as alice:
        digest = _push_artifact(alice, DEPS, "skopeo", b"pulled by skopeo")
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--src-creds", f"alice:{PASSWORDS['alice']}",
         f"docker://{host}/{DEPS}:skopeo", f"dir:{tmp_path / 'copy'}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    record = stack.wait_for_record(
        operation="registry-pull", member="alice", refs=[f"{DEPS}@{digest}", f"{DEPS}:skopeo"]
    )
    assert (record["team"], record["result"]) == ("a", "ok")
    pushed = stack.wait_for_record(
        operation="registry-push", refs=[f"{DEPS}@{digest}", f"{DEPS}:skopeo"]
    )
    assert (pushed["member"], pushed["team"]) == ("alice", "a")
    # The server's own reads of team configurations are not user activity.
    assert [r for r in stack.audit() if r["member"] in ("auth-server:self", "unknown")] == []


def test_notifications_need_the_shared_secret(stack: Stack) -> None:
    envelope = {
        "events": [
            {
                "action": "pull",
                "target": {"repository": DEPS, "digest": "sha256:" + "0" * 64},
                "actor": {"name": "mallory"},
            }
        ]
    }
    wrong = httpx.post(f"{stack.auth_url}/notifications", json=envelope,
                       headers={"Authorization": "Bearer guess"})  # fmt: skip
    assert wrong.status_code == 401
    assert [r for r in stack.audit() if r["member"] == "mallory"] == []
    bad = httpx.post(f"{stack.auth_url}/notifications", content=b"[1,2",
                     headers={"Authorization": f"Bearer {HOOK_SECRET}"})  # fmt: skip
    assert bad.status_code == 400


def test_the_records_ship_to_the_team_audit_repository(stack: Stack, tmp_path: Path) -> None:
    stack.wait_for_record(operation="refuse", member="carol", team="a")
    deadline = time.monotonic() + 30
    merged: list[dict] = []
    with stack.client("alice") as alice:
        while not any(r["operation"] == "refuse" and r["member"] == "carol" for r in merged):
            assert time.monotonic() < deadline, "the records did not ship"
            time.sleep(0.5)
            report = merge(tmp_path, alice, "teams/a/audit", team="a", own_tag="alice.x")
            assert report.warnings == []
            if report.merged:
                text = (tmp_path / "audit-team.jsonl").read_text()
                merged = [json.loads(line) for line in text.splitlines()]
    assert {r["team"] for r in merged} == {"a"}
    carol = [r for r in merged if r["operation"] == "refuse" and r["member"] == "carol"]
    assert carol[0]["result"] == "error: not a member of team a"


def test_a_login_check_the_catalog_and_malformed_requests(stack: Stack) -> None:
    login = httpx.get(
        f"{stack.auth_url}/token", params={"service": SERVICE}, auth=("bob", PASSWORDS["bob"])
    )
    assert login.status_code == 200
    assert sorted(login.json()) == ["access_token", "expires_in", "issued_at", "token"]
    assert (_granted(login), login.json()["expires_in"]) == ([], 300)
    assert stack.audit()[-1] | {"time": "", "host": ""} == {
        "time": "", "host": "", "team": "", "member": "bob", "operation": "grant", "refs": [],
        "result": "ok",
    }  # fmt: skip
    catalog = "registry:catalog:*"
    for user, granted in (("alice", []), ("root", [{"type": "registry", "name": "catalog", "actions": ["*"]}])):  # fmt: skip
        answer = _token(stack, user, None, catalog)
        assert _granted(answer) == granted
        listing = httpx.get(
            f"{stack.registry.url}/v2/_catalog",
            headers={"Authorization": f"Bearer {answer.json()['token']}"},
        )
        assert listing.status_code == (401 if user == "alice" else 200)
    assert "teams/a/config" in listing.json()["repositories"]
    wrong_service = httpx.get(
        f"{stack.auth_url}/token", params={"service": "other"}, auth=("bob", PASSWORDS["bob"])
    )
    assert wrong_service.status_code == 400
    many = " ".join(f"repository:teams/a/x{i}:pull" for i in range(65))
    assert _token(stack, "bob", None, many).status_code == 400
    odd = _token(stack, "bob", None, "repository:teams/a/config:fly repository(x):y:pull")
    assert (odd.status_code, _granted(odd)) == (200, [])


def test_a_refused_login_check_is_one_refusal(stack: Stack) -> None:
    before = len(stack.audit())
    login = httpx.get(
        f"{stack.auth_url}/token", params={"service": SERVICE}, auth=("bob", "wrong-password")
    )
    assert login.status_code == 401
    decisions = [
        r | {"time": "", "host": ""}
        for r in stack.audit()[before:]
        if r["member"] == "bob" and r["operation"] in ("grant", "refuse")
    ]
    assert decisions == [
        {
            "time": "", "host": "", "team": "", "member": "bob", "operation": "refuse",
            "refs": [], "result": "error: bad credentials",
        }
    ]  # fmt: skip


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc = _start_auth_server(tmp_path / "state", free_port(), port, tmp_path / "log")
    stop_process(proc)
    assert proc.returncode == 0
    output = (tmp_path / "log").read_text()
    assert f"token realm http://127.0.0.1:{port}/token" in output
    assert output.splitlines()[-1] == "stopped"


def test_tls_serves_tokens_over_https(tmp_path: Path) -> None:
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from bsr_team_cache.auth.server import AuthServer, ServerOptions, build_service

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    CredentialStore(tmp_path / "state", rounds=4).add_user("bob", PASSWORDS["bob"])
    options = ServerOptions(
        registry=f"http://127.0.0.1:{free_port()}",
        state_dir=tmp_path / "state",
        port=0,
        tls_cert=tmp_path / "tls.crt",
        tls_key=tmp_path / "tls.key",
    )
    server = AuthServer(build_service(options)).start()
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
        answer = httpx.get(
            f"https://localhost:{server.port}/token",
            params={"service": SERVICE},
            auth=("bob", PASSWORDS["bob"]),
            verify=context,
        )
        assert (answer.status_code, _granted(answer)) == (200, [])
    finally:
        server.stop()


def test_connections_past_the_cap_are_closed_at_once() -> None:
    """Slow clients cannot pile up threads: past the cap, a connection is closed unanswered."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler

    from bsr_team_cache.auth.server import BoundedThreadingHTTPServer

    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(10)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = BoundedThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server._slots = threading.BoundedSemaphore(1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        first = socket.create_connection(("127.0.0.1", port))
        first.sendall(b"GET / HTTP/1.0\r\n\r\n")
        time.sleep(0.3)  # the first holds the only slot
        second = socket.create_connection(("127.0.0.1", port))
        second.settimeout(5)
        second.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert second.recv(100) == b""  # closed without an answer
        release.set()
        first.settimeout(5)
        assert first.recv(100).startswith(b"HTTP/1.0 204")
        answers = []  # the slot is free again once the first's thread ends
        for _ in range(50):
            third = socket.create_connection(("127.0.0.1", port))
            third.settimeout(5)
            third.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answers.append(third.recv(100))
            if answers[-1]:
                break
            time.sleep(0.1)
        assert answers[-1].startswith(b"HTTP/1.0 204")
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_only_an_admin_prunes_the_teams_packs(stack: Stack) -> None:
    from bsr_team_cache.housekeeping.packs import prune_packs
    from bsr_team_cache.team.names import pack_repository
    from bsr_team_cache.team.packs import push_pack

    repo, tag = pack_repository("a"), "lock-" + "ab" * 32
    with stack.client("dave") as dave:  # a member pushes packs, as its fetches do
        digest = push_pack(dave, repo, tag, [(b"member manifest", b"member layer")])
        refused = prune_packs(dave, "a", time.time() + 60)
        assert refused.deleted == [] and refused.error is not None
        assert refused.error.endswith(
            "your role in the team does not allow it: ask a team admin. Deleting needs the"
            " team's admin role and a registry that allows deletes (Distribution:"
            " storage.delete.enabled, docs/deploy.md)"
        )
        assert dave.list_tags(repo) == [tag]
    with stack.client("alice") as alice:
        report = prune_packs(alice, "a", time.time() + 60)
        assert (report.deleted, report.kept) == ([f"{tag}@{digest}"], 0)
        assert alice.list_tags(repo) == []
