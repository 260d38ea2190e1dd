"""The lock pack requested before the fetch machinery loads (team/pack_read.py): started only
when the fetch will want that pack, taken by the fetch only if it is the pack it would read,
and whatever it brings handled exactly as the fetch's own read."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from bsr_team_cache._deadline import deadline_scope
from bsr_team_cache.cli import main
from bsr_team_cache.domain.buflock import read_buf_lock
from bsr_team_cache.errors import InvalidContentError, RegistryError
from bsr_team_cache.oci import direct, open_registry
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.store import LocalStore, index
from bsr_team_cache.store.index import INDEX_FILE
from bsr_team_cache.team import packs
from bsr_team_cache.team.pack_read import PackRead, pack_worth_reading, start_pack_read
from tests.team.test_packs import (
    TEAM,
    _manifest_for,
    _members_of_alices_store,
    _Recording,
    _Team,
    _tiers,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def team(tmp_path: Path, distribution: DistributionServer, bsr_env) -> _Team:
    """A team whose lock has its pack: alice resolved it, bob (the second machine) packed it."""
    team = _Team(tmp_path, distribution, bsr_env.host)
    team.fetch("alice", update_lock=True)
    assert team.fetch("bob").pack_published is True
    team.transport.requests.clear()
    return team


def _start(the_team: _Team, member: str = "carol", **overrides) -> PackRead | None:
    team = the_team
    arguments = {
        "team": TEAM,
        "namespace": team.ns,
        "registry": team.registry,
        "store_root": team.root / member / "store",
        **overrides,
    }
    return start_pack_read(team.project, **arguments)


def _pack_get(team: _Team, tag: str | None = None) -> str:
    return f"GET /v2/{team.repo}/manifests/{tag or team.tag}"


def test_the_fetch_takes_the_pack_read_before_it_loaded(team):
    early = _start(team)
    assert early is not None
    assert (early.repo, early.tag) == (team.repo, team.tag)
    report = team.fetch("carol", pack_read=early)
    assert _tiers(report) == {"local": 0, "team": 6, "bsr": 0}
    assert (report.pack, report.pack_used, report.warnings) == (team.tag, True, [])
    # The early read was the only request: the fetch did not read the pack again.
    assert team.transport.requests == [_pack_get(team)]


def test_a_read_of_another_pack_or_through_another_client_is_not_taken(team, distribution):
    wanted = {f"{d.module}:{d.commit}": d for d in read_buf_lock(team.project / "buf.lock").deps}
    other_tag = "lock-" + "0" * 64
    stale = PackRead(team.registry, team.repo, other_tag, wanted)
    report = team.fetch("carol", pack_read=stale)
    assert (report.pack_used, report.warnings) == (True, [])
    assert sorted(team.transport.requests) == sorted([_pack_get(team, other_tag), _pack_get(team)])

    team.transport.requests.clear()
    elsewhere = _Recording()
    other_client = HTTPRegistry(distribution.url, transport=elsewhere)
    foreign = PackRead(other_client, team.repo, team.tag, wanted)
    report = team.fetch("dave", pack_read=foreign)
    assert (report.pack_used, report.warnings) == (True, [])
    assert team.transport.requests == [_pack_get(team)]  # the fetch read it itself
    assert elsewhere.requests == [_pack_get(team)]


def test_a_bad_pack_read_early_is_the_same_warning_as_the_fetchs_own(team):
    members = _members_of_alices_store(team)
    members[1] = members[0]  # listed twice
    _, config, layer = packs.encode_pack(members)
    for data in (config, layer):
        team.registry.push_blob(team.repo, data, sha256_digest(data))

    def forge() -> None:  # again before each fetch: each replaces a bad pack with a sound one
        manifest = _manifest_for(config, layer)
        team.registry.push_manifest(team.repo, team.tag, manifest, OCI_MANIFEST)

    forge()
    early = team.fetch("carol", pack_read=_start(team, "carol"))
    forge()
    own = team.fetch("dave")
    for report in (early, own):
        assert _tiers(report) == {"local": 0, "team": 6, "bsr": 0}
        assert report.pack_used is False
    assert early.warnings == own.warnings
    assert len(early.warnings) == 1
    assert early.warnings[0].startswith("lock pack unusable (")
    assert "is listed twice" in early.warnings[0]


def test_an_unreachable_registry_read_early_is_the_same_as_without(team, bsr_env):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = HTTPRegistry(f"http://127.0.0.1:{port}", max_attempts=1)
    team.registry = down
    early = team.fetch("carol", pack_read=_start(team, "carol", registry=down))
    own = team.fetch("dave")
    for report in (early, own):
        assert _tiers(report) == {"local": 0, "team": 0, "bsr": 6}
        assert report.registry_down is not None
    assert early.warnings == own.warnings


@pytest.mark.parametrize(("stored", "started"), [(0, True), (3, True), (4, False), (6, False)])
def test_a_read_starts_only_when_the_store_lacks_most_of_the_lock(team, stored, started):
    deps = read_buf_lock(team.project / "buf.lock").deps
    with (
        LocalStore(team.root / "alice" / "store") as alices,
        LocalStore(team.root / "carol" / "store") as store,
    ):
        for dep in deps[:stored]:
            store.put(alices.get(dep.module, dep.commit))
    early = _start(team)
    assert (early is not None) is started
    if early is not None:
        early.result()
    assert team.transport.requests == ([_pack_get(team)] if started else [])


@pytest.mark.parametrize(("recorded", "started"), [("b5:" + "0" * 128, True), (None, False)])
def test_a_module_stored_with_another_digest_is_missing_one_with_none_is_not(
    team, recorded, started
):
    """Another digest: the fetch refetches it. None (stored by a version that did not record
    digests): the fetch reads it from the store and checks it, so no pack for it."""
    deps = read_buf_lock(team.project / "buf.lock").deps
    with (
        LocalStore(team.root / "alice" / "store") as alices,
        LocalStore(team.root / "carol" / "store") as store,
    ):
        for dep in deps:
            store.put(alices.get(dep.module, dep.commit))
    assert _start(team) is None  # all six stored as pinned
    db = sqlite3.connect(team.root / "carol" / "store" / INDEX_FILE)
    with db:
        for dep in deps[:3]:
            db.execute(
                "UPDATE entries SET digest = ? WHERE module = ? AND commit_id = ?",
                (recorded, str(dep.module), dep.commit),
            )
    db.close()
    early = _start(team)
    assert (early is not None) is started
    if early is not None:
        early.result()
    else:  # and the fetch finds all six in the store, with no request
        assert _tiers(team.fetch("carol")) == {"local": 6, "team": 0, "bsr": 0}
        assert team.transport.requests == []


def test_nothing_starts_without_a_lock_team_or_index_it_can_use(team, tmp_path):
    lock = team.project / "buf.lock"
    text = lock.read_text()
    assert _start(team, team="Not A Team") is None
    buf_yaml = team.project / "buf.yaml"
    config = buf_yaml.read_bytes()
    buf_yaml.unlink()  # not a buf project: the fetch says so, before any request
    assert _start(team) is None
    buf_yaml.write_bytes(config)
    lock.write_text("version: v2\ndeps: [\n")
    assert _start(team) is None
    lock.unlink()
    assert _start(team) is None
    one_dep = text.split("\n  - name:")[0] + "\n  - name:" + text.split("\n  - name:")[1]
    lock.write_text(one_dep.rstrip("\n") + "\n")
    assert len(read_buf_lock(lock).deps) == 1
    assert _start(team) is None
    lock.write_text(text)
    unreadable = team.root / "erin" / "store"
    unreadable.mkdir(parents=True)
    (unreadable / INDEX_FILE).write_bytes(b"not a database")
    assert _start(team, "erin") is None
    too_long = tmp_path / ("x" * 300)  # a store path the system refuses (ENAMETOOLONG)
    assert _start(team, store_root=too_long) is None
    assert index.open_existing(too_long) is None
    locked = sqlite3.connect(team.root / "bob" / "store" / INDEX_FILE, isolation_level=None)
    locked.execute("PRAGMA journal_mode = DELETE")  # where a writer shuts readers out
    locked.execute("BEGIN EXCLUSIVE")
    try:
        assert index.open_existing(team.root / "bob" / "store", wait=0.05) is None
        assert _start(team, "bob") is None  # not waited for: the fetch decides
    finally:
        locked.execute("ROLLBACK")
        locked.close()
    assert team.transport.requests == []


def test_a_lock_whose_deps_lack_digests_starts_nothing(tmp_path):
    """A v1 lock with b1/b3 or empty digests: the fetch asks the BSR for digests first, so its
    pack tag is not known yet."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "buf.yaml").write_text("version: v1\n")
    deps = "".join(
        f"  - remote: localhost:1234\n    owner: acme\n    repository: {name}\n"
        f"    commit: {commit}\n    digest: {digest}\n"
        for name, commit, digest in [
            ("pets", "0" * 31 + "1", '""'),
            ("money", "0" * 31 + "2", "b1-abc"),
        ]
    )
    (project / "buf.lock").write_text(f"version: v1\ndeps:\n{deps}")
    arguments = {"team": TEAM, "namespace": "", "store_root": tmp_path / "store"}
    registry = open_registry(f"oci-layout:{tmp_path / 'registry'}")
    assert start_pack_read(project, registry=registry, **arguments) is None


