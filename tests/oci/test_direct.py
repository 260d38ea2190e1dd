"""The direct manifest read (oci/direct.py): the same answers as the full client against real
Distribution (with and without token auth), and against scripted servers that lie, stall,
redirect or ask for credentials: a bounded NotAnswered, credentials only where they belong."""

from __future__ import annotations

import base64
import json
import re
import select
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bsr_team_cache._deadline import deadline_scope
from bsr_team_cache.bsr.devbsr import ensure_tls_files
from bsr_team_cache.errors import (
    ContentTooLargeError,
    DigestMismatchError,
    MissingBlobError,
    RegistryError,
)
from bsr_team_cache.limits import configure, limits
from bsr_team_cache.oci import _connect, direct, open_registry
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.credentials import Credentials
from bsr_team_cache.oci.devregistry import DistributionServer, TokenService
from bsr_team_cache.oci.direct import DirectReader, NotAnswered
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.tokens import TOKEN_CACHE_FILE, TokenCache
from tests.oci.test_http import _push_artifact

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()
PATH = "/v2/t/m/manifests/v1"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


Responder = Callable[[bytes], bytes | list[bytes] | None]


class Scripted:
    """A loopback server that answers each request with what ``respond`` returns for it (the
    raw answer, or its parts; None: close without answering), keeping connections open between
    requests unless the parts end with b"". ``requests`` holds (connection number, raw
    request) in order."""

    def __init__(self, respond: Responder, tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.requests: list[tuple[int, bytes]] = []
        self.connections = 0
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            number = self.connections
            threading.Thread(target=self._serve, args=(sock, number), daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True)
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                request, buffer = head + b"\r\n\r\n" + buffer[:length], buffer[length:]
                self.requests.append((number, request))
                answer = self.respond(request)
                if answer is None:
                    return
                parts = answer if isinstance(answer, list) else [answer]
                for part in parts:
                    sock.sendall(part)
                if parts[-1] == b"":
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            sock.close()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def make(respond: Responder, tls: ssl.SSLContext | None = None) -> Scripted:
        servers.append(Scripted(respond, tls))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def answer(status: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    if "Content_Length" not in headers and "Transfer_Encoding" not in headers:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def manifest_answer(body: bytes = MANIFEST) -> bytes:
    return answer(
        "200 OK", body, Content_Type=OCI_MANIFEST, Docker_Content_Digest=sha256_digest(body)
    )


@pytest.fixture
def ann(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own credentials in the environment; the local store (its token cache)."""
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_USERNAME", "ann")
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_PASSWORD", "s3cret")
    store = tmp_path / "store"
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(store))
    return store


def header(request: bytes, name: str) -> str | None:
    for line in request.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode()
    return None


def read_manifest_directly(
    url: str, insecure: bool, repo: str, reference: str
) -> tuple[bytes, str] | None:
    reader = DirectReader(url, insecure)
    try:
        return reader.read_manifest(repo, reference)
    finally:
        reader.close()


def read(url: str, reference: str = "v1") -> tuple[bytes, str] | None:
    return read_manifest_directly(url, False, "t/m", reference)


# -- real Distribution -----------------------------------------------------------------------


def test_the_direct_read_answers_as_the_full_client(distribution: DistributionServer) -> None:
    with HTTPRegistry(distribution.url + "/direct") as full:
        manifest = _push_artifact(full, "a/b", "v1", b"layer bytes")
        assert full.read_manifest("a/b", "v1") == (manifest, OCI_MANIFEST)
    url = distribution.url + "/direct"
    assert read_manifest_directly(url, False, "a/b", "v1") == (manifest, OCI_MANIFEST)
    digest = sha256_digest(manifest)
    assert read_manifest_directly(url, False, "a/b", digest) == (manifest, OCI_MANIFEST)
    assert read_manifest_directly(url, False, "a/b", "absent") is None
    assert read_manifest_directly(url, False, "never/pushed", "v1") is None


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionServer]:
    tokens = TokenService(users={"payments": "pw1"}, rule=lambda user, name, actions: actions)
    server = DistributionServer(tmp_path_factory.mktemp("direct"), token_service=tokens).start()
    yield server
    server.stop()


def test_a_token_got_by_the_direct_read_serves_the_full_client(
    token_registry: DistributionServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's own credentials (environment): the direct read answers the challenge with a
    token it keeps in the local store's token cache, where the full client finds it."""
    tokens = token_registry.token_service
    assert tokens is not None
    with HTTPRegistry(token_registry.url, credentials=Credentials("payments", "pw1")) as writer:
        manifest = _push_artifact(writer, "teams/p/packs", "lock-1", b"pack")
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_USERNAME", "payments")
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_PASSWORD", "pw1")
    before = len(tokens.issued)
    found = read_manifest_directly(token_registry.url, False, "teams/p/packs", "lock-1")
    assert found == (manifest, OCI_MANIFEST)
    pull = {"type": "repository", "name": "teams/p/packs", "actions": ["pull"]}
    assert tokens.issued[before:] == [{"user": "payments", "access": [pull]}]
    cache = tmp_path / "store" / TOKEN_CACHE_FILE
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600 and b"pw1" not in cache.read_bytes()
    # A later read, direct or full, needs no new token.
    assert read_manifest_directly(token_registry.url, False, "teams/p/packs", "lock-1") == found
    with HTTPRegistry(token_registry.url) as full:
        assert full.read_manifest("teams/p/packs", "lock-1") == found
    assert len(tokens.issued) == before + 1
    # Wrong credentials: a verdict, in the full client's words (not a second login).
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_PASSWORD", "wrong")
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "other-store"))
    host = token_registry.url.removeprefix("http://")
    with pytest.raises(RegistryError) as refused:
        read_manifest_directly(token_registry.url, False, "teams/p/packs", "lock-1")
    assert str(refused.value).startswith(
        f"team registry {token_registry.url}: the token service refused the credentials ("
    )
    assert str(refused.value).endswith(
        f"); check `docker login {host}` or BSR_TEAM_CACHE_REGISTRY_USERNAME/_PASSWORD"
    )


def test_a_registry_opened_from_its_url_reads_directly_until_its_client_is_built(
    distribution: DistributionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HTTPRegistry(distribution.url) as full:
        manifest = _push_artifact(full, "first/read", "v1", b"layer")
    calls: list[str] = []
    real = DirectReader.read_manifest

    def recording(reader, repo, reference):
        calls.append(reference)
        return real(reader, repo, reference)

    monkeypatch.setattr(DirectReader, "read_manifest", recording)
    registry = open_registry(distribution.url)
    layer = sha256_digest(b"layer")
    for _ in range(2):
        assert registry.read_manifest("first/read", "v1") == (manifest, OCI_MANIFEST)
        assert registry.read_blob("first/read", layer, max_bytes=5) == b"layer"
    assert calls == ["v1", "v1"] and registry._backend is None  # no HTTP client built
    # Anything else builds the client, which then serves every read.
    assert registry.blob_exists("first/read", layer)
    assert registry.read_manifest("first/read", "v1") == (manifest, OCI_MANIFEST)
    assert calls == ["v1", "v1"] and registry._backend is not None
    registry.close()
    # A proxy in the environment: the client reads (here told to bypass it for loopback).
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    proxied = open_registry(distribution.url)
    assert proxied.read_manifest("first/read", "v1") == (manifest, OCI_MANIFEST)
    assert calls == ["v1", "v1"] and proxied._backend is not None
    proxied.close()


def test_a_read_not_answered_directly_goes_to_the_client_and_so_do_all_after_it(
    distribution: DistributionServer,
) -> None:
    with HTTPRegistry(distribution.url) as full:
        manifest = _push_artifact(full, "after/miss", "v1", b"layer")
    registry = open_registry(distribution.url)
    # A blob that is not there: the direct read leaves it to the client, which says so.
    with pytest.raises(MissingBlobError):
        registry.read_blob("after/miss", sha256_digest(b"absent"), max_bytes=100)
    assert registry._direct_off and registry._backend is not None
    assert registry.read_manifest("after/miss", "v1") == (manifest, OCI_MANIFEST)
    registry.close()


# -- scripted servers -------------------------------------------------------------------------


def test_sized_chunked_and_closed_answers_are_read_exactly(scripted) -> None:
    body = MANIFEST
    digest = sha256_digest(body)
    chunked = (
        f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: {OCI_MANIFEST}\r\n"
        f"Docker-Content-Digest: {digest}\r\n\r\n"
    ).encode()
    chunked += b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7])
                        for i in range(0, len(body), 7))  # fmt: skip
    chunked += b"0\r\nTrailer: x\r\n\r\n"
    closed = (
        f"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: {OCI_MANIFEST}\r\n\r\n"
    ).encode() + body
    for raw in (manifest_answer(), [chunked[:5], chunked[5:40], chunked[40:]], [closed, b""]):
        server = scripted(lambda request, raw=raw: raw)
        assert read(server.url) == (body, OCI_MANIFEST)
        request = server.requests[0][1]
        assert request.startswith(f"GET {PATH} HTTP/1.1\r\n".encode())
        assert header(request, "Host") == f"127.0.0.1:{server.port}"
        assert header(request, "Accept-Encoding") == "identity"
        assert header(request, "Authorization") is None


