"""The HTTP registry client against a real CNCF Distribution on loopback."""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from pathlib import Path

import httpx
import pytest

from bsr_team_cache.errors import DigestMismatchError, RegistryError, UsageError
from bsr_team_cache.oci import open_registry
from bsr_team_cache.oci.base import OCI_INDEX, OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.credentials import Credentials
from bsr_team_cache.oci.devregistry import DistributionServer, TokenService
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.tokens import TOKEN_CACHE_FILE, TokenCache, parse_challenge


def _repo() -> str:
    return f"t/{uuid.uuid4().hex[:10]}"


def _manifest(config: bytes, layer: bytes) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.test.v1",
            "config": {
                "mediaType": "application/vnd.test.config.v1+json",
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.test.layer.v1",
                    "digest": sha256_digest(layer),
                    "size": len(layer),
                }
            ],
        },
        indent=3,  # unusual formatting: the registry must keep our exact bytes
    ).encode()


def _push_artifact(reg: HTTPRegistry, repo: str, tag: str, layer: bytes) -> bytes:
    config = b'{"k": "v"}'
    for blob in (config, layer):
        reg.push_blob(repo, blob, sha256_digest(blob))
    manifest = _manifest(config, layer)
    assert reg.push_manifest(repo, tag, manifest, OCI_MANIFEST) == sha256_digest(manifest)
    return manifest


def test_blobs_manifests_tags_round_trip(distribution: DistributionServer, tmp_path: Path) -> None:
    repo = _repo()
    with HTTPRegistry(distribution.url) as reg:
        reg.ping()
        layer = os.urandom(300_000)
        assert not reg.blob_exists(repo, sha256_digest(layer))
        manifest = _push_artifact(reg, repo, "v1", layer)
        assert reg.blob_exists(repo, sha256_digest(layer))
        assert reg.read_blob(repo, sha256_digest(layer)) == layer
        size = reg.read_blob_to(repo, sha256_digest(layer), tmp_path / "out" / "layer")
        assert size == len(layer) and (tmp_path / "out" / "layer").read_bytes() == layer
        assert reg.read_manifest(repo, "v1") == (manifest, OCI_MANIFEST)
        assert reg.read_manifest(repo, sha256_digest(manifest)) == (manifest, OCI_MANIFEST)
        assert reg.read_manifest(repo, "nope") is None
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": sha256_digest(manifest),
                        "size": len(manifest),
                    }
                ],
            }
        ).encode()
        reg.push_manifest(repo, "all", index, OCI_INDEX)
        assert reg.read_manifest(repo, "all") == (index, OCI_INDEX)
        reg.delete_manifest(repo, sha256_digest(index))
        assert reg.read_manifest(repo, sha256_digest(index)) is None


def test_tags_are_paginated(distribution: DistributionServer) -> None:
    repo = _repo()
    with HTTPRegistry(distribution.url) as reg:
        config = b"{}"
        reg.push_blob(repo, config, sha256_digest(config))
        for i in range(7):
            manifest = _manifest(config, config).replace(b"}", b"}" + b" " * i, 1)
            reg.push_manifest(repo, f"tag{i}", manifest, OCI_MANIFEST)
        tags = reg.list_tags(repo, page_size=2)
        assert sorted(tags) == sorted(f"tag{i}" for i in range(7)), tags
        assert reg.list_tags(_repo()) == []


def test_large_blob_streams_both_ways_in_chunks(
    distribution: DistributionServer, tmp_path: Path
) -> None:
    repo = _repo()
    source = tmp_path / "big"
    source.write_bytes(os.urandom(3 * (1 << 20) + 12345))
    digest = sha256_digest(source.read_bytes())
    with HTTPRegistry(distribution.url, chunk_threshold=1 << 20, chunk_size=1 << 20) as reg:
        reg.push_blob_file(repo, source, digest)
        assert reg.read_blob_to(repo, digest, tmp_path / "back") == source.stat().st_size
    assert (tmp_path / "back").read_bytes() == source.read_bytes()