def test_the_read_is_not_waited_for_beyond_the_callers_deadline(team):
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        registry = HTTPRegistry(f"http://127.0.0.1:{silent.getsockname()[1]}", max_attempts=1)
        wanted = {
            f"{d.module}:{d.commit}": d for d in read_buf_lock(team.project / "buf.lock").deps
        }
        early = PackRead(registry, team.repo, team.tag, wanted)
        with deadline_scope(0.3), pytest.raises(RegistryError) as caught:
            early.result()
        assert str(caught.value) == (
            f"{registry.describe()}: the lock pack {team.tag[:17]}: the deadline passed"
        )
    finally:
        silent.close()


@pytest.mark.parametrize(
    ("missing", "total", "worth"),
    [(0, 0, False), (1, 1, False), (2, 2, True), (2, 4, True), (2, 5, False), (3, 6, True)],
)
def test_a_pack_is_worth_reading_for_most_of_a_lock_and_two_modules_at_least(missing, total, worth):
    assert pack_worth_reading(missing, total) is worth


def test_the_cli_reads_a_cold_machines_pack_before_loading_the_fetch(
    team, distribution, tmp_path, monkeypatch, capsys
):
    readers: list[str] = []
    direct_reads: list[tuple[str, str]] = []
    real_decode_pack, real_direct = packs.decode_pack, direct.DirectReader.read_manifest

    def decode_pack(*args, **kwargs):
        readers.append(threading.current_thread().name)
        return real_decode_pack(*args, **kwargs)

    def read_manifest_directly(reader, repo, reference):
        direct_reads.append((threading.current_thread().name, reference))
        return real_direct(reader, repo, reference)

    monkeypatch.setattr(packs, "decode_pack", decode_pack)
    monkeypatch.setattr(direct.DirectReader, "read_manifest", read_manifest_directly)
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "frank" / "store"))
    monkeypatch.setenv("BUF_CACHE_DIR", str(tmp_path / "frank" / "buf-cache"))
    argv = ["fetch", str(team.project), "--team", TEAM, "--registry"]
    argv.append(f"{distribution.url}/{team.ns}")

    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pack"] == {"tag": team.tag, "used": True, "published": False}
    assert report["hits"] == {"local": 0, "team": 6, "bsr": 0}
    assert readers == ["lock-pack-read"]  # once, early
    # The pack's manifest was the registry's first read, made without the HTTP stack.
    assert direct_reads == [("lock-pack-read", team.tag)]

    readers.clear()
    assert main([*argv, "-q"]) == 0  # everything in place: no pack, no registry
    assert readers == []
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "grace" / "store"))
    monkeypatch.setenv("BUF_CACHE_DIR", str(tmp_path / "grace" / "buf-cache"))
    assert main([*argv, "-q", "--no-packs"]) == 0
    assert readers == []
    # A new registry client reads directly until its HTTP client is built (here a module's
    # manifest, tagged with its commit, by a worker of the module-by-module fetch).
    commits = {dep.commit for dep in read_buf_lock(team.project / "buf.lock").deps}
    assert direct_reads[0][1] == team.tag and len(direct_reads) >= 2
    assert {ref for _, ref in direct_reads[1:]} <= commits