def test_a_manifest_that_is_not_what_the_registry_states_is_refused(scripted) -> None:
    lie = answer("200 OK", MANIFEST, Docker_Content_Digest=sha256_digest(b"other"))
    server = scripted(lambda request: lie)
    with pytest.raises(DigestMismatchError):
        read(server.url)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (answer("200 OK", b"x", Content_Length=str(4 * 1024 * 1024 + 1)), "over 4194304"),
        (answer("200 OK", b"x", Content_Length="12a"), "malformed Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nx", "malformed Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", "Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            "transfer coding",
        ),
        (answer("200 OK", MANIFEST, Content_Encoding="gzip"), "compressed"),
        (answer("200 OK", MANIFEST, Transfer_Encoding="gzip, chunked"), "transfer coding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "malformed header"),
        (b"HTTP/2 200\r\n\r\n", "status line"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "interim"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", b""], "closed before the"),
        (answer("302 Found", Location="http://127.0.0.1:9/elsewhere"), "HTTP 302"),
        (answer("500 Internal Server Error"), "HTTP 500"),
        (answer("401 Unauthorized", WWW_Authenticate='Negotiate x="y"'), "scheme 'negotiate'"),
        (answer("401 Unauthorized", WWW_Authenticate="Basic realm=r"), "wants a password"),
    ],
)
def test_an_unusual_answer_is_left_to_the_full_client(scripted, raw, reason) -> None:
    server = scripted(lambda request: raw)
    with pytest.raises(NotAnswered, match=reason):
        read(server.url)
    assert len(server.requests) == 1  # a redirect is not followed, nothing is retried