def test_cross_repository_mount(distribution: DistributionServer) -> None:
    source, target = _repo(), _repo()
    blob = os.urandom(1000)
    with HTTPRegistry(distribution.url) as reg:
        reg.push_blob(source, blob, sha256_digest(blob))
        assert reg.mount_blob(target, sha256_digest(blob), source) is True
        assert reg.read_blob(target, sha256_digest(blob)) == blob
        # Unknown in the source: the registry opens an upload instead (202) -> False.
        other = os.urandom(10)
        assert reg.mount_blob(target, sha256_digest(other), source) is False
    blobs, _ = distribution.blob_count()
    assert blobs >= 1


def test_tampered_blob_is_detected_and_never_materialized(
    distribution: DistributionServer, tmp_path: Path
) -> None:
    repo = _repo()
    blob = os.urandom(5000)
    digest = sha256_digest(blob)
    with HTTPRegistry(distribution.url) as reg:
        reg.push_blob(repo, blob, digest)
        stored = next(p for p in distribution.storage.rglob("data") if p.parent.name == digest[7:])
        stored.chmod(stat.S_IWUSR | stat.S_IRUSR)
        stored.write_bytes(bytes([blob[0] ^ 0xFF]) + blob[1:])  # its first byte, whatever it was
        with pytest.raises(DigestMismatchError, match="corrupt"):
            reg.read_blob(repo, digest)
        with pytest.raises(DigestMismatchError, match="corrupt"):
            reg.read_blob_to(repo, digest, tmp_path / "blob")
    assert list(tmp_path.iterdir()) == []


class _FlakyTransport(httpx.HTTPTransport):
    """The real transport to the real registry, after ``failures`` injected answers."""

    def __init__(self, failures: list[int]) -> None:
        super().__init__()
        self.failures = failures
        self.seen = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        if self.failures:
            status = self.failures.pop(0)
            return httpx.Response(status, headers={"Retry-After": "0"}, request=request)
        return super().handle_request(request)


def test_retries_5xx_and_429_then_gives_up(distribution: DistributionServer) -> None:
    sleeps: list[float] = []
    flaky = _FlakyTransport([503, 429, 502])
    with HTTPRegistry(distribution.url, transport=flaky, sleep=sleeps.append) as reg:
        reg.ping()
        assert len(sleeps) == 3
    flaky = _FlakyTransport([503] * 10)
    with (
        HTTPRegistry(distribution.url, transport=flaky, sleep=lambda s: None) as reg,
        pytest.raises(RegistryError, match="gave up after 4 attempts"),
    ):
        reg.ping()


def test_plain_http_only_for_loopback() -> None:
    with pytest.raises(UsageError, match="--insecure"):
        HTTPRegistry("http://registry.example.com/team")
    HTTPRegistry("http://registry.example.com/team", insecure=True).close()
    reg = HTTPRegistry("oci://registry.example.com/acme/cache")
    assert reg.base == "https://registry.example.com" and reg.namespace == "acme/cache"
    reg.close()
    with pytest.raises(UsageError, match="unknown scheme"):
        open_registry("ftp://x/y")


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory):
    server = DistributionServer(
        tmp_path_factory.mktemp("htpasswd"), htpasswd={"alice": "s3cret"}
    ).start()
    yield server
    server.stop()