def test_a_new_machine_asks_bufs_version_after_the_packs_request(
    team, distribution, tmp_path, monkeypatch
):
    """Starting `buf --version` takes a few ms: on a new machine the pack's request goes
    first; where a store is, the layout check starts first, as the in-place check awaits it."""
    from bsr_team_cache.bufcache import layout
    from bsr_team_cache.team import pack_read

    started: list[str] = []
    real_layout_check, real_pack_read = layout.start_layout_check, pack_read.start_pack_read

    def start_layout_check(*args, **kwargs):
        started.append("layout check")
        return real_layout_check(*args, **kwargs)

    def start_pack_read(*args, **kwargs):
        started.append("pack read")
        return real_pack_read(*args, **kwargs)

    monkeypatch.setattr(layout, "start_layout_check", start_layout_check)
    monkeypatch.setattr(pack_read, "start_pack_read", start_pack_read)
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "frank" / "store"))
    monkeypatch.setenv("BUF_CACHE_DIR", str(tmp_path / "frank" / "buf-cache"))
    argv = ["fetch", str(team.project), "--team", TEAM, "--registry"]
    argv += [f"{distribution.url}/{team.ns}", "-q"]
    assert main(argv) == 0
    assert started == ["pack read", "layout check"]
    started.clear()
    assert main(argv) == 0  # everything in place
    assert started == ["layout check"]


