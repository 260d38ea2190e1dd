"""Pruning lock packs (housekeeping/packs.py): packs made before the cut-off are deleted by the
digest read, everything else in the packs repository is reported and left alone, the embedded
registry reclaims the space, and a lock still in use gets its pack again."""

from __future__ import annotations

import base64
import calendar
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bsr_team_cache.housekeeping.packs import pack_time, prune_packs
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.layout import REF_NAME, OCILayoutRegistry
from bsr_team_cache.team import packs
from bsr_team_cache.team.names import pack_repository
from bsr_team_cache.team.packs import push_pack
from tests.conftest import run_cli

TEAM = "platform-team"
REPO = pack_repository(TEAM)
DAY = 86400.0
NOW = time.time()


def _at(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _tag(n: int) -> str:
    return f"lock-{n:064x}"


def _push(
    registry, tag: str, made: float, monkeypatch: pytest.MonkeyPatch, repo: str = REPO
) -> str:
    """A pack of two (opaque) members made at ``made``; its manifest digest."""
    clock = SimpleNamespace(strftime=time.strftime, gmtime=lambda: time.gmtime(made))
    members = [(f"manifest {tag} {i}".encode(), f"layer {tag} {i}".encode()) for i in range(2)]
    with monkeypatch.context() as patched:
        patched.setattr(packs, "time", clock)
        return push_pack(registry, repo, tag, members)


def _age_blobs(root: Path, days: float) -> None:
    """Make every blob of the packs repository ``days`` old (as if pushed then)."""
    then = NOW - days * DAY
    for blob in (root / REPO / "blobs" / "sha256").iterdir():
        os.utime(blob, (then, then))


def _blobs(root: Path) -> dict[str, int]:
    found = (root / REPO / "blobs" / "sha256").iterdir()
    return {f"sha256:{p.name}": p.stat().st_size for p in found}


def test_packs_made_before_the_cut_off_are_deleted_and_their_blobs_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = OCILayoutRegistry(tmp_path / "registry")
    old = {_tag(1): _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)}
    old[_tag(2)] = _push(registry, _tag(2), NOW - 31 * DAY, monkeypatch)
    young = _push(registry, _tag(3), NOW - 29 * DAY, monkeypatch)
    _age_blobs(tmp_path / "registry", 40)
    before = _blobs(tmp_path / "registry")
    kept_blobs = {young}
    manifest = json.loads(registry.read_manifest(REPO, _tag(3))[0])
    kept_blobs |= {manifest["config"]["digest"], manifest["layers"][0]["digest"]}

    report = prune_packs(registry, TEAM, NOW - 30 * DAY)

    assert report.deleted == [f"{tag}@{digest}" for tag, digest in sorted(old.items())]
    assert (report.kept, report.warnings, report.repository) == (1, [], REPO)
    assert registry.list_tags(REPO) == [_tag(3)]
    assert {registry.read_manifest(REPO, d) for d in old.values()} == {None}
    assert set(_blobs(tmp_path / "registry")) == kept_blobs
    assert report.freed_bytes == sum(size for d, size in before.items() if d not in kept_blobs)
    data = registry.read_manifest(REPO, _tag(3))[0]
    made = calendar.timegm(time.strptime(_at(NOW - 29 * DAY), "%Y-%m-%dT%H:%M:%SZ"))
    assert pack_time(data, registry, REPO, "here") == float(made)


def test_a_dry_run_deletes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = OCILayoutRegistry(tmp_path / "registry")
    digest = _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    _push(registry, _tag(2), NOW - DAY, monkeypatch)
    _age_blobs(tmp_path / "registry", 40)
    before = _blobs(tmp_path / "registry")
    report = prune_packs(registry, TEAM, NOW - 30 * DAY, dry_run=True)
    assert (report.deleted, report.kept, report.freed_bytes) == ([f"{_tag(1)}@{digest}"], 1, None)
    assert registry.list_tags(REPO) == [_tag(1), _tag(2)]
    assert _blobs(tmp_path / "registry") == before


