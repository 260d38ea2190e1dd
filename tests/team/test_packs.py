"""Lock packs (team/packs.py): one request for a lock's modules on a machine new to it, made
by the second machine that uses the lock, and never trusted for being a pack."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from bsr_team_cache import _cpus
from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bufcache.v3 import module_entry_dir
from bsr_team_cache.domain.buflock import read_buf_lock
from bsr_team_cache.errors import InvalidContentError
from bsr_team_cache.oci import compression
from bsr_team_cache.oci.artifact import encode_module, module_repository, read_layer_descriptor
from bsr_team_cache.oci.base import OCI_MANIFEST, document_limit, sha256_digest
from bsr_team_cache.oci.compression import GZIP_LAYER_MEDIA_TYPE, media_type_of
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.layer import files_layer
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team import fetch as fetch_module
from bsr_team_cache.team import packs as packs_module
from bsr_team_cache.team.cache import TeamCache
from bsr_team_cache.team.fetch import FetchReport, fetch
from bsr_team_cache.team.names import pack_repository, pack_tag
from bsr_team_cache.team.packs import (
    PACK_CONFIG_GZIP_TYPE,
    PACK_CONFIG_TYPE,
    PACK_TYPE,
    _pack_manifest,
    encode_pack,
    push_pack,
)
from tests.bsr.test_real_buf import make_project

pytestmark = pytest.mark.slow
TEAM = "platform-team"


class _Recording(httpx.HTTPTransport):
    """The real transport; records each request as "METHOD path"."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


class _Team:
    """Members of one team on a fresh namespace of Distribution, each with its own store and
    buf cache, fetching the sample project (6 modules) through the library."""

    def __init__(self, root: Path, distribution: DistributionServer, bsr_host: str) -> None:
        self.root = root
        self.ns = f"p{uuid.uuid4().hex[:8]}"
        self.transport = _Recording()
        self.registry = HTTPRegistry(distribution.url, transport=self.transport)
        self.project = make_project(root / "project", bsr_host)

    def fetch(self, member: str, *, store: Path | None = None, **options) -> FetchReport:
        """``member``'s fetch: its own store (or ``store``) and buf cache, this team's registry
        (``options`` may replace them)."""
        arguments = {
            "team": TEAM,
            "registry": self.registry,
            "buf_cache": self.root / member / "buf-cache",
            "namespace": self.ns,
            "member": member,
            **options,
        }
        with LocalStore(store or self.root / member / "store") as local, BSRModuleClient() as bsr:
            return fetch(self.project, bsr=bsr, store=local, **arguments)

    @property
    def repo(self) -> str:
        return pack_repository(TEAM, self.ns)

    @property
    def tag(self) -> str:
        return pack_tag(read_buf_lock(self.project / "buf.lock").deps)


@pytest.fixture
def team(tmp_path: Path, distribution: DistributionServer, bsr_env) -> _Team:
    return _Team(tmp_path, distribution, bsr_env.host)


def _tiers(report: FetchReport) -> dict[str, int]:
    return {tier: report.count(tier) for tier in ("local", "team", "bsr")}


def test_the_second_machine_makes_the_pack_and_the_third_reads_it_in_one_request(team):
    first = team.fetch("alice", update_lock=True)
    assert _tiers(first) == {"local": 0, "team": 0, "bsr": 6}
    # A lock only one machine used costs the registry nothing.
    assert (first.pack, first.pack_used, first.pack_published) == (team.tag, False, False)
    assert team.registry.read_manifest(team.repo, team.tag) is None

    second = team.fetch("bob")
    assert _tiers(second) == {"local": 0, "team": 6, "bsr": 0}
    assert (second.pack_used, second.pack_published) == (False, True)
    manifest = json.loads(team.registry.read_manifest(team.repo, team.tag)[0])
    assert manifest["artifactType"] == PACK_TYPE
    assert "data" in manifest["layers"][0]  # small: the layer rides in the manifest

    team.transport.requests.clear()
    third = team.fetch("carol")
    assert _tiers(third) == {"local": 0, "team": 6, "bsr": 0}
    assert (third.pack_used, third.pack_published, third.warnings) == (True, False, [])
    assert team.transport.requests == [f"GET /v2/{team.repo}/manifests/{team.tag}"]
    assert third.to_json()["pack"] == {"tag": team.tag, "used": True, "published": False}
    # What carol's store and buf cache hold is what bob's hold, file for file.
    for dep in read_buf_lock(team.project / "buf.lock").deps:
        mine = module_entry_dir(team.root / "carol" / "buf-cache", dep.module, dep.commit)
        theirs = module_entry_dir(team.root / "bob" / "buf-cache", dep.module, dep.commit)
        files = sorted(p.relative_to(mine) for p in mine.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file())
        assert all((mine / f).read_bytes() == (theirs / f).read_bytes() for f in files)
    with LocalStore(team.root / "carol" / "store") as store:
        assert len(store.entries()) == 6