@pytest.mark.parametrize("output", ["-q", "--json"])
def test_a_store_the_system_refuses_is_a_warning_whatever_the_output(
    team, distribution, tmp_path, monkeypatch, capsys, output
):
    """The early read and the in-place check only consult the store: one that cannot be opened
    (here a path the system refuses) leaves the fetch to go on without it, as it says."""
    store = tmp_path / ("x" * 300)
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(store))
    monkeypatch.setenv("BUF_CACHE_DIR", str(tmp_path / "buf-cache"))
    argv = ["fetch", str(team.project), "--team", TEAM, "--registry"]
    assert main([*argv, f"{distribution.url}/{team.ns}", output]) == 0
    out, err = capsys.readouterr()
    assert err == (
        f"warning: local store {store}: cannot use it (File name too long); point --store-dir or"
        " BSR_TEAM_CACHE_DIR at a writable directory; going on without the local store\n"
    )
    if output == "--json":
        assert json.loads(out)["hits"] == {"local": 0, "team": 6, "bsr": 0}


def test_a_new_machine_sends_the_request_before_loading_sqlite_or_the_in_place_check(
    team, tmp_path
):
    """No store yet: the pack's read starts, and its reader is ready, with neither sqlite3 nor
    the in-place check (placed.py, usage recording) loaded; they load while it travels."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from bsr_team_cache.oci import open_registry\n"
        "from bsr_team_cache.team.pack_read import start_pack_read\n"
        f"registry = open_registry('http://127.0.0.1:9/{team.ns}')\n"
        f"read = start_pack_read(Path({str(team.project)!r}), team={TEAM!r}, namespace='',"
        f" registry=registry, store_root=Path({str(tmp_path / 'new-store')!r}))\n"
        "print(type(read).__name__, registry._direct is not None,"
        " sorted(m for m in ('sqlite3', 'bsr_team_cache.placed', 'httpx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout == "PackRead True []\n", out.stderr


def test_a_store_lacking_one_module_has_its_manifest_read_before_the_fetch_loads(
    team, distribution, monkeypatch
):
    """No pack for one missing module: its manifest, the fetch's first read, starts early
    instead, and the fetch takes that answer (one read of it, made by the early thread)."""
    lock = read_buf_lock(team.project / "buf.lock")
    team.fetch("carol")
    missing = lock.deps[2]
    with LocalStore(team.root / "carol" / "store") as store:
        store._db.execute("DELETE FROM entries WHERE commit_id = ?", (missing.commit,))
    reads: list[tuple[str, str]] = []
    real = direct.DirectReader.read_manifest

    def recording(reader, repo, reference):
        reads.append((threading.current_thread().name, reference))
        return real(reader, repo, reference)

    monkeypatch.setattr(direct.DirectReader, "read_manifest", recording)
    registry = open_registry(distribution.url)
    assert _start(team, registry=registry) is None  # no pack for one module
    assert registry._early is not None and registry._early[1] == missing.commit
    report = team.fetch("carol", registry=registry, buf_cache=team.root / "carol" / "buf-cache-2")
    assert _tiers(report) == {"local": 5, "team": 1, "bsr": 0}
    assert reads == [("first-read", missing.commit)]
    assert registry._early is None
    registry.close()
    # A store lacking none, or two or more (a pack then), starts no such read.
    for store_root in (team.root / "carol" / "store", team.root / "new" / "store"):
        other = open_registry(distribution.url)
        pack_read = _start(team, registry=other, store_root=store_root)
        assert other._early is None
        if pack_read is not None:
            pack_read.result()
        other.close()


def test_fetches_taking_early_reads_of_one_module_on_one_store_download_it_once(
    team, distribution, tmp_path
):
    """Two machines' fetches sharing a store, each having started the read of the one module
    the store lacks (here absent from the team registry: the BSR has it): one downloads it,
    the other waits on its fill lock and finds it stored. Also with --no-packs, which reads
    no pack but still starts that read."""
    lock = read_buf_lock(team.project / "buf.lock")
    shared = tmp_path / "shared-store"
    team.fetch("carol", store=shared)
    missing = lock.deps[2]
    with LocalStore(shared) as store:
        store._db.execute("DELETE FROM entries WHERE commit_id = ?", (missing.commit,))
    empty = f"e{team.ns}"  # a namespace of the registry where the team published nothing
    registries = {}
    for member, reads_packs in (("dave", True), ("erin", False)):
        registries[member] = open_registry(distribution.url)
        read = _start(
            team, registry=registries[member], store_root=shared, packs=reads_packs, namespace=empty
        )
        assert read is None and registries[member]._early is not None
        assert registries[member]._early[1] == missing.commit
    start = threading.Barrier(2)
    reports = {}

    def fetch_as(member: str) -> None:
        start.wait()
        registry = registries[member]
        reports[member] = team.fetch(member, store=shared, registry=registry, namespace=empty)

    threads = [threading.Thread(target=fetch_as, args=(m,)) for m in registries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(_tiers(r)["bsr"] for r in reports.values()) == [0, 1]
    assert sorted(_tiers(r)["local"] for r in reports.values()) == [5, 6]
    # The one that downloaded took its early read (the registry had none); the other never
    # read the registry: its early answer went unused.
    assert sorted(registry._early is None for registry in registries.values()) == [False, True]
    for registry in registries.values():
        registry.close()


# -- a pack whose layer is a blob of its own, read as it arrives ---------------------------------


class _Arriving:
    """The team's registry, whose ``open_blob`` hands a pack's layer over in two pieces: the
    bytes up to ``gate_at``, then (once ``release`` is set) the rest, unless ``cut``; then,
    once ``before_end`` is set, ``end`` raised if given."""

    def __init__(self, registry, gate_at: int, *, cut: bool = False, end=None) -> None:
        self._registry = registry
        self.gate_at, self.cut, self.end = gate_at, cut, end
        self.release, self.before_end = threading.Event(), threading.Event()
        self.opened: list[str] = []

    def __getattr__(self, name):
        return getattr(self._registry, name)

    def open_blob(self, repo, digest, max_bytes):
        self.opened.append(digest)
        data = b"".join(self._registry.open_blob(repo, digest, max_bytes))

        def chunks():
            yield data[: self.gate_at]
            if not self.cut:
                assert self.release.wait(30), "the first member was never taken"
                yield data[self.gate_at :]
            if self.end is not None:
                assert self.before_end.wait(30)
                raise self.end

        return chunks()


def _separate_layer_pack(team) -> list[tuple[bytes, bytes]]:
    """Re-push the lock's pack with its layer as a blob of its own (as a pack past 1 MiB of
    layers has it); its members."""
    members = _members_of_alices_store(team)
    _, config, layer = packs.encode_pack(members)
    for data in (config, layer):
        team.registry.push_blob(team.repo, data, sha256_digest(data))
    manifest = packs._pack_manifest(config, layer, False, len(members))
    team.registry.push_manifest(team.repo, team.tag, manifest, OCI_MANIFEST)
    return members


def _placing(monkeypatch, events: dict[int, threading.Event]) -> list[str]:
    """Members placed, in order; ``events[n]`` is set once n members are placed."""
    from bsr_team_cache.team import fetch as fetch_module

    placed: list[str] = []
    real_place = fetch_module._Run.place

    def place(self, dep, artifact):
        real_place(self, dep, artifact)
        placed.append(dep.commit)
        if len(placed) in events:
            events[len(placed)].set()

    monkeypatch.setattr(fetch_module._Run, "place", place)
    return placed


def test_a_separate_layer_is_taken_member_by_member_as_it_arrives(team, monkeypatch):
    """The first member is checked and placed while the rest of the layer is held back: the
    fetch's work overlaps the transfer."""
    members = _separate_layer_pack(team)
    arriving = _Arriving(team.registry, len(members[0][1]))
    placed = _placing(monkeypatch, {1: arriving.release})
    report = team.fetch("carol", registry=arriving, pack_read=_start(team, registry=arriving))
    assert (report.pack_used, report.warnings, report.pack_published) == (True, [], False)
    assert _tiers(report) == {"local": 0, "team": 6, "bsr": 0}
    assert len(arriving.opened) == 1  # the layer, read once
    deps = read_buf_lock(team.project / "buf.lock").deps
    assert sorted(placed) == sorted(d.commit for d in deps)


