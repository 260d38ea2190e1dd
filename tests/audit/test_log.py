"""The audit log: one record per operation, with the member and the module commits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bsr_team_cache.audit.log import AuditQuery, read, record
from bsr_team_cache.usage.events import parse_time
from tests.conftest import run_cli


def test_records_are_read_back_and_filtered(tmp_path: Path) -> None:
    env = {"BSR_TEAM_CACHE_HOST": "laptop-1"}
    when = parse_time("2026-11-20T10:00:00Z")
    record(tmp_path, team="t", member="alice", operation="fetch", refs=["buf.build/a/b:" + "1" * 32],
           when=when, env=env)  # fmt: skip
    record(tmp_path, team="t", member="bob", operation="clear", refs=[], result="error: disk\nfull",
           when=when + 3600, env=env)  # fmt: skip
    with open(tmp_path / "audit.jsonl", "ab") as f:
        f.write(b'{"time": "2026-11-20T11:00:00Z"}\n{"torn": ')
    everything = read(tmp_path, AuditQuery())
    assert everything.skipped == 2
    assert everything.records == [
        {
            "time": "2026-11-20T10:00:00.000000Z",
            "team": "t",
            "member": "alice",
            "host": "laptop-1",
            "operation": "fetch",
            "refs": ["buf.build/a/b:" + "1" * 32],
            "result": "ok",
        },
        {
            "time": "2026-11-20T11:00:00.000000Z",
            "team": "t",
            "member": "bob",
            "host": "laptop-1",
            "operation": "clear",
            "refs": [],
            "result": "error: disk full",
        },
    ]
    assert [r["member"] for r in read(tmp_path, AuditQuery(member="bob")).records] == ["bob"]
    assert read(tmp_path, AuditQuery(operation="fetch")).records[0]["member"] == "alice"
    assert read(tmp_path, AuditQuery(since=when + 1)).records[0]["operation"] == "clear"
    assert read(tmp_path, AuditQuery(team="other")).records == []


@pytest.mark.slow
def test_every_team_operation_is_audited_once(bsr_env, tmp_path: Path) -> None:
    host = bsr_env.host
    env = {
        "SSL_CERT_FILE": str(bsr_env.ca_cert),
        "BSR_TEAM_CACHE_REGISTRY": f"oci-layout:{tmp_path / 'registry'}",
        "BSR_TEAM_CACHE_TEAM": "platform-team",
        "BSR_TEAM_CACHE_DIR": str(tmp_path / "store"),
        "BSR_TEAM_CACHE_MEMBER": "alice",
    }
    project = tmp_path / "p"
    project.mkdir()
    (project / "buf.yaml").write_text(f"version: v2\ndeps:\n  - {host}/acme/pets\n")
    steps = [
        ("setup", "--members", "alice", "--members", "bob"),
        ("setup", "--role", "bob=maintainer"),
        ("setup", "--remove-member", "bob"),
        ("fetch", str(project), "--update-lock", "--no-buf-cache", "-q"),
        ("warm", "--deps", f"{host}/grpc/grpc"),
        ("bundle", "--name", "shop", "--deps", f"{host}/acme/pets"),
        ("share", "--name", "shop", "--with", "backend-team"),
        ("bundle", "--name", "shop", "--pull"),
        ("sync",),
        ("clear",),
    ]
    for args in steps:
        done = run_cli(*args, env=env)
        assert done.returncode == 0, (args, done.stderr)
    listed = run_cli("audit", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    # warm's downloads from the BSR are published too.
    assert [r["operation"] for r in records] == [
        "member-add", "member-add", "setup", "role-change", "setup", "member-remove", "setup",
        "fetch", "publish", "warm", "publish", "bundle-create", "share", "bundle-pull", "sync",
        "clear",
    ]  # fmt: skip
    assert {r["member"] for r in records} == {"alice"}
    assert {r["result"] for r in records} == {"ok"}
    lock = {
        f"{d['name']}:{d['commit']}"
        for d in json.loads(run_cli("fetch", str(project), "--json", "--no-buf-cache", env=env).stdout)["modules"]
    }  # fmt: skip
    fetch, publish = records[7], records[8]
    assert {ref.split("@")[0] for ref in fetch["refs"]} == lock
    assert all(ref.split("@")[1].startswith("b5:") for ref in fetch["refs"])
    assert publish["refs"] == fetch["refs"]  # every download went to the team registry
    assert [r["refs"] for r in records[:7]] == [
        ["member:alice:admin"],
        ["member:bob:member"],
        ["member:alice", "member:bob", "strategy:balanced"],
        ["member:bob:member->maintainer"],
        ["member:alice", "member:bob", "strategy:balanced"],
        ["member:bob"],
        ["member:alice", "strategy:balanced"],
    ]
    assert records[11]["refs"] == ["teams/platform-team/bundles/shop:v1"]
    assert records[12]["refs"] == ["shared/organization/bundles/shop:v1", "team:backend-team"]
    only_fetches = json.loads(run_cli("audit", "--op", "fetch", "--json", env=env).stdout)
    assert len(only_fetches) == 2  # and the fetch just above
    refused = run_cli("audit", "--op", "delete", env=env)
    assert refused.returncode == 2 and "--op 'delete': expected one of" in refused.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["oci-layout", "distribution"])
def test_members_see_each_other_s_records_after_sync(
    bsr_env, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    host = bsr_env.host
    registry = (
        f"oci-layout:{tmp_path / 'registry'}"
        if backend == "oci-layout"
        else request.getfixturevalue("distribution").url
    )
    base = {
        "SSL_CERT_FILE": str(bsr_env.ca_cert),
        "BSR_TEAM_CACHE_REGISTRY": registry,
        "BSR_TEAM_CACHE_TEAM": f"audit-{backend}",
    }
    alice = {**base, "BSR_TEAM_CACHE_DIR": str(tmp_path / "a"), "BSR_TEAM_CACHE_MEMBER": "alice"}
    bob = {**base, "BSR_TEAM_CACHE_DIR": str(tmp_path / "b"), "BSR_TEAM_CACHE_MEMBER": "bob"}
    project = tmp_path / "p"
    project.mkdir()
    (project / "buf.yaml").write_text(f"version: v2\ndeps:\n  - {host}/acme/pets\n")
    for env, args in (
        (alice, ("setup", "--members", "alice", "--members", "bob")),
        (alice, ("fetch", str(project), "--update-lock", "--no-buf-cache", "-q")),
        (alice, ("sync",)),
        (bob, ("fetch", str(project), "--no-buf-cache", "-q")),
        (bob, ("sync",)),
        (alice, ("sync",)),  # ships alice's first sync record, merges bob's
        (alice, ("sync",)),  # nothing new: nothing listed twice
    ):
        done = run_cli(*args, env=env)
        assert done.returncode == 0, (args, done.stderr)
    for env in (alice, bob):
        listed = run_cli("audit", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        seen = [(r["member"], r["operation"]) for r in json.loads(listed.stdout)]
        mine = [p for p in seen if p[0] == env["BSR_TEAM_CACHE_MEMBER"]]
        theirs = [p for p in seen if p[0] != env["BSR_TEAM_CACHE_MEMBER"]]
        if env is bob:  # a sync's own record ships with the next one: alice's last is not there
            assert theirs == [
                ("alice", "member-add"), ("alice", "member-add"), ("alice", "setup"),
                ("alice", "fetch"), ("alice", "publish"), ("alice", "sync"), ("alice", "sync"),
            ]  # fmt: skip
            assert mine == [("bob", "fetch"), ("bob", "sync")]
        else:
            assert theirs == [("bob", "fetch")]  # bob's sync record ships at his next sync
            assert mine == [
                ("alice", "member-add"), ("alice", "member-add"), ("alice", "setup"),
                ("alice", "fetch"), ("alice", "publish"), ("alice", "sync"), ("alice", "sync"),
                ("alice", "sync"),
            ]  # fmt: skip
    alice_only = json.loads(run_cli("audit", "--json", "--member", "alice", env=bob).stdout)
    assert {r["member"] for r in alice_only} == {"alice"}


def test_a_forged_audit_chunk_is_a_warning(tmp_path: Path) -> None:
    import gzip

    from bsr_team_cache.audit import team as audit_team
    from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
    from bsr_team_cache.oci.layout import OCILayoutRegistry
    from bsr_team_cache.usage.chunks import Layer, machine_manifest

    registry = OCILayoutRegistry(tmp_path / "reg")
    repo = audit_team.audit_repository("t")
    good = {"time": "2026-11-20T10:00:00Z", "team": "t", "member": "eve", "host": "h",
            "operation": "fetch", "refs": [], "result": "ok"}  # fmt: skip
    blobs = [
        gzip.compress(json.dumps({**good, "operation": "delete-everything"}).encode() + b"\n"),
        gzip.compress(
            b"".join(json.dumps(r).encode() + b"\n" for r in (good, {**good, "team": "u"}))
        ),
    ]
    layers = []
    for data in [*blobs, b"{}"]:
        registry.push_blob(repo, data, sha256_digest(data))
    for data in blobs:
        layers.append(Layer(sha256_digest(data), len(data), 1, (), audit_team.CHUNK_MEDIA_TYPE))
    manifest = machine_manifest(layers, {}, audit_team.ARTIFACT_TYPE)
    registry.push_manifest(repo, "eve.1", manifest, OCI_MANIFEST)
    merged = audit_team.merge(tmp_path, registry, repo, team="t", own_tag="me.1")
    assert merged.merged == 1  # the good record; the other team's is dropped
    assert (
        len(merged.warnings) == 1 and "record 1: operation: expected one of" in merged.warnings[0]
    )
    assert [r["member"] for r in read(tmp_path, AuditQuery(team="t")).records] == ["eve"]
    again = audit_team.merge(tmp_path, registry, repo, team="t", own_tag="me.1")
    assert (again.merged, again.warnings) == (0, [])
