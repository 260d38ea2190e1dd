"""An encrypted team end to end, through the CLI, on a real Distribution: what the registry
stores is ciphertext, member B fetches and builds offline with their key, a member without a
key is told what to do, and adding a member re-wraps the layer keys without re-uploading."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest

from bsr_team_cache.oci.devregistry import DistributionServer
from tests.bsr.test_real_buf import make_project
from tests.conftest import run_cli, start_dev_bsr
from tests.team.test_fetch import _buf_build, _hits

pytestmark = pytest.mark.slow


def _holds_proto_text(blob: bytes) -> bool:
    """Whether a blob carries .proto source, as it is or inside a gzip stream (a layer)."""
    texts = [blob]
    if blob[:2] == b"\x1f\x8b":
        texts.append(gzip.decompress(blob))
    return any(b"syntax = " in t or b"\nmessage " in t or b"\npackage " in t for t in texts)


def _module_tags(registry: str, project: Path) -> dict[str, str]:
    """The manifest digest each module repository holds for its locked commit."""
    from bsr_team_cache.domain.buflock import read_buf_lock
    from bsr_team_cache.oci import open_registry
    from bsr_team_cache.oci.artifact import module_repository
    from bsr_team_cache.oci.base import sha256_digest

    reg, ns = open_registry(registry), registry.rsplit("/", 1)[1]
    out = {}
    for dep in read_buf_lock(project / "buf.lock").deps:
        found = reg.read_manifest(module_repository("secret", dep.module), dep.commit)
        assert found is not None, (ns, dep.module)
        out[str(dep.module)] = sha256_digest(found[0])
    return out


def _keys(tmp_path: Path, member: str) -> Path:
    out = tmp_path / "keys" / member
    done = run_cli("keys", "generate", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def distribution(tmp_path: Path):
    """A registry of its own: its storage is scanned for plain text."""
    server = DistributionServer(tmp_path / "registry").start()
    yield server
    server.stop()


def test_an_encrypted_team(
    sample_data, tmp_path: Path, buf_bin: str, distribution: DistributionServer
) -> None:
    registry = f"{distribution.url}/e{uuid.uuid4().hex[:8]}"
    keys = {m: _keys(tmp_path, m) for m in ("alice", "bob", "carol")}

    def env(member: str, *, key: bool = True) -> dict[str, str]:
        values = {
            "SSL_CERT_FILE": str(server.ca_cert),
            "BSR_TEAM_CACHE_REGISTRY": registry,
            "BSR_TEAM_CACHE_TEAM": "secret",
            "BSR_TEAM_CACHE_MEMBER": member,
            "BSR_TEAM_CACHE_DIR": str(tmp_path / member / "store"),
            "BUF_CACHE_DIR": str(tmp_path / member / "buf-cache"),
        }
        if key:
            values["BSR_TEAM_CACHE_PRIVATE_KEY_FILE"] = str(keys[member] / "encryption.pem")
        return values

    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    try:
        done = run_cli(
            "setup", "--members", "bob", "--encrypt",
            "--encryption-key", f"alice={keys['alice'] / 'encryption.pub.pem'}",
            "--encryption-key", f"bob={keys['bob'] / 'encryption.pub.pem'}",
            env=env("alice"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "encryption: on, for 2 member key(s)" in done.stdout
        project_a = make_project(tmp_path / "a", server.host)
        cold = run_cli("fetch", str(project_a), "--update-lock", "--json", env=env("alice"))
        assert _hits(cold) == {"local": 0, "team": 0, "bsr": 6}
        assert all(m["published"] for m in json.loads(cold.stdout)["modules"])
        bundled = run_cli(
            "bundle", "--name", "shop", "--deps", f"{server.host}/acme/pets", env=env("alice")
        )
        assert bundled.returncode == 0, bundled.stderr

        # carol has no key, then a key that is not a recipient: told what to do, served by
        # the BSR, and what the registry holds for the team is left alone (not overwritten
        # by a copy of her own).
        project_c = make_project(tmp_path / "c", server.host)
        (project_c / "buf.lock").write_text((project_a / "buf.lock").read_text())
        tags = _module_tags(registry, project_a)
        for key, told in (
            (False, "the team encrypts its modules: set BSR_TEAM_CACHE_PRIVATE_KEY_FILE"),
            (True, "ask a team admin to add your public key"),
        ):
            scratch = tmp_path / f"carol-{key}"
            outsider = {
                **env("carol", key=key),
                "BSR_TEAM_CACHE_DIR": str(scratch / "s"),
                "BUF_CACHE_DIR": str(scratch / "b"),
            }
            served = run_cli("fetch", str(project_c), "--json", env=outsider)
            assert _hits(served) == {"local": 0, "team": 0, "bsr": 6}
            assert told in served.stderr
            assert not any(m["published"] for m in json.loads(served.stdout)["modules"])
        assert _module_tags(registry, project_a) == tags
    finally:
        server.stop()

    # What the registry stores holds no module text: every blob is ciphertext or metadata.
    proto_texts = [p.read_bytes() for p in (sample_data).rglob("*.proto") if p.stat().st_size > 200]
    assert len(proto_texts) >= 6
    stored = [
        p.read_bytes() for p in (distribution.storage / "docker/registry/v2/blobs").rglob("data")
    ]
    assert not any(b'syntax = "proto3"' in blob for blob in stored)
    assert not any(text[:200] in blob for text in proto_texts for blob in stored)

    # Member B: another checkout, an empty store and buf cache, the BSR gone: builds offline.
    project_b = make_project(tmp_path / "b", server.host)
    (project_b / "buf.lock").write_text((project_a / "buf.lock").read_text())
    warm = run_cli("fetch", str(project_b), "--json", env=env("bob"))
    assert _hits(warm) == {"local": 0, "team": 6, "bsr": 0}
    built = _buf_build(buf_bin, project_b, tmp_path / "bob", server.ca_cert)
    assert built.returncode == 0, built.stderr

    # alice adds carol: the layer keys are re-wrapped (manifests change, blobs do not).
    blobs_before = distribution.blob_digests()
    added = run_cli(
        "setup", "--encryption-key", f"carol={keys['carol'] / 'encryption.pub.pem'}",
        "--members", "carol", env=env("alice"),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    new_blobs = set(distribution.blob_digests()) - set(blobs_before)
    # only manifests and documents were written (JSON): no layer was uploaded again
    blob_dir = distribution.storage / "docker/registry/v2/blobs/sha256"
    assert new_blobs and all(
        (blob_dir / d[7:9] / d[7:] / "data").read_bytes()[:1] == b"{" for d in new_blobs
    )
    audit = json.loads(run_cli("audit", "--op", "rewrap", "--json", env=env("alice")).stdout)
    assert len(audit) == 1
    assert audit[0]["refs"][-1].endswith("teams/secret/bundles/shop:v2")  # and the 6 modules
    assert len(audit[0]["refs"]) == 7
    pulled = run_cli("bundle", "--name", "shop", "--pull", env=env("carol"))
    assert pulled.returncode == 0, pulled.stderr
    now = run_cli("fetch", str(project_c), "--json", env=env("carol"))
    # the bundle's 4 (pets and its deps) came with the pull; the other 2 from the registry
    assert _hits(now) == {"local": 4, "team": 2, "bsr": 0}
    built = _buf_build(buf_bin, project_c, tmp_path / "carol", server.ca_cert)
    assert built.returncode == 0, built.stderr
    # Removing carol re-wraps again: her key no longer opens what the registry holds.
    removed = run_cli("setup", "--remove-member", "carol", env=env("alice"))
    assert removed.returncode == 0, removed.stderr
    again = run_cli(
        "fetch",
        str(project_c),
        "--json",
        env={
            **env("carol"),
            "BSR_TEAM_CACHE_DIR": str(tmp_path / "c2"),
            "BUF_CACHE_DIR": str(tmp_path / "c2b"),
        },
    )
    assert again.returncode != 0
    assert "ask a team admin to add your public key" in again.stderr
