"""The production shape of the team registry, with real processes: CNCF Distribution with
htpasswd auth, storing in S3 (moto on loopback), blob GETs redirected to presigned URLs.

Member A fetches cold from the dev BSR and publishes; the BSR is stopped; member B, with an
empty store and buf cache, gets everything from the team registry and builds offline. The
storage server's request log then shows that B's blobs came straight from the storage host
through presigned URLs, and that no registry credential ever reached it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote

import httpx
import pytest

from bsr_team_cache.domain.buflock import read_buf_lock
from bsr_team_cache.oci.artifact import module_repository
from bsr_team_cache.oci.devregistry import DistributionServer, S3StorageServer, find_distribution
from tests.bsr.test_real_buf import make_project
from tests.conftest import SHOP_DEP_CLOSURE, run_cli, start_dev_bsr

pytestmark = pytest.mark.slow

TEAM = "platform-team"
NAMESPACE = "platform"
USERNAME = f"ci-bot-{secrets.token_hex(6)}"
PASSWORD = secrets.token_urlsafe(24)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def s3_registry(tmp_path: Path) -> Iterator[DistributionServer]:
    if find_distribution() is None:
        pytest.fail("docker-registry is missing: apt-get install docker-registry (see .ci/run)")
    storage = S3StorageServer(tmp_path / "storage-requests.jsonl").start()
    registry = DistributionServer(tmp_path / "registry", htpasswd={USERNAME: PASSWORD}, s3=storage)
    try:
        yield registry.start()
    finally:
        registry.stop()
        storage.stop()


def _fetch(project: Path, registry: str, member: Path, ca: Path, *extra: str):
    """`bsr-team-cache fetch --json` as a member's machine runs it, credentials from the env."""
    env = {
        "SSL_CERT_FILE": str(ca),
        "BUF_CACHE_DIR": str(member / "buf-cache"),
        "BSR_TEAM_CACHE_DIR": str(member / "store"),
        "BSR_TEAM_CACHE_REGISTRY_USERNAME": USERNAME,
        "BSR_TEAM_CACHE_REGISTRY_PASSWORD": PASSWORD,
    }
    args = ["fetch", str(project), "--team", TEAM, "--registry", registry, "--json", *extra]
    return run_cli(*args, env=env)


def _hits(result: subprocess.CompletedProcess) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["hits"]


def _needed_blobs(registry: DistributionServer, deps) -> dict[str, list[str]]:
    """Per repository, the blobs a reader must download for these artifacts: every layer, and
    the config unless it is embedded in its descriptor. Read with plain httpx, not the client
    under test."""
    needed = {}
    for dep in deps:
        name = f"{NAMESPACE}/{module_repository(TEAM, dep.module)}"
        resp = httpx.get(
            f"{registry.url}/v2/{name}/manifests/{dep.commit}",
            headers={"Accept": OCI_MANIFEST},
            auth=(USERNAME, PASSWORD),
            follow_redirects=False,
        )
        assert resp.status_code == 200, resp.text
        manifest = resp.json()
        needed[name] = [layer["digest"] for layer in manifest["layers"]]
        if "data" not in manifest["config"]:
            needed[name].append(manifest["config"]["digest"])
    return needed