def test_blobs_pushed_within_the_hour_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push writes blobs before its manifest: a prune running meanwhile must not take them."""
    registry = OCILayoutRegistry(tmp_path / "registry")
    _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    before = _blobs(tmp_path / "registry")  # just written: young
    report = prune_packs(registry, TEAM, NOW - 30 * DAY)
    assert (len(report.deleted), report.freed_bytes) == (1, 0)
    assert _blobs(tmp_path / "registry") == before


def _hostile_manifest(config: bytes, artifact_type: str = packs.PACK_TYPE) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {
                "mediaType": packs.PACK_CONFIG_TYPE,
                "digest": sha256_digest(config),
                "size": len(config),
                "data": base64.b64encode(config).decode(),
            },
            "layers": [],
        }
    ).encode()


@pytest.mark.parametrize(
    ("tag", "manifest", "warning"),
    [
        (_tag(9), _hostile_manifest(b"{}", "x/other"), "pack.v1 artifact, found 'x/other'"),
        (_tag(9), _hostile_manifest(b'{"members": []}'), "no creation time"),
        (_tag(9), _hostile_manifest(b'{"created": "2020-13-45T99:00:00Z"}'), "is not a time"),
        (_tag(9), _hostile_manifest(b'{"created": 1600000000}'), "no creation time"),
        (_tag(9), _hostile_manifest(b"[" * 100_000), "nested too deeply"),
        (_tag(9), _hostile_manifest(f'{{"created": "{_at(NOW + 3 * DAY)}"}}'.encode()), "future"),
    ],
)
def test_what_is_not_a_dated_pack_is_reported_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tag: str, manifest: bytes, warning: str
) -> None:
    registry = OCILayoutRegistry(tmp_path / "registry")
    old = _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    registry.push_manifest(REPO, tag, manifest, OCI_MANIFEST)
    report = prune_packs(registry, TEAM, NOW - 30 * DAY)
    assert len(report.warnings) == 1 and warning in report.warnings[0]
    assert report.warnings[0].endswith("left alone") and len(report.warnings[0]) < 600
    assert report.deleted == [f"{_tag(1)}@{old}"]
    assert tag in registry.list_tags(REPO)


class _Tags(OCILayoutRegistry):
    """A registry whose tag list is whatever a hostile server sends."""

    def __init__(self, root: Path, tags: list[str]) -> None:
        super().__init__(root)
        self.tags = tags

    def list_tags(self, repo: str) -> list[str]:
        return self.tags


def test_a_tag_with_control_characters_is_shown_escaped_and_short(tmp_path: Path) -> None:
    registry = _Tags(tmp_path / "registry", ["x\x1b[2J\n" + "y" * 200])
    report = prune_packs(registry, TEAM, NOW)
    shown = "x\\x1b[2J\\n" + "y" * 74 + "…"  # the first 80 characters, escaped
    assert report.warnings == [f"{REPO}:{shown}: not a lock pack's tag, left alone"]


def test_the_prune_on_distribution_and_its_refusal_without_deletes(
    tmp_path: Path, distribution: DistributionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = HTTPRegistry(distribution.url)
    ns_repo = pack_repository(TEAM, "prune")
    with registry:
        old = _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch, ns_repo)
        _push(registry, _tag(2), NOW, monkeypatch, ns_repo)
        report = prune_packs(registry, TEAM, NOW - 30 * DAY, namespace="prune")
        assert (report.deleted, report.kept, report.freed_bytes) == ([f"{_tag(1)}@{old}"], 1, None)
        assert registry.list_tags(ns_repo) == [_tag(2)]
        assert registry.read_manifest(ns_repo, old) is None

    no_delete = DistributionServer(tmp_path / "no-delete", delete=False).start()
    try:
        with HTTPRegistry(no_delete.url) as registry:
            digest = _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
            report = prune_packs(registry, TEAM, NOW - 30 * DAY)
            assert report.deleted == [] and report.error is not None
            assert report.error.endswith(
                ". Deleting needs the team's admin role and a registry that allows deletes"
                " (Distribution: storage.delete.enabled, docs/deploy.md)"
            )
            assert f"DELETE manifest {REPO}@{digest}" in report.error
            assert registry.list_tags(REPO) == [_tag(1)]
        refused = run_cli("prune-packs", "--team", TEAM, "--registry", no_delete.url)
        assert refused.returncode == 1
        assert refused.stdout == "deleted 0 packs, kept 0\n"
        assert refused.stderr.startswith("bsr-team-cache: error: ")
        assert refused.stderr.endswith("storage.delete.enabled, docs/deploy.md)\n")
        audit = json.loads(run_cli("audit", "--team", TEAM, "--json", "--local-only").stdout)
        assert [(r["operation"], r["refs"], r["result"][:7]) for r in audit] == [
            ("prune-packs", [], "error: ")
        ]
    finally:
        no_delete.stop()


def test_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "registry"
    registry = OCILayoutRegistry(root)
    old = _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    _push(registry, _tag(2), NOW - DAY, monkeypatch)
    _age_blobs(root, 40)
    common = ["prune-packs", "--team", TEAM, "--registry", f"oci-layout:{root}"]

    dry = run_cli(*common, "--dry-run")
    assert (dry.returncode, dry.stderr) == (0, "")
    assert dry.stdout.splitlines() == [
        f"would delete {REPO}:{_tag(1)}@{old}",
        "would delete 1 packs, kept 1",
    ]
    done = run_cli(*common, "--older-than", "30d", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["deleted"], answer["kept"], answer["dry_run"]) == (
        [f"{_tag(1)}@{old}"],
        1,
        False,
    )
    assert answer["freed_bytes"] > 0 and registry.list_tags(REPO) == [_tag(2)]
    audit = run_cli("audit", "--team", TEAM, "--json", "--local-only")
    records = json.loads(audit.stdout)
    assert [r["refs"] for r in records if r["operation"] == "prune-packs"] == [
        [f"{REPO}:{_tag(1)}@{old}"]
    ]

    store = Path(os.environ["BSR_TEAM_CACHE_DIR"])
    assert store.stat().st_mode & 0o777 == 0o700  # made by the audit record, as a store is
    bad = run_cli(*common, "--older-than", "soon")
    assert bad.returncode != 0 and bad.stdout == ""
    assert "--older-than" in bad.stderr and "'soon': expected an RFC 3339 time" in bad.stderr


def test_a_manifest_that_cannot_be_read_keeps_every_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "registry"
    registry = OCILayoutRegistry(root)
    old = _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    young = _push(registry, _tag(2), NOW - DAY, monkeypatch)
    _age_blobs(root, 40)
    damaged = root / REPO / "blobs" / "sha256" / young.removeprefix("sha256:")
    damaged.write_bytes(b"not the manifest")
    before = _blobs(root)
    report = prune_packs(registry, TEAM, NOW - 30 * DAY)
    assert report.deleted == [f"{_tag(1)}@{old}"]
    assert report.freed_bytes is None
    corrupt = (
        f"oci-layout:{root}/{REPO}: blob {young} is corrupt (its content hashes to"
        f" {sha256_digest(b'not the manifest')})"
    )
    assert report.warnings == [
        f"{corrupt}; left alone",
        f"the deleted packs' blobs stay until every manifest of {REPO} can be read ({corrupt}):"
        f" remove that manifest (skopeo delete oci:<registry path>/{REPO}@<digest>) and prune"
        " again",
    ]
    assert _blobs(root) == before


def test_a_pack_whose_manifest_another_tag_names_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting a manifest removes every tag on it: an old pack also tagged `keep-me` stays."""
    registry = OCILayoutRegistry(tmp_path / "registry")
    shared = _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    alone = _push(registry, _tag(2), NOW - 40 * DAY, monkeypatch)
    registry.push_manifest(REPO, "keep-me", registry.read_manifest(REPO, shared)[0], OCI_MANIFEST)
    report = prune_packs(registry, TEAM, NOW - 30 * DAY)
    assert report.warnings == [
        f"{REPO}:keep-me: not a lock pack's tag, left alone",
        f"{REPO}:{_tag(1)}: its manifest has another tag, left alone",
    ]
    assert (report.deleted, report.kept) == ([f"{_tag(2)}@{alone}"], 1)
    assert registry.list_tags(REPO) == ["keep-me", _tag(1)]