def test_endless_answers_stop_at_their_bounds(scripted) -> None:
    header_flood = [b"HTTP/1.1 200 OK\r\n"] + [b"X-Pad: " + b"a" * 1000 + b"\r\n"] * 100
    server = scripted(lambda request: header_flood)
    with pytest.raises(NotAnswered, match="header section is too large"):
        read(server.url)
    cap = limits().max_document_bytes
    unsized = [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"] + [b"{" * 65536] * (
        cap // 65536 + 2
    )
    server = scripted(lambda request: [*unsized, b""])
    with pytest.raises(NotAnswered, match=f"exceeds {cap} bytes"):
        read(server.url)
    chunks = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    chunks += [b"10000\r\n" + b"{" * 65536 + b"\r\n"] * (cap // 65536 + 2)
    server = scripted(lambda request: chunks)
    with pytest.raises(NotAnswered, match=f"exceeds {cap} bytes"):
        read(server.url)


def test_a_server_that_stalls_is_given_up_at_the_deadline(scripted) -> None:
    release = threading.Event()

    def stall(request: bytes) -> None:
        release.wait(30)
        return None

    server = scripted(stall)
    try:
        stalled = f"team registry {server.url}: GET {PATH}: the deadline passed"
        with deadline_scope(0.5), pytest.raises(RegistryError, match=stalled):
            read(server.url)
    finally:
        release.set()


def test_nothing_is_sent_for_a_reference_that_would_split_the_request(scripted) -> None:
    server = scripted(lambda request: manifest_answer())
    with pytest.raises(NotAnswered, match="control or non-ASCII"):
        read(server.url, reference="v1\r\nX-Injected: 1")
    assert server.requests == []


def test_a_basic_challenge_is_answered_on_the_same_connection(scripted, ann: Path) -> None:
    def respond(request: bytes) -> bytes:
        if header(request, "Authorization") is None:
            return answer("401 Unauthorized", b"{}", WWW_Authenticate='Basic realm="r"')
        return manifest_answer()

    server = scripted(respond)
    assert read(server.url) == (MANIFEST, OCI_MANIFEST)
    expected = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    assert [(n, header(r, "Authorization")) for n, r in server.requests] == [
        (1, None),
        (1, expected),
    ]


def test_the_bearer_flow_sends_credentials_only_to_the_token_service(scripted, ann: Path) -> None:
    token_server = scripted(
        lambda request: answer("200 OK", b'{"token": "tok-1", "expires_in": 300}')
    )
    realm = f"{token_server.url}/token?a=1"

    def registry(request: bytes) -> bytes:
        if header(request, "Authorization") != "Bearer tok-1":
            challenge = f'Bearer realm="{realm}",service="reg"'
            return answer("401 Unauthorized", b"{}", WWW_Authenticate=challenge)
        return manifest_answer()

    server = scripted(registry)
    assert read(server.url) == (MANIFEST, OCI_MANIFEST)
    assert [(n, header(r, "Authorization")) for n, r in server.requests] == [
        (1, None),
        (1, "Bearer tok-1"),
    ]
    ((_, token_request),) = token_server.requests
    basic = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    assert token_request.startswith(
        b"GET /token?a=1&scope=repository%3At%2Fm%3Apull&service=reg HTTP/1.1\r\n"
    )
    assert header(token_request, "Authorization") == basic
    cached = TokenCache(ann)._read()
    assert [entry.token for entry in cached.values()] == ["tok-1"]
    # The next process sends the cached token at once: no challenge, no token request.
    assert read(server.url) == (MANIFEST, OCI_MANIFEST)
    assert [header(r, "Authorization") for _, r in server.requests[2:]] == ["Bearer tok-1"]
    assert len(token_server.requests) == 1


def test_a_token_service_not_on_https_gets_no_credentials(scripted, ann: Path) -> None:
    challenge = 'Bearer realm="http://tokens.example.invalid/token"'
    server = scripted(lambda request: answer("401 Unauthorized", b"{}", WWW_Authenticate=challenge))
    with pytest.raises(NotAnswered, match="it is not https"):
        read(server.url)
    assert all(b"s3cret" not in r and header(r, "Authorization") is None
               for _, r in server.requests)  # fmt: skip


def test_tls_is_verified_against_the_trusted_cas(
    scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = ensure_tls_files(tmp_path / "tls", ["localhost", "127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.server_cert, files.server_key)
    server = scripted(lambda request: manifest_answer(), tls=context)
    monkeypatch.setenv("SSL_CERT_FILE", str(files.ca_cert))
    assert read(server.url) == (MANIFEST, OCI_MANIFEST)
    other = ensure_tls_files(tmp_path / "other-tls", ["localhost"])
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_cert))
    with pytest.raises(NotAnswered, match="CERTIFICATE_VERIFY_FAILED"):
        read(server.url)
    assert len(server.requests) == 1  # nothing was sent over the untrusted connection


def test_a_token_that_is_not_ascii_is_refused_and_not_kept(
    scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "store"))
    token_server = scripted(lambda request: answer("200 OK", '{"token": "\u20ac"}'.encode()))
    challenge = f'Bearer realm="{token_server.url}/token"'
    server = scripted(lambda request: answer("401 Unauthorized", b"{}", WWW_Authenticate=challenge))
    with pytest.raises(NotAnswered, match="returned no token"):
        read(server.url)
    assert not (tmp_path / "store" / TOKEN_CACHE_FILE).exists()


def test_names_outside_ascii_are_left_to_the_full_client(scripted) -> None:
    """The full client sends such names in their IDNA form; nothing is sent here."""
    with pytest.raises(NotAnswered, match="non-ASCII"):
        read_manifest_directly("https://\u4f8b\u3048.example/ns", False, "t/m", "v1")
    challenge = 'Bearer realm="https://\u00e9xample.test/token"'
    server = scripted(lambda request: answer("401 Unauthorized", b"{}", WWW_Authenticate=challenge))
    with pytest.raises(NotAnswered, match="non-ASCII"):
        read(server.url)
    assert len(server.requests) == 1


def test_an_idle_connection_the_server_closed_is_replaced_once(scripted, ann: Path) -> None:
    """A server that closes a connection after a 401 without saying so: the read with the
    password goes on a new connection, and the direct read still answers."""

    def respond(request: bytes) -> bytes | list[bytes]:
        if header(request, "Authorization") is None:
            return [answer("401 Unauthorized", b"{}", WWW_Authenticate="Basic realm=r"), b""]
        return manifest_answer()

    server = scripted(respond)
    assert read(server.url) == (MANIFEST, OCI_MANIFEST)
    assert [n for n, _ in server.requests] == [1, 2]


def test_a_host_that_does_not_accept_is_left_to_the_full_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connecting is bounded as in the full client (10 s; shortened here), and a registry that
    cannot be reached is the full client's to retry and report."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(4):  # fill the accept queue: further connections wait for ever
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        queued.append(client)
    monkeypatch.setattr(_connect, "CONNECT_SECONDS", 0.5)
    try:
        with pytest.raises(NotAnswered, match="cannot connect"):
            read(f"http://127.0.0.1:{port}")
    finally:
        for client in queued:
            client.close()
        listener.close()


def test_a_proxy_in_the_environment_leaves_reads_to_the_full_client(
    scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = scripted(lambda request: manifest_answer())
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    registry = open_registry(server.url)
    assert registry._read_directly(lambda reader: reader.read_manifest("t/m", "v1")) == (
        False,
        None,
    )
    assert server.connections == 0
    registry.close()


def test_a_refused_password_is_sent_once_and_said_as_the_full_client_says_it(
    scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    def respond(request: bytes) -> bytes:
        return answer(
            "401 Unauthorized",
            b'{"errors": [{"code": "UNAUTHORIZED", "message": "bad login"}]}',
            WWW_Authenticate='Basic realm="r"',
        )

    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_USERNAME", "ann")
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_PASSWORD", "wrong")
    server = scripted(respond)
    registry = open_registry(server.url)
    with pytest.raises(RegistryError) as refused:
        registry.read_manifest("t/m", "v1")
    host = f"127.0.0.1:{server.port}"
    assert str(refused.value) == (
        f"team registry {server.url}: GET manifest t/m:v1: not authorized (UNAUTHORIZED: bad"
        f" login); check the credentials for {host} (docker login, or"
        " BSR_TEAM_CACHE_REGISTRY_USERNAME)"
    )
    logins = [r for _, r in server.requests if header(r, "Authorization")]
    assert len(logins) == 1 and registry._backend is None  # no second login by the client
    registry.close()


def test_a_token_request_is_never_sent_twice(
    scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token service on the registry's own origin, closing the connection after the
    challenge without saying so: the refresh-token POST goes once, on a new connection."""
    config = tmp_path / "docker"
    config.mkdir()
    port_holder: list[int] = []

    def respond(request: bytes) -> bytes | list[bytes]:
        if request.startswith(b"POST /token"):
            return answer("200 OK", b'{"access_token": "tok-2", "expires_in": 300}')
        if header(request, "Authorization") == "Bearer tok-2":
            return manifest_answer()
        realm = f"http://127.0.0.1:{port_holder[0]}/token"
        challenge = f'Bearer realm="{realm}",service="reg"'
        return [answer("401 Unauthorized", b"{}", WWW_Authenticate=challenge), b""]

    server = scripted(respond)
    port_holder.append(server.port)
    (config / "config.json").write_text(
        json.dumps({"auths": {f"127.0.0.1:{server.port}": {"identitytoken": "REFRESH-SECRET"}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "store"))
    assert read(server.url) == (MANIFEST, OCI_MANIFEST)
    posts = [r for _, r in server.requests if r.startswith(b"POST ")]
    assert len(posts) == 1 and b"refresh_token=REFRESH-SECRET" in posts[0]


def test_a_stated_digest_is_shown_escaped(scripted) -> None:
    lie = answer("200 OK", MANIFEST, Docker_Content_Digest="sha256:\x1b[2J" + "0" * 60)
    server = scripted(lambda request: lie)
    with pytest.raises(DigestMismatchError) as caught:
        read(server.url)
    assert "\x1b" not in str(caught.value) and "sha256:\\x1b[2J" in str(caught.value)


def test_a_reader_that_cannot_be_made_leaves_the_reads_to_the_client(monkeypatch) -> None:
    """E.g. no home directory for the token cache: nothing raised where the reader is
    prepared (the lock pack's read starts), and every read goes to the full client."""

    def no_home() -> None:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(direct, "default_token_cache", no_home)
    registry = open_registry("http://127.0.0.1:9/team")
    registry.prepare_direct_read()
    assert registry._direct is None and registry._direct_off


# -- streamed blobs (a large layer, read as it arrives) -----------------------------------------

BLOB = bytes(range(256)) * 3000  # 768,000 bytes
BLOB_PATH = f"/v2/t/m/blobs/{sha256_digest(BLOB)}"


def _stream(registry, blob: bytes = BLOB) -> bytes:
    return b"".join(registry.open_blob("t/m", sha256_digest(blob), len(blob)))


def test_a_large_blob_streams_from_distribution_without_the_http_stack(
    distribution: DistributionServer,
) -> None:
    """A registry opened from its URL streams a layer on the connection its manifest came by;
    in a process of its own, neither httpx nor the client is loaded."""
    import subprocess
    import sys

    layer = bytes(range(251)) * 12_000  # ~3 MB, over what is held in memory
    with HTTPRegistry(distribution.url + "/stream") as full:
        manifest = _push_artifact(full, "big/layer", "v1", layer)
    code = (
        "import sys\n"
        "from bsr_team_cache.oci import open_registry\n"
        f"registry = open_registry({distribution.url + '/stream'!r})\n"
        "manifest = registry.read_manifest('big/layer', 'v1')[0]\n"
        f"data = b''.join(registry.open_blob('big/layer', {sha256_digest(layer)!r}, {len(layer)}))\n"
        f"print(manifest == {manifest!r}, len(data), registry._backend is None,"
        " 'httpx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout == f"True {len(layer)} True False\n", out.stderr
    registry = open_registry(distribution.url + "/stream")
    assert b"".join(registry.open_blob("big/layer", sha256_digest(layer), len(layer))) == layer
    registry.close()


def test_a_streamed_blob_comes_on_the_manifests_connection(scripted) -> None:
    def respond(request: bytes) -> bytes | list[bytes]:
        if request.startswith(f"GET {PATH} ".encode()):
            return manifest_answer()
        head = answer("200 OK", b"", Content_Length=str(len(BLOB)))
        return [head, BLOB[:1000], BLOB[1000:300_000], BLOB[300_000:]]

    server = scripted(respond)
    registry = open_registry(server.url)
    assert registry.read_manifest("t/m", "v1") == (MANIFEST, OCI_MANIFEST)
    assert _stream(registry) == BLOB
    assert [r.split(b"\r\n")[0] for _, r in server.requests] == [
        f"GET {PATH} HTTP/1.1".encode(),
        f"GET {BLOB_PATH} HTTP/1.1".encode(),
    ]
    assert server.connections == 1 and registry._backend is None
    assert _stream(registry) == BLOB  # the connection went back for the next read
    assert server.connections == 1
    registry.close()


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "range-ignored"])
def test_a_direct_stream_cut_short_goes_on_from_the_client_where_it_stopped(
    scripted, ranges: bool
) -> None:
    cut = 200_000

    def respond(request: bytes) -> bytes | list[bytes]:
        asked = header(request, "Range")
        if asked is None:  # the direct read: half the body, then the connection closes
            return [answer("200 OK", b"", Content_Length=str(len(BLOB))), BLOB[:cut], b""]
        if not ranges:
            return answer("200 OK", BLOB)
        start = int(asked.removeprefix("bytes=").removesuffix("-"))
        rest = BLOB[start:]
        return answer(
            "206 Partial Content", rest, Content_Range=f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"
        )

    server = scripted(respond)
    registry = open_registry(server.url)
    assert _stream(registry) == BLOB
    assert [header(r, "Range") for _, r in server.requests] == [None, f"bytes={cut}-"]
    assert registry._direct_off and registry._backend is not None
    registry.close()


@pytest.mark.parametrize(
    "shape",
    ["chunked", "closed", "too-long", "redirect"],
)
def test_a_blob_the_direct_read_cannot_stream_as_is_is_all_the_clients(scripted, shape) -> None:
    """Left to the client before any byte is taken: what it reads is the whole blob."""

    def respond(request: bytes) -> bytes | list[bytes]:
        if request.startswith(b"GET /elsewhere"):
            return answer("200 OK", BLOB)
        if shape == "chunked":
            return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    b"%x\r\n%s\r\n0\r\n\r\n" % (len(BLOB), BLOB)]  # fmt: skip
        if shape == "closed":
            return [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", BLOB, b""]
        if shape == "too-long":  # the direct read refuses it; so does the client
            return answer("200 OK", BLOB + b"more")
        return answer("307 Temporary Redirect", Location=f"{server.url}/elsewhere")

    server = scripted(respond)
    registry = open_registry(server.url)
    if shape == "too-long":
        with pytest.raises(ContentTooLargeError, match=f"larger than {len(BLOB)} bytes"):
            _stream(registry)
    else:
        assert _stream(registry) == BLOB
    assert registry._direct_off and registry._backend is not None
    assert server.requests[0][1].startswith(f"GET {BLOB_PATH} ".encode())
    assert header(server.requests[1][1], "Range") is None  # nothing was taken directly
    registry.close()


def test_a_streamed_blob_that_is_not_its_digest_is_refused_after_its_last_chunk(
    scripted,
) -> None:
    forged = BLOB[:-1] + b"!"
    server = scripted(lambda request: answer("200 OK", forged))
    registry = open_registry(server.url)
    chunks = registry.open_blob("t/m", sha256_digest(BLOB), len(BLOB))
    with pytest.raises(DigestMismatchError) as caught:
        for _ in chunks:
            pass
    where = f"127.0.0.1:{server.port}/t/m"
    assert str(caught.value).startswith(f"{where}: blob {sha256_digest(BLOB)} is corrupt")
    assert registry._backend is None  # a verdict: the client does not ask again
    registry.close()


def test_a_direct_stream_that_stalls_is_given_up_at_the_deadline(scripted) -> None:
    # The first 1,000 bytes of the body, then nothing (the connection stays open).
    server = scripted(
        lambda request: [answer("200 OK", b"", Content_Length=str(len(BLOB))), BLOB[:1000]]
    )
    registry = open_registry(server.url)
    stalled = (
        f"team registry {server.url}: GET blob {sha256_digest(BLOB)}: the deadline passed"
        " (1000 bytes in)"
    )
    with deadline_scope(0.5), pytest.raises(RegistryError, match=re.escape(stalled)):
        _stream(registry)
    assert registry._backend is None  # a verdict, not asked again
    registry.close()


def test_a_direct_stream_below_the_minimum_rate_is_abandoned_after_a_full_window(
    scripted,
) -> None:
    """A window's bytes at once, then nothing: given up when the next window ends empty, not
    at the deadline."""
    server = scripted(
        lambda request: [answer("200 OK", b"", Content_Length=str(len(BLOB))), BLOB[:5000]]
    )
    registry = open_registry(server.url)
    before = limits()
    configure(low_speed_seconds=0.3, low_speed_bytes=1024)
    try:
        slow = "the server sent less than 1024 bytes in 0.3 s: abandoned (5000 bytes in)"
        with deadline_scope(30), pytest.raises(RegistryError, match=re.escape(slow)):
            _stream(registry)
    finally:
        configure(
            low_speed_seconds=before.low_speed_seconds, low_speed_bytes=before.low_speed_bytes
        )
        registry.close()


def test_a_direct_stream_and_its_continuation_share_one_requests_time(
    scripted, monkeypatch
) -> None:
    """The client going on from where a direct stream stopped does not get a deadline of its
    own: a registry cutting every connection short cannot make a layer take twice as long."""
    from bsr_team_cache._deadline import _deadline

    def respond(request: bytes) -> list[bytes]:
        if header(request, "Range") is None:  # the connection closes, the body not all sent
            return [answer("200 OK", b"", Content_Length=str(len(BLOB))), BLOB[:5000], b""]
        rest = BLOB[5000:]
        return [
            answer(
                "206 Partial Content", rest, Content_Range=f"bytes 5000-{len(BLOB) - 1}/{len(BLOB)}"
            )
        ]

    deadlines: list[float] = []
    real = HTTPRegistry._blob_attempts

    def recording(client, *args):
        deadlines.append(_deadline.get())
        yield from real(client, *args)

    monkeypatch.setattr(HTTPRegistry, "_blob_attempts", recording)
    server = scripted(respond)
    registry = open_registry(server.url)
    chunks = registry.open_blob("t/m", sha256_digest(BLOB), len(BLOB))
    first = next(chunks)
    first_came = time.monotonic()
    time.sleep(0.1)  # a continuation's own deadline would end 0.1 s after the direct one's
    assert b"".join([first, *chunks]) == BLOB
    assert [header(r, "Range") for _, r in server.requests] == [None, "bytes=5000-"]
    # The direct stream's deadline, set before its first chunk: not one from the continuation.
    assert len(deadlines) == 1
    assert deadlines[0] <= first_came + limits().request_seconds
    registry.close()


def test_a_direct_stream_failing_in_an_unforeseen_way_goes_on_from_where_it_stopped(
    scripted, monkeypatch
) -> None:
    def respond(request: bytes) -> bytes | list[bytes]:
        asked = header(request, "Range")
        if asked is None:
            head = answer("200 OK", b"", Content_Length=str(len(BLOB)))
            return [head, BLOB[:1000], BLOB[1000:300_000], BLOB[300_000:]]
        start = int(asked.removeprefix("bytes=").removesuffix("-"))
        rest = BLOB[start:]
        return answer(
            "206 Partial Content", rest, Content_Range=f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"
        )

    real_take, calls = direct._Connection.take, []

    def take(conn, most):
        calls.append(most)
        if len(calls) == 3:
            raise RuntimeError("unforeseen")
        return real_take(conn, most)

    monkeypatch.setattr(direct._Connection, "take", take)
    server = scripted(respond)
    registry = open_registry(server.url)
    taken: list[int] = []
    data = b""
    for chunk in registry.open_blob("t/m", sha256_digest(BLOB), len(BLOB)):
        taken.append(len(chunk))
        data += chunk
    assert data == BLOB
    assert header(server.requests[1][1], "Range") == f"bytes={sum(taken[:2])}-"
    registry.close()


def test_closing_the_registry_during_a_direct_stream_does_not_wait_for_it(scripted) -> None:
    server = scripted(
        lambda request: [answer("200 OK", b"", Content_Length=str(len(BLOB))), BLOB[:1000]]
    )
    registry = open_registry(server.url)
    chunks = registry.open_blob("t/m", sha256_digest(BLOB), len(BLOB))
    assert next(chunks) == BLOB[:1000]
    registry.close()  # the stream holds the direct reader: closing leaves it to the stream
    assert registry._direct_off
    chunks.close()  # the stream given up: the reader closes with it
    assert registry._direct._session._idle == {}


# -- a manifest read started early (a lock of one module) ---------------------------------------


def test_a_manifest_read_started_early_is_taken_once_by_the_next_read_of_it(scripted) -> None:
    server = scripted(lambda request: manifest_answer())
    registry = open_registry(server.url)
    registry.start_manifest_read("t/m", "v1")
    assert registry.read_manifest("t/m", "v1") == (MANIFEST, OCI_MANIFEST)
    assert len(server.requests) == 1  # the early read's answer was taken
    assert registry.read_manifest("t/m", "v1") == (MANIFEST, OCI_MANIFEST)
    assert len(server.requests) == 2  # taken once: this read asked again
    registry.start_manifest_read("t/m", "v1")
    assert registry.read_manifest("t/m", "v2") == (MANIFEST, OCI_MANIFEST)  # another reference
    other = open_registry(server.url)
    assert other.read_manifest("t/m", "v1") == (MANIFEST, OCI_MANIFEST)  # another registry
    assert sorted(r.split(b" ")[1] for _, r in server.requests[2:]) == sorted(
        [PATH.encode(), PATH.replace("v1", "v2").encode(), PATH.encode()]
    )  # each asked for itself (the early read, the other reference, the other registry)
    assert registry._early is not None  # still there for the read it was started for
    registry.close()
    other.close()


def test_what_an_early_read_raises_is_raised_where_it_is_taken(scripted) -> None:
    forged = answer("200 OK", MANIFEST, Docker_Content_Digest=sha256_digest(b"other"))
    server = scripted(lambda request: forged)
    registry = open_registry(server.url)
    registry.start_manifest_read("t/m", "v1")
    with pytest.raises(DigestMismatchError):
        registry.read_manifest("t/m", "v1")
    registry.close()


def test_an_early_read_is_waited_for_no_longer_than_the_readers_deadline(scripted) -> None:
    release = threading.Event()

    def stall(request: bytes) -> bytes:
        release.wait(30)
        return manifest_answer()

    server = scripted(stall)
    registry = open_registry(server.url)
    try:
        registry.start_manifest_read("t/m", "v1")
        stalled = f"{server.url}: GET manifest t/m:v1: the deadline passed"
        with deadline_scope(0.3), pytest.raises(RegistryError, match=stalled):
            registry.read_manifest("t/m", "v1")
    finally:
        release.set()
        registry.close()


def test_an_early_read_given_up_on_its_own_sooner_deadline_is_read_again(scripted) -> None:
    """Started within a deadline sooner than the reader's, the early read's "deadline passed"
    is not the reader's: it reads again."""
    first = threading.Event()

    def respond(request: bytes) -> bytes:
        if not first.is_set():
            first.set()
            time.sleep(1.0)  # past the early read's deadline
        return manifest_answer()

    server = scripted(respond)
    registry = open_registry(server.url)
    with deadline_scope(0.3):
        registry.start_manifest_read("t/m", "v1")
    assert registry.read_manifest("t/m", "v1") == (MANIFEST, OCI_MANIFEST)
    assert len(server.requests) == 2
    registry.close()


def test_a_closed_registry_builds_no_client_for_a_read_still_under_way(scripted) -> None:
    server = scripted(lambda request: manifest_answer())
    registry = open_registry(server.url)
    registry.close()
    with pytest.raises(RegistryError, match="the registry was closed"):
        registry.blob_exists("t/m", sha256_digest(b"x"))
    assert registry._backend is None


# -- the first connection, opened ahead ------------------------------------------------------


def _until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    until = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > until:
            return False
        time.sleep(0.005)
    return True


def test_the_first_read_goes_on_the_connection_opened_ahead(scripted) -> None:
    server = scripted(lambda request: manifest_answer())
    registry = open_registry(server.url)
    registry.preconnect()
    assert _until(lambda: server.connections == 1)  # made before any read is asked for
    assert server.requests == []
    assert registry.read_manifest("t/m", "v1") == (MANIFEST, OCI_MANIFEST)
    assert [n for n, _ in server.requests] == [1]
    assert server.connections == 1
    registry.close()


def test_a_connection_opened_ahead_that_the_server_closed_is_not_used() -> None:
    """The server drops the first connection before any request: the read opens another."""
    listener = socket.create_server(("127.0.0.1", 0))
    served: list[bytes] = []

    closed = threading.Event()

    def serve() -> None:
        first, _ = listener.accept()
        first.close()
        closed.set()
        second, _ = listener.accept()
        served.append(second.recv(65536))
        second.sendall(manifest_answer())
        second.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    registry = open_registry(f"http://127.0.0.1:{listener.getsockname()[1]}")
    registry.preconnect()
    assert closed.wait(10)
    assert _until(lambda: registry._preconnected._sock is not None)
    assert registry.read_manifest("t/m", "v1") == (MANIFEST, OCI_MANIFEST)
    thread.join(10)
    assert [r.split(b"\r\n")[0] for r in served] == [f"GET {PATH} HTTP/1.1".encode()]
    assert registry._backend is None  # read directly, on the new connection
    registry.close()
    listener.close()


def test_a_connection_that_cannot_be_opened_ahead_leaves_the_read_to_the_full_client(
    scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct read does not try again what failed ahead (a host that cannot be reached
    would cost its time twice): the full client asks, and retries and reports as always."""
    server = scripted(lambda request: manifest_answer())
    attempts: list[tuple[str, str, int]] = []

    def failing(key, tls):
        attempts.append(key)
        raise _connect.CannotConnect("cannot connect (refused)")

    monkeypatch.setattr(_connect, "open_connection", failing)
    monkeypatch.setattr(direct, "open_connection", failing)
    registry = open_registry(server.url)
    registry.preconnect()
    assert registry.read_manifest("t/m", "v1") == (MANIFEST, OCI_MANIFEST)
    assert attempts == [("http", "127.0.0.1", server.port)]  # tried once, ahead
    assert registry._backend is not None and server.connections == 1  # the client's
    registry.close()


def test_a_tls_connection_opened_ahead_is_used_after_the_servers_session_tickets(
    scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS 1.3 server sends session tickets right after the handshake, unasked: the
    connection is still a fresh one, and the first read goes on it."""
    files = ensure_tls_files(tmp_path / "tls", ["localhost", "127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(files.server_cert, files.server_key)
    server = scripted(lambda request: manifest_answer(), tls=context)
    monkeypatch.setenv("SSL_CERT_FILE", str(files.ca_cert))
    registry = open_registry(server.url)
    registry.preconnect()
    assert _until(lambda: registry._preconnected._sock is not None)  # handshake done
    sock = registry._preconnected._sock
    assert _until(lambda: bool(select.select([sock], [], [], 0)[0]))  # the tickets are in
    assert registry.read_manifest("t/m", "v1") == (MANIFEST, OCI_MANIFEST)
    assert server.connections == 1 and registry._backend is None
    registry.close()


def test_nothing_is_opened_ahead_where_a_proxy_is_configured(
    scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = scripted(lambda request: manifest_answer())
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    registry = open_registry(server.url)
    registry.preconnect()
    assert registry._preconnected is None
    time.sleep(0.2)
    assert server.connections == 0
    registry.close()


def test_a_connection_opened_ahead_and_never_used_is_closed_with_the_registry() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    registry = open_registry(f"http://127.0.0.1:{listener.getsockname()[1]}")
    registry.preconnect()
    listener.settimeout(10)
    accepted, _ = listener.accept()
    accepted.settimeout(10)
    assert _until(lambda: registry._preconnected._sock is not None)  # its handshake is done
    registry.close()
    assert accepted.recv(1) == b""  # closed by us, nothing sent
    accepted.close()
    listener.close()