def test_member_b_downloads_blobs_from_storage_and_no_credential_reaches_it(
    sample_data, tmp_path, buf_bin, s3_registry: DistributionServer, monkeypatch
):
    storage = s3_registry.s3
    assert storage is not None
    # Credentials come from BSR_TEAM_CACHE_REGISTRY_* only: no docker config on this "machine".
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))
    monkeypatch.delenv("BUF_TOKEN", raising=False)
    url = f"{s3_registry.url}/{NAMESPACE}"

    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    ca = server.ca_cert
    try:
        project_a = make_project(tmp_path / "a", server.host)
        cold = _fetch(project_a, url, tmp_path / "member-a", ca, "--update-lock")
        assert _hits(cold) == {"local": 0, "team": 0, "bsr": len(SHOP_DEP_CLOSURE)}
        assert all(m["published"] for m in json.loads(cold.stdout)["modules"])
        assert server.count("Download") == 1
    finally:
        server.stop()
    lock = read_buf_lock(project_a / "buf.lock")
    assert len(lock.deps) == len(SHOP_DEP_CLOSURE)

    # What A published lives in the bucket, not on the registry's disk.
    by_repo = _needed_blobs(s3_registry, lock.deps)
    needed = sorted(d for digests in by_repo.values() for d in digests)
    assert len(needed) == len(set(needed)) == len(SHOP_DEP_CLOSURE)  # one layer per module
    assert set(needed) <= set(s3_registry.blob_digests())
    assert not s3_registry.storage.exists()
    # The registry gates the presigned URLs: an anonymous blob GET is refused, not redirected.
    name, digests = next(iter(by_repo.items()))
    anonymous = httpx.get(f"{s3_registry.url}/v2/{name}/blobs/{digests[0]}")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    with_password = httpx.get(
        f"{s3_registry.url}/v2/{name}/blobs/{digests[0]}", auth=(USERNAME, PASSWORD)
    )
    assert with_password.status_code == 307
    assert with_password.headers["Location"].startswith(f"{storage.endpoint}/{storage.bucket}/")

    # Member B: another checkout with A's buf.lock, empty store and buf cache, the BSR is gone.
    project_b = make_project(tmp_path / "b", server.host)
    (project_b / "buf.lock").write_text((project_a / "buf.lock").read_text())
    member_b = tmp_path / "member-b"
    before = len(storage.requests())
    warm = _fetch(project_b, url, member_b, ca)
    during_b = storage.requests()[before:]
    assert _hits(warm) == {"local": 0, "team": len(SHOP_DEP_CLOSURE), "bsr": 0}
    built = subprocess.run(
        [buf_bin, "build", "-o", os.devnull],
        cwd=project_b,
        env={**os.environ, "BUF_CACHE_DIR": str(member_b / "buf-cache"), "SSL_CERT_FILE": str(ca)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr

    # (a) B's blob downloads went to the storage host, through presigned URLs: exactly one
    # GET per blob B needed, each answered there, none carrying an Authorization header.
    blob_data = re.compile(
        rf"^/{re.escape(storage.bucket)}/docker/registry/v2/blobs/sha256/"
        r"(?P<prefix>[0-9a-f]{2})/(?P<hex>[0-9a-f]{64})/data$"
    )
    presigned = [r for r in during_b if "X-Amz-Signature" in parse_qs(r["query"])]
    downloaded = []
    for request in presigned:
        assert request["method"] == "GET", request
        match = blob_data.match(request["path"])
        assert match and match["hex"].startswith(match["prefix"]), request["path"]
        downloaded.append(f"sha256:{match['hex']}")
        assert request["status"] == 200, request
        assert request["headers"]["Host"] == f"127.0.0.1:{storage.port}"
        assert request["headers"]["User-Agent"].startswith("bsr-team-cache/")
        assert "Authorization" not in request["headers"]
        query = parse_qs(request["query"])
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Credential"][0].startswith(f"{storage.access_key}/")
    assert sorted(downloaded) == needed

    # (b) No registry credential reached the storage host, during A's fetch, B's or anything
    # else: every request there is either presigned (no Authorization) or signed with SigV4
    # with the storage key (by Distribution, and by this test's boto3 calls to the bucket).
    basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    forbidden = (USERNAME, PASSWORD, basic)
    scheme = re.compile(r"\b(basic|bearer)\s", re.IGNORECASE)
    everything = storage.requests()
    sigv4 = f"AWS4-HMAC-SHA256 Credential={storage.access_key}/"
    for request in everything:
        authorization = request["headers"].get("Authorization")
        if authorization is None:
            assert "X-Amz-Signature" in parse_qs(request["query"]), request
        else:
            assert authorization.startswith(sigv4), request
    for request in everything:
        texts = [
            *request["headers"].values(),
            request["path"],
            request["query"],
            unquote(request["query"]),
        ]
        for text in texts:
            assert not scheme.search(text), request
            for secret in forbidden:
                assert secret not in text, request