def _blob(registry: OCILayoutRegistry, data: bytes) -> str:
    digest = sha256_digest(data)
    registry.push_blob(REPO, data, digest)
    return digest


def test_what_an_index_a_subject_or_a_config_names_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "registry"
    registry = OCILayoutRegistry(root)
    _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    child_config, child_layer, subject_layer = (_blob(registry, b) for b in (b"c", b"l", b"s"))

    def image(config: str, layer: str, **extra: object) -> bytes:
        descriptor = {"mediaType": "application/octet-stream", "size": 1}
        return json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, **extra,
             "config": {**descriptor, "digest": config},
             "layers": [{**descriptor, "digest": layer}]}
        ).encode()  # fmt: skip

    child = _blob(registry, image(child_config, child_layer))  # pushed by digest only
    subject = _blob(registry, image(child_config, subject_layer))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 1}],
             "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}}  # fmt: skip
    registry.push_manifest(REPO, "multi", json.dumps(index).encode(), OCI_MANIFEST)
    _age_blobs(root, 40)
    wanted = {child, child_config, child_layer, subject, subject_layer}
    wanted.add(sha256_digest(json.dumps(index).encode()))
    report = prune_packs(registry, TEAM, NOW - 30 * DAY)
    assert len(report.deleted) == 1 and report.freed_bytes is not None
    assert set(_blobs(root)) == wanted