def test_no_pack_is_looked_for_with_no_bundles_a_named_bundle_or_few_misses(team):
    team.fetch("alice", update_lock=True)
    plain = team.fetch("bob", use_bundles=False)
    assert (plain.pack, plain.pack_published) == ("", False)
    assert plain.to_json()["pack"] is None
    # One module missing of six: pulled on its own, no pack looked for.
    lock = read_buf_lock(team.project / "buf.lock")
    with LocalStore(team.root / "bob" / "store") as store:
        store.clear()
        for dep in lock.deps[1:]:
            store.put(LocalStore(team.root / "alice" / "store").get(dep.module, dep.commit))
    few = team.fetch("bob")
    assert _tiers(few) == {"local": 5, "team": 1, "bsr": 0}
    assert few.pack == ""


def _members_of_alices_store(team: _Team) -> list[tuple[bytes, bytes]]:
    with LocalStore(team.root / "alice" / "store") as store:
        return [
            store.encoded(d.module, d.commit) for d in read_buf_lock(team.project / "buf.lock").deps
        ]


def test_a_forged_member_is_a_warning_and_that_module_comes_on_its_own(team):
    team.fetch("alice", update_lock=True)
    lock = read_buf_lock(team.project / "buf.lock")
    members = _members_of_alices_store(team)
    # A member with push rights swaps pets' files for others, with a manifest and layer that
    # agree with each other: only pets' b5 (and buf.lock) can tell.
    pets = next(i for i, d in enumerate(lock.deps) if d.module.name == "pets")
    with LocalStore(team.root / "alice" / "store") as store:
        genuine = store.get(lock.deps[pets].module, lock.deps[pets].commit)
    forged_files = {**genuine.files, "acme/pets/v1/pet.proto": b'syntax = "proto3";\n'}
    forged = replace(genuine, files=forged_files, layer=None)
    encoded = encode_module(forged)
    assert encoded.layer == files_layer(forged_files)
    members[pets] = (encoded.manifest, encoded.layer)
    push_pack(team.registry, team.repo, team.tag, members)

    report = team.fetch("carol")
    assert _tiers(report) == {"local": 0, "team": 6, "bsr": 0}
    assert report.pack_used is True
    assert len(report.warnings) == 1
    assert (
        f"{lock.deps[pets].module}:{lock.deps[pets].commit}: files hash to" in (report.warnings[0])
    )
    assert report.warnings[0].endswith("fetching it on its own")
    entry = module_entry_dir(team.root / "carol" / "buf-cache", genuine.module, genuine.commit)
    assert (entry / "files" / "acme" / "pets" / "v1" / "pet.proto").read_bytes() == (
        genuine.files["acme/pets/v1/pet.proto"]
    )