def test_a_layer_cut_short_leaves_its_other_members_to_be_fetched_one_by_one(team, monkeypatch):
    """The registry fails mid-layer: the member whose bytes came stands, the others come on
    their own, one warning says so, and the pack (not at fault) is not replaced."""
    members = _separate_layer_pack(team)
    cut = RegistryError("the connection was reset")
    arriving = _Arriving(team.registry, len(members[0][1]) + 10, cut=True, end=cut)
    _placing(monkeypatch, {1: arriving.before_end})
    report = team.fetch("carol", registry=arriving, pack_read=_start(team, registry=arriving))
    assert _tiers(report) == {"local": 0, "team": 6, "bsr": 0}
    (warning,) = report.warnings
    assert warning.startswith("lock pack unusable (")
    assert "the connection was reset" in warning
    assert warning.endswith("; fetching its other 5 modules one by one")
    assert (report.pack_used, report.pack_published) == (True, False)


def test_a_layer_found_corrupt_after_every_member_was_taken_is_replaced(team, monkeypatch):
    """Its digest is checked after its last byte: the members, each checked on its own, stand;
    the pack is said to be unusable and this machine replaces it."""
    members = _separate_layer_pack(team)
    corrupt = InvalidContentError("blob sha256:0123 is corrupt")
    arriving = _Arriving(team.registry, len(members[0][1]), end=corrupt)
    _placing(monkeypatch, {1: arriving.release, 6: arriving.before_end})
    report = team.fetch("carol", registry=arriving, pack_read=_start(team, registry=arriving))
    assert _tiers(report) == {"local": 0, "team": 6, "bsr": 0}
    (warning,) = report.warnings
    assert warning.startswith("lock pack unusable (")
    assert warning.endswith("blob sha256:0123 is corrupt)")
    assert (report.pack_used, report.pack_published) == (True, True)