def test_basic_auth(htpasswd_registry: DistributionServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("BSR_TEAM_CACHE_REGISTRY_USERNAME", raising=False)
    repo = _repo()
    with HTTPRegistry(htpasswd_registry.url, credentials=Credentials("alice", "s3cret")) as reg:
        _push_artifact(reg, repo, "v1", b"layer")
        assert reg.list_tags(repo) == ["v1"]
    with (
        HTTPRegistry(htpasswd_registry.url) as anonymous,
        pytest.raises(RegistryError, match="docker login"),
    ):
        anonymous.ping()
    bad = HTTPRegistry(htpasswd_registry.url, credentials=Credentials("alice", "wrong"))
    with bad, pytest.raises(RegistryError, match="not authorized"):
        bad.ping()


def test_credentials_from_docker_config(
    htpasswd_registry: DistributionServer, tmp_path: Path, monkeypatch
) -> None:
    import base64

    monkeypatch.delenv("BSR_TEAM_CACHE_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    host = htpasswd_registry.url.removeprefix("http://")
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    auth = base64.b64encode(b"alice:s3cret").decode()
    (config_dir / "config.json").write_text(
        json.dumps({"auths": {f"http://{host}": {"auth": auth}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    with HTTPRegistry(htpasswd_registry.url) as reg:
        reg.ping()
    # A credential helper wins over auths, as in docker.
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread host\n"
        'echo "{\\"ServerURL\\": \\"$host\\", \\"Username\\": \\"alice\\", \\"Secret\\": \\"s3cret\\"}"\n'
    )
    helper.chmod(0o755)
    (config_dir / "config.json").write_text(
        json.dumps(
            {
                "auths": {host: {"auth": base64.b64encode(b"alice:nope").decode()}},
                "credHelpers": {host: "fake"},
            }
        )
    )
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    with HTTPRegistry(htpasswd_registry.url) as reg:
        reg.ping()
    (config_dir / "config.json").write_text("{not json")
    with (
        HTTPRegistry(htpasswd_registry.url) as reg,
        pytest.raises(Exception, match=r"config\.json: not readable as JSON"),
    ):
        reg.ping()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory):
    def rule(user: str, name: str, actions: list[str]) -> list[str]:
        # Each user may write only under teams/<user>/; everyone may read everything.
        if name.startswith(f"teams/{user}/"):
            return actions
        return [a for a in actions if a == "pull"]

    tokens = TokenService(users={"payments": "pw1", "search": "pw2"}, rule=rule)
    server = DistributionServer(tmp_path_factory.mktemp("token"), token_service=tokens).start()
    yield server
    server.stop()


def test_bearer_token_flow_with_scopes(token_registry: DistributionServer) -> None:
    tokens = token_registry.token_service
    assert tokens is not None
    repo = "teams/payments/deps/x"
    with HTTPRegistry(token_registry.url, credentials=Credentials("payments", "pw1")) as reg:
        _push_artifact(reg, repo, "v1", b"payload")
        assert reg.read_manifest(repo, "v1") is not None
        requested = [a for t in tokens.issued for a in t["access"]]
        assert {"type": "repository", "name": repo, "actions": ["pull", "push"]} in requested
        issued_before = len(tokens.issued)
        for _ in range(3):  # tokens are cached per scope
            reg.blob_exists(repo, sha256_digest(b"payload"))
        assert len(tokens.issued) == issued_before
    with HTTPRegistry(token_registry.url, credentials=Credentials("search", "pw2")) as other:
        assert other.read_blob(repo, sha256_digest(b"payload")) == b"payload"
        with pytest.raises(RegistryError, match=r"not authorized|access denied"):
            other.push_blob(repo, b"evil", sha256_digest(b"evil"))
    bad = HTTPRegistry(token_registry.url, credentials=Credentials("search", "bad"))
    with bad, pytest.raises(RegistryError, match="refused the credentials"):
        bad.read_manifest(repo, "v1")


def test_a_refused_cached_token_is_replaced(token_registry: DistributionServer) -> None:
    tokens = token_registry.token_service
    assert tokens is not None
    repo = "teams/payments/deps/refresh"
    with HTTPRegistry(token_registry.url, credentials=Credentials("payments", "pw1")) as reg:
        _push_artifact(reg, repo, "v1", b"data")
        key = f"repository:{repo}:pull"
        reg._tokens[key] = ("not-a-valid-token", float("inf"))  # e.g. revoked server-side
        assert reg.read_manifest(repo, "v1") is not None
        assert reg._tokens[key][0] != "not-a-valid-token"


class _RecordingTransport(httpx.HTTPTransport):
    """The real transport; records each answer's (host:port, status)."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.answers.append((f"{request.url.host}:{request.url.port}", response.status_code))
        return response


def _pull_all(reg: HTTPRegistry, repos: list[str]) -> None:
    for repo in repos:
        assert reg.read_manifest(repo, "v1") is not None


PAYMENTS = Credentials("payments", "pw1")


def _token_cached(
    registry: DistributionServer, directory: Path, repo: str, layer: bytes
) -> tuple[TokenService, TokenCache]:
    """The token service, and a cache in ``directory`` holding the token of one pull of
    ``repo`` (pushed first, holding ``layer``) by the payments user."""
    tokens = registry.token_service
    assert tokens is not None
    with HTTPRegistry(registry.url, credentials=PAYMENTS) as writer:
        _push_artifact(writer, repo, "v1", layer)
    cache = TokenCache(directory)
    with HTTPRegistry(registry.url, credentials=PAYMENTS, token_cache=cache) as first:
        _pull_all(first, [repo])
    return tokens, cache


def test_tokens_are_shared_across_clients_through_the_token_cache(
    token_registry: DistributionServer, tmp_path: Path
) -> None:
    """A fetch of N modules asks for N tokens (one per repository scope); the next process,
    with the same cache, asks for none and is never challenged."""
    tokens = token_registry.token_service
    assert tokens is not None
    repos = [f"teams/payments/deps/shared{i}" for i in range(3)]
    with HTTPRegistry(token_registry.url, credentials=Credentials("payments", "pw1")) as writer:
        for repo in repos:
            _push_artifact(writer, repo, "v1", repo.encode())
    cache = TokenCache(tmp_path / "store")
    login = Credentials("payments", "pw1")
    before = len(tokens.issued)
    with HTTPRegistry(token_registry.url, credentials=login, token_cache=cache) as first:
        _pull_all(first, repos)
    assert len(tokens.issued) - before == 3
    transport = _RecordingTransport()
    registry = token_registry.url.removeprefix("http://")
    with HTTPRegistry(
        token_registry.url, credentials=login, token_cache=cache, transport=transport
    ) as second:
        _pull_all(second, repos)
    assert len(tokens.issued) - before == 3
    assert transport.answers == [(registry, 200)] * 3  # no 401, no token service request
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert b"pw1" not in cache.path.read_bytes()
    # Another user with the same cache directory gets a token of their own.
    with HTTPRegistry(
        token_registry.url, credentials=Credentials("search", "pw2"), token_cache=cache
    ) as other:
        _pull_all(other, repos[:1])
    assert [t["user"] for t in tokens.issued[before:]] == ["payments"] * 3 + ["search"]


def test_an_expiring_cached_token_is_not_used(
    token_registry: DistributionServer, tmp_path: Path
) -> None:
    repo = "teams/payments/deps/expiring"
    tokens, _ = _token_cached(token_registry, tmp_path / "store", repo, b"x")
    # The same file, read 290 s later: the token (300 s, kept until 10 s before its end)
    # has less than the 30 s reuse margin left.
    later = TokenCache(tmp_path / "store", clock=lambda: time.time() + 290)
    before = len(tokens.issued)
    with HTTPRegistry(token_registry.url, credentials=PAYMENTS, token_cache=later) as second:
        _pull_all(second, [repo])
    assert len(tokens.issued) - before == 1


def test_a_refused_cached_token_leaves_the_cache(
    token_registry: DistributionServer, tmp_path: Path
) -> None:
    repo = "teams/payments/deps/refused"
    tokens, cache = _token_cached(token_registry, tmp_path / "store", repo, b"y")
    # A token the registry no longer accepts (e.g. signed by a key it stopped trusting).
    data = json.loads(cache.path.read_text())
    (entry,) = data["tokens"].values()
    entry["token"] = "not-a-valid-token"
    cache.path.write_text(json.dumps(data))
    before = len(tokens.issued)
    with HTTPRegistry(token_registry.url, credentials=PAYMENTS, token_cache=cache) as second:
        _pull_all(second, [repo])
    assert len(tokens.issued) - before == 1
    (entry,) = json.loads(cache.path.read_text())["tokens"].values()
    assert entry["token"] != "not-a-valid-token"


def test_a_token_cache_readable_by_others_is_ignored(
    token_registry: DistributionServer, tmp_path: Path
) -> None:
    repo = "teams/payments/deps/mode"
    tokens, cache = _token_cached(token_registry, tmp_path / "store", repo, b"z")
    cache.path.chmod(0o644)
    before = len(tokens.issued)
    with HTTPRegistry(token_registry.url, credentials=PAYMENTS, token_cache=cache) as second:
        _pull_all(second, [repo])
    assert len(tokens.issued) - before == 1
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600  # rewritten, private again


def test_the_users_own_credentials_cache_tokens_in_the_local_store(
    token_registry: DistributionServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = token_registry.token_service
    assert tokens is not None
    repo = "teams/payments/deps/default-cache"
    with HTTPRegistry(token_registry.url, credentials=Credentials("payments", "pw1")) as writer:
        _push_artifact(writer, repo, "v1", b"w")
    store = tmp_path / "local-store"
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(store))
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_USERNAME", "payments")
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_PASSWORD", "pw1")
    before = len(tokens.issued)
    for _ in range(2):  # two processes, as two `fetch` runs
        with HTTPRegistry(token_registry.url) as reg:
            _pull_all(reg, [repo])
    assert len(tokens.issued) - before == 1
    assert stat.S_IMODE((store / TOKEN_CACHE_FILE).stat().st_mode) == 0o600
    # Credentials handed to the client (a service's own identity): memory only.
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(elsewhere))
    with HTTPRegistry(token_registry.url, credentials=Credentials("payments", "pw1")) as reg:
        _pull_all(reg, [repo])
    assert not elsewhere.exists()


class _CuttingTransport(httpx.HTTPTransport):
    """The real transport; the first blob GET loses its connection after ``cut`` bytes."""

    def __init__(self, cut: int) -> None:
        super().__init__()
        self.cut = cut
        self.ranges: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method != "GET" or "/blobs/" not in request.url.path:
            return response
        self.ranges.append(request.headers.get("Range"))
        if len(self.ranges) > 1:
            return response
        inner, cut = response.stream, self.cut

        class Cut(httpx.SyncByteStream):
            def __iter__(self):
                sent = 0
                for chunk in inner:
                    if sent + len(chunk) >= cut:
                        yield chunk[: cut - sent]
                        raise httpx.ReadError("connection reset by peer")
                    sent += len(chunk)
                    yield chunk

            def close(self) -> None:
                inner.close()

        return httpx.Response(
            response.status_code, headers=response.headers, stream=Cut(), request=request
        )


def test_interrupted_download_resumes_with_range(
    distribution: DistributionServer, tmp_path: Path
) -> None:
    repo = _repo()
    blob = os.urandom(3_000_000)
    digest = sha256_digest(blob)
    with HTTPRegistry(distribution.url) as reg:
        reg.push_blob(repo, blob, digest)
    cutting = _CuttingTransport(1_234_567)
    with HTTPRegistry(distribution.url, transport=cutting, sleep=lambda s: None) as reg:
        assert reg.read_blob_to(repo, digest, tmp_path / "blob") == len(blob)
    assert (tmp_path / "blob").read_bytes() == blob
    # Resumed from what had been written (whole blocks), not from the start.
    first, resumed = cutting.ranges
    assert first is None and resumed is not None
    offset = int(resumed.removeprefix("bytes=").rstrip("-"))
    assert offset == 1 << 20  # the one whole 1 MiB block written before the cut


class _LostAnswerTransport(httpx.HTTPTransport):
    """The real transport; the registry takes the second chunk but its answer is lost (502),
    so the client sends the chunk again and the registry refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = 0
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "PATCH":
            self.patches += 1
            if self.patches == 2:
                response.read()
                return httpx.Response(502, request=request)
            self.statuses.append(response.status_code)
        return response


def test_chunked_upload_recovers_from_a_lost_answer(
    distribution: DistributionServer, tmp_path: Path
) -> None:
    repo = _repo()
    source = tmp_path / "big"
    source.write_bytes(os.urandom(4 * (1 << 20) + 99))
    digest = sha256_digest(source.read_bytes())
    lost = _LostAnswerTransport()
    with HTTPRegistry(
        distribution.url,
        transport=lost,
        chunk_threshold=1 << 20,
        chunk_size=1 << 20,
        sleep=lambda s: None,
    ) as reg:
        reg.push_blob_file(repo, source, digest)
    # The repeated chunk was refused; the upload went on (Distribution: in a new session).
    assert any(status >= 400 for status in lost.statuses)
    with HTTPRegistry(distribution.url) as reg:
        assert reg.read_blob(repo, digest) == source.read_bytes()


def test_upload_offset_from_the_range_header() -> None:
    from bsr_team_cache.oci.http import _upload_offset

    assert _upload_offset(httpx.Response(204, headers={"Range": "0-1048575"})) == 1048576
    assert _upload_offset(httpx.Response(204, headers={"Range": "bytes=0-9"})) == 10
    assert _upload_offset(httpx.Response(204)) == 0