def test_fetches_sharing_a_store_write_the_same_packs_members_at_once(team):
    """Three fetches of one pack at once, sharing a store: each gets every member, the store
    holds each once, verified, with no partial file left, and every buf cache is complete."""
    team.fetch("alice", update_lock=True)
    team.fetch("bob")  # makes the pack
    start = threading.Barrier(3)
    shared = team.root / "shared-store"
    reports: dict[str, FetchReport] = {}

    def fetch_as(member: str) -> None:
        start.wait()
        reports[member] = team.fetch(member, store=shared)

    threads = [threading.Thread(target=fetch_as, args=(m,)) for m in ("carol", "dave", "erin")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(reports) == ["carol", "dave", "erin"]
    for report in reports.values():
        assert report.warnings == []
        assert (report.count("bsr"), report.count("local") + report.count("team")) == (0, 6)
    assert sum(report.pack_used for report in reports.values()) >= 1
    lock = read_buf_lock(team.project / "buf.lock")
    with LocalStore(shared) as store:
        assert len(store.entries()) == 6
        for dep in lock.deps:
            assert store.get(dep.module, dep.commit).digest == dep.digest  # verified read
    assert not any((shared / "tmp").iterdir())
    for member in ("carol", "dave", "erin"):
        for dep in lock.deps:
            entry = module_entry_dir(team.root / member / "buf-cache", dep.module, dep.commit)
            assert (entry / "module.yaml").is_file()


@pytest.mark.parametrize(
    ("forge", "problem"),
    [
        ("unpinned", "is not pinned here"),
        ("twice", "is listed twice"),
        ("short", "the members' layers do not fill the pack's layer"),
        ("no-members", "config members must be a list of 1 to 6 modules"),
    ],
)
def test_a_pack_of_the_wrong_shape_is_not_used(team, forge, problem):
    team.fetch("alice", update_lock=True)
    members = _members_of_alices_store(team)
    if forge == "unpinned":  # a commit of the module this lock does not pin
        dep = read_buf_lock(team.project / "buf.lock").deps[0]
        with LocalStore(team.root / "alice" / "store") as store:
            other = replace(store.get(dep.module, dep.commit), commit="f" * 32)
        members[0] = (encode_module(other).manifest, members[0][1])
    elif forge == "twice":
        members[1] = members[0]
    _, config, layer = encode_pack(members)
    if forge == "short":
        layer = layer[:-1]
    elif forge == "no-members":
        config = gzip.compress(json.dumps({"members": []}).encode())
    _push_pack_of(team, config, layer)

    report = team.fetch("carol")
    assert _tiers(report) == {"local": 0, "team": 6, "bsr": 0}
    assert report.pack_used is False
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("lock pack unusable (")
    assert problem in report.warnings[0]
    assert report.warnings[0].endswith("; fetching modules one by one")


def _push_pack_of(
    team: _Team, config: bytes, layer: bytes, config_type: str = PACK_CONFIG_GZIP_TYPE
) -> None:
    """The lock's pack made of these bytes, whatever they hold: blobs first (a registry checks
    that a manifest's blobs exist), then the manifest."""
    for data in (config, layer):
        team.registry.push_blob(team.repo, data, sha256_digest(data))
    manifest = _manifest_for(config, layer, config_type)
    team.registry.push_manifest(team.repo, team.tag, manifest, OCI_MANIFEST)


def _manifest_for(config: bytes, layer: bytes, config_type: str = PACK_CONFIG_GZIP_TYPE) -> bytes:
    """A pack manifest for these bytes, whatever they hold (config and layer embedded)."""
    manifest = json.loads(_pack_manifest(config, layer, True, 6))
    manifest["config"]["mediaType"] = config_type
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def test_a_packs_config_is_written_compressed(team):
    team.fetch("alice", update_lock=True)
    team.fetch("bob")  # makes the pack
    manifest = json.loads(team.registry.read_manifest(team.repo, team.tag)[0])
    assert manifest["config"]["mediaType"] == PACK_CONFIG_GZIP_TYPE
    config = gzip.decompress(base64.b64decode(manifest["config"]["data"]))
    members = [base64.b64decode(m["manifest"]) for m in json.loads(config)["members"]]
    assert members == [manifest for manifest, _ in _members_of_alices_store(team)]
    assert manifest["config"]["size"] == len(gzip.compress(config, compresslevel=9, mtime=0))


def test_a_pack_with_the_plain_config_of_earlier_versions_is_read(team):
    team.fetch("alice", update_lock=True)
    members = _members_of_alices_store(team)
    _, compressed, layer = encode_pack(members)
    config = gzip.decompress(compressed)  # the document as packs carried it before
    _push_pack_of(team, config, layer, PACK_CONFIG_TYPE)
    report = team.fetch("carol")
    assert (report.pack_used, report.warnings) == (True, [])
    assert _tiers(report) == {"local": 0, "team": 6, "bsr": 0}


def test_a_pack_config_that_inflates_past_the_document_limit_is_refused(team):
    """A few KB of gzip that would inflate to more than a document may hold: refused before
    it is inflated past the limit, and the modules come one by one."""
    team.fetch("alice", update_lock=True)
    _, _, layer = encode_pack(_members_of_alices_store(team))
    bomb = gzip.compress(b'{"members": [' + b" " * (document_limit() + 1) + b"]}")
    assert len(bomb) < document_limit() // 100
    _push_pack_of(team, bomb, layer)
    report = team.fetch("carol")
    assert _tiers(report) == {"local": 0, "team": 6, "bsr": 0}
    assert report.pack_used is False
    (warning,) = report.warnings
    assert f"config: inflates past {document_limit()} B" in warning


def test_no_pack_for_a_team_that_keeps_downloads_private(team):
    team.fetch("alice", update_lock=True)  # published: shared_cache is on by default
    with LocalStore(team.root / "admin-store") as store, BSRModuleClient() as bsr:
        TeamCache(
            TEAM, registry=team.registry, bsr=bsr, store=store, member="alice", namespace=team.ns
        ).setup(shared_cache=False)
    second = team.fetch("bob")
    assert _tiers(second) == {"local": 0, "team": 6, "bsr": 0}
    assert (second.pack_used, second.pack_published) == (False, False)
    assert team.registry.read_manifest(team.repo, team.tag) is None


def test_a_bad_pack_is_replaced_by_the_next_machine_that_can(team):
    team.fetch("alice", update_lock=True)
    members = _members_of_alices_store(team)
    members[1] = members[0]  # a member twice: the pack is unusable
    _, config, layer = encode_pack(members)
    _push_pack_of(team, config, layer)

    carol = team.fetch("carol")
    assert carol.warnings[0].startswith("lock pack unusable (")
    assert (carol.pack_used, carol.pack_published) == (False, True)
    dave = team.fetch("dave")
    assert (dave.pack_used, dave.pack_published, dave.warnings) == (True, False, [])
    assert _tiers(dave) == {"local": 0, "team": 6, "bsr": 0}


def test_a_member_holding_encryption_keys_makes_no_pack(team, tmp_path, monkeypatch):
    from bsr_team_cache.trust.keys import generate_keys

    team.fetch("alice", update_lock=True)
    generate_keys(tmp_path / "keys")
    monkeypatch.setenv("BSR_TEAM_CACHE_PRIVATE_KEY_FILE", str(tmp_path / "keys" / "encryption.pem"))
    bob = team.fetch("bob")
    assert _tiers(bob) == {"local": 0, "team": 6, "bsr": 0}
    assert bob.pack_published is False
    assert team.registry.read_manifest(team.repo, team.tag) is None


def test_an_artifact_naming_dependency_commits_the_lock_does_not_pin_is_refused(team, bsr_env):
    """b5 covers a module's deps' digests, not their commits: a member could push a module with
    its genuine files and deps' digests but other deps' commits, which buf's module.yaml would
    then name (and every build fail). Such a copy is refused, from a pack or on its own."""
    from bsr_team_cache.oci.artifact import ModuleDepRecord, module_repository, push_module

    team.fetch("alice", update_lock=True)
    lock = read_buf_lock(team.project / "buf.lock")
    with LocalStore(team.root / "alice" / "store") as store:
        victim = next(a for a in (store.get(d.module, d.commit) for d in lock.deps) if a.deps)
    forged = replace(
        victim,
        deps=tuple(ModuleDepRecord(d.module, "0" * 32, d.digest, d.b4) for d in victim.deps),
        layer=None,
    )
    forged.verify()  # b5 still holds: the digests are the genuine ones
    push_module(team.registry, module_repository(TEAM, victim.module, team.ns), forged)

    report = team.fetch("bob", packs=False)
    assert _tiers(report) == {"local": 0, "team": 5, "bsr": 1}
    (warning,) = [w for w in report.warnings if "does not pin" in w]
    assert warning.startswith(f"{victim.module}:{victim.commit}: the team registry's copy names")
    entry = module_entry_dir(team.root / "bob" / "buf-cache", victim.module, victim.commit)
    assert "0" * 32 not in (entry / "module.yaml").read_text()

    # The same forgery inside a pack: that module comes on its own (from the team registry,
    # whose copy bob's download from the BSR replaced).
    members = _members_of_alices_store(team)
    index = [d.commit for d in lock.deps].index(victim.commit)
    members[index] = (encode_module(forged).manifest, members[index][1])
    push_pack(team.registry, team.repo, team.tag, members)
    carol = team.fetch("carol")
    assert carol.pack_used is True
    assert _tiers(carol) == {"local": 0, "team": 6, "bsr": 0}
    entry = module_entry_dir(team.root / "carol" / "buf-cache", victim.module, victim.commit)
    assert "0" * 32 not in (entry / "module.yaml").read_text()
    assert any(f"the lock pack {team.tag[:17]}'s copy names" in w for w in carol.warnings)


@pytest.mark.parametrize(("cores", "workers"), [(3, 3), (1, 1), (64, 6)])
def test_a_pack_with_a_large_member_is_checked_and_written_by_a_worker_per_core(
    team, monkeypatch, cores, workers
):
    team.fetch("alice", update_lock=True)
    team.fetch("bob")  # makes the pack
    made: list[int] = []
    real_pool = fetch_module._pool

    def pool(n: int):
        made.append(n)
        return real_pool(n)

    monkeypatch.setattr(fetch_module, "_pool", pool)
    monkeypatch.setattr(_cpus, "usable_cpus", lambda: cores)
    # One member counts as large (the largest layer of the six): the others are small.
    largest = max(len(layer) for _, layer in _members_of_alices_store(team))
    monkeypatch.setattr(fetch_module, "_IN_CALLER_MODULE_BYTES", largest)
    report = team.fetch("carol")
    assert (report.pack_used, _tiers(report)) == (True, {"local": 0, "team": 6, "bsr": 0})
    assert made == [workers]  # six members, at most one worker per core


def test_a_packs_small_members_are_checked_and_written_by_the_callers_thread(team, monkeypatch):
    """Modules all under _IN_CALLER_MODULE_BYTES: no pool, every member placed by the thread
    that runs the fetch (a second thread would only hand the GIL back and forth)."""
    team.fetch("alice", update_lock=True)
    team.fetch("bob")  # makes the pack
    made: list[int] = []
    monkeypatch.setattr(fetch_module, "_pool", lambda n: made.append(n))
    placed_by: set[str] = set()
    real_place = fetch_module._Run.place

    def place(self, dep, artifact):
        placed_by.add(threading.current_thread().name)
        return real_place(self, dep, artifact)

    monkeypatch.setattr(fetch_module._Run, "place", place)
    report = team.fetch("carol")
    assert (report.pack_used, _tiers(report)) == (True, {"local": 0, "team": 6, "bsr": 0})
    assert made == []
    assert placed_by == {threading.current_thread().name}
    lock = read_buf_lock(team.project / "buf.lock")
    for dep in lock.deps:
        entry = module_entry_dir(team.root / "carol" / "buf-cache", dep.module, dep.commit)
        assert (entry / "module.yaml").is_file()


def test_a_packs_members_are_placed_by_a_second_process_when_many(team, monkeypatch):
    """Enough members (here the threshold is lowered to the sample's six): buf's cache entries
    are written by the placing process (bufcache/placer.py), file for file as this process
    writes them."""
    from bsr_team_cache.bufcache import placer as placer_module

    team.fetch("alice", update_lock=True)
    team.fetch("bob")  # makes the pack
    monkeypatch.setattr(placer_module, "PLACER_MIN_ENTRIES", 6)
    monkeypatch.setattr(placer_module, "usable_cpus", lambda: 2)
    started: list[placer_module.Placer] = []
    real_start = placer_module.Placer.start.__func__

    def start(cls, entries):
        made = real_start(cls, entries)
        started.append(made)
        return made

    monkeypatch.setattr(placer_module.Placer, "start", classmethod(start))
    report = team.fetch("carol")
    assert (report.pack_used, _tiers(report), report.warnings) == (
        True,
        {"local": 0, "team": 6, "bsr": 0},
        [],
    )
    assert [p.placed for p in started] == [6]
    for dep in read_buf_lock(team.project / "buf.lock").deps:
        mine = module_entry_dir(team.root / "carol" / "buf-cache", dep.module, dep.commit)
        theirs = module_entry_dir(team.root / "bob" / "buf-cache", dep.module, dep.commit)
        assert {p.relative_to(mine): p.read_bytes() for p in mine.rglob("*") if p.is_file()} == {
            p.relative_to(theirs): p.read_bytes() for p in theirs.rglob("*") if p.is_file()
        }


def test_a_packs_members_are_decoded_a_batch_at_a_time(team, monkeypatch):
    """A batch's decoded members are held until it is done: a large lock's are not all held at
    once."""
    team.fetch("alice", update_lock=True)
    team.fetch("bob")  # makes the pack
    sizes: list[int] = []
    real = fetch_module._from_pack

    def from_pack(run, deps):
        sizes.append(len(deps))
        return real(run, deps)

    monkeypatch.setattr(fetch_module, "FILL_BATCH", 4)
    monkeypatch.setattr(fetch_module, "_from_pack", from_pack)
    report = team.fetch("carol")
    assert (report.pack_used, _tiers(report)) == (True, {"local": 0, "team": 6, "bsr": 0})
    assert sizes == [4, 2]


def test_a_fetch_module_by_module_waits_for_a_pack_fetch_filling_the_same_store(team, monkeypatch):
    """Single-flight holds across the two ways in: a fetch that does not read the pack, missing
    the commits a pack fetch is writing to the same store, waits for its fill locks and then
    finds them in the store; it downloads nothing."""
    team.fetch("alice", update_lock=True)
    team.fetch("bob")  # makes the pack
    shared = team.root / "shared-store"
    pack_writing, other_done = threading.Event(), threading.Event()
    real_flush = LocalStore.flush

    def flush(self):
        # The pack fetch, its members written and their rows not yet committed, holds on.
        if threading.current_thread().name == "pack" and self._rows and not pack_writing.is_set():
            pack_writing.set()
            other_done.wait(2)
        return real_flush(self)

    monkeypatch.setattr(LocalStore, "flush", flush)
    reports: dict[str, FetchReport] = {}

    def fetch_as(member: str, **options) -> None:
        try:
            reports[member] = team.fetch(member, store=shared, **options)
        finally:
            if member == "dave":
                other_done.set()

    pack = threading.Thread(target=fetch_as, args=("carol",), name="pack")
    pack.start()
    assert pack_writing.wait(60)
    other = threading.Thread(target=fetch_as, args=("dave",), kwargs={"packs": False})
    other.start()
    other.join(60)
    pack.join(60)
    assert reports["carol"].pack_used is True
    assert _tiers(reports["carol"]) == {"local": 0, "team": 6, "bsr": 0}
    assert _tiers(reports["dave"]) == {"local": 6, "team": 0, "bsr": 0}


@pytest.mark.parametrize(
    ("limit", "size", "inflated"), [(0, 2, False), (64, 64, True), (64, 65, False)]
)
def test_a_pack_config_is_inflated_only_within_the_document_limit(
    monkeypatch, limit, size, inflated
):
    """A limit of 0 refuses all (zlib's max_length 0 would mean no limit at all); else up to
    the limit exactly."""
    monkeypatch.setattr(packs_module, "document_limit", lambda: limit)
    data = gzip.compress(b"x" * size)
    if inflated:
        assert packs_module._inflated(data, "pack") == b"x" * size
    else:
        with pytest.raises(InvalidContentError, match=r"^pack: "):
            packs_module._inflated(data, "pack")


def test_gzip_layers_written_before_serve_later_machines_and_their_pack(team, monkeypatch):
    """A team registry whose modules were published as gzip (by an earlier version, or with
    layer_compression = "gzip"): machines that write zstd read them, keep them as they are,
    and make and read a pack of them."""
    with monkeypatch.context() as patched:
        patched.setattr(compression, "_writing", "gzip")
        team.fetch("alice", update_lock=True)
    lock = read_buf_lock(team.project / "buf.lock")
    for dep in lock.deps:
        repo = module_repository(TEAM, dep.module, team.ns)
        assert read_layer_descriptor(team.registry, repo, dep.commit).media_type == (
            GZIP_LAYER_MEDIA_TYPE
        )
    assert _tiers(team.fetch("bob")) == {"local": 0, "team": 6, "bsr": 0}  # makes the pack
    carol = team.fetch("carol")
    assert (carol.pack_used, carol.warnings) == (True, [])
    assert _tiers(carol) == {"local": 0, "team": 6, "bsr": 0}
    with LocalStore(team.root / "carol" / "store") as store:
        for dep in lock.deps:
            _, layer = store.encoded(dep.module, dep.commit)
            assert media_type_of(layer) == GZIP_LAYER_MEDIA_TYPE  # kept as it arrived