@pytest.mark.parametrize(
    "manifest",
    [
        {"layers": 5},
        {"manifests": True},
        {"layers": [{"digest": 7}]},
        {"config": "sha256:" + "0" * 64},
        [],
    ],
)
def test_a_manifest_of_odd_shape_keeps_every_blob_and_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, manifest: object
) -> None:
    root = tmp_path / "registry"
    registry = OCILayoutRegistry(root)
    old = _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    registry.push_manifest(REPO, "odd", json.dumps(manifest).encode(), OCI_MANIFEST)
    _age_blobs(root, 40)
    before = _blobs(root)
    report = prune_packs(registry, TEAM, NOW - 30 * DAY)
    assert (report.deleted, report.freed_bytes) == ([f"{_tag(1)}@{old}"], None)
    assert report.warnings[0].startswith(f"{REPO}:odd: ")
    assert report.warnings[1].startswith(
        f"the deleted packs' blobs stay until every manifest of {REPO} can be read ("
    )
    assert report.warnings[1].endswith(
        f"): remove that manifest (skopeo delete oci:<registry path>/{REPO}@<digest>) and prune"
        " again"
    )
    assert _blobs(root) == before


def test_the_blob_directory_is_never_left_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member who swaps blobs/sha256 for a link to elsewhere gets nothing there removed."""
    root = tmp_path / "registry"
    registry = OCILayoutRegistry(root)
    _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / ("a" * 64)).write_bytes(b"precious")
    os.utime(victim / ("a" * 64), (NOW - 40 * DAY, NOW - 40 * DAY))
    blobs = root / REPO / "blobs" / "sha256"
    real_collect = registry.collect_garbage

    def swap_then_collect(repo: str) -> int:
        blobs.rename(blobs.with_name("moved"))
        blobs.symlink_to(victim)
        return real_collect(repo)

    monkeypatch.setattr(registry, "collect_garbage", swap_then_collect)
    report = prune_packs(registry, TEAM, NOW - 30 * DAY)
    assert len(report.deleted) == 1 and report.freed_bytes is None
    assert "the deleted packs' blobs stay" in report.warnings[-1]
    assert (victim / ("a" * 64)).read_bytes() == b"precious"


def test_only_blob_names_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repository named teams/…/packs/blobs/sha256 lives inside the blob directory: its
    files are not blobs."""
    root = tmp_path / "registry"
    registry = OCILayoutRegistry(root)
    _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    nested = f"{REPO}/blobs/sha256"
    registry.push_blob(nested, b"x", sha256_digest(b"x"))
    registry.push_manifest(nested, "t", _hostile_manifest(b"{}"), OCI_MANIFEST)
    _age_blobs(root, 40)

    def not_blobs() -> list[str]:
        return sorted(p.name for p in (root / nested).iterdir() if len(p.name) != 64)

    kept = not_blobs()
    assert kept == [".index.lock", "blobs", "index.json", "oci-layout"]
    report = prune_packs(registry, TEAM, NOW - 30 * DAY)
    assert len(report.deleted) == 1 and report.freed_bytes is not None
    assert not_blobs() == kept
    assert registry.read_manifest(nested, "t") is not None


def test_a_blob_a_pusher_found_present_is_young_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new pack for the same lock has the same layer: the pusher skips uploading it, and a
    prune deleting the old pack meanwhile must not take it."""
    root = tmp_path / "registry"
    registry = OCILayoutRegistry(root)
    old = _push(registry, _tag(1), NOW - 40 * DAY, monkeypatch)
    layer = json.loads(registry.read_manifest(REPO, old)[0])["layers"][0]["digest"]
    _age_blobs(root, 40)
    assert registry.blob_exists(REPO, layer)  # what push_pack asks before it uploads
    prune_packs(registry, TEAM, NOW - 30 * DAY)
    assert registry.blob_exists(REPO, layer)
    assert (root / REPO / "blobs" / "sha256" / layer.removeprefix("sha256:")).stat().st_mtime > (
        NOW - 60
    )


def test_ref_names_that_are_not_strings_are_not_tags(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "registry")
    registry.push_manifest(REPO, "real", _hostile_manifest(b"{}"), OCI_MANIFEST)
    index_path = tmp_path / "registry" / REPO / "index.json"
    index = json.loads(index_path.read_text())
    entry = index["manifests"][0]
    for odd in (7, ["a"], {"b": 1}, None, ""):
        index["manifests"].append({**entry, "annotations": {REF_NAME: odd}})
    index_path.write_text(json.dumps(index))
    assert registry.list_tags(REPO) == ["real"]
