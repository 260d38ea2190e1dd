"""The team layer against real servers: dev-bsr, CNCF Distribution, real buf."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from bsr_team_cache.audit.log import AuditQuery
from bsr_team_cache.audit.log import read as read_audit
from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.domain.buflock import read_buf_lock
from bsr_team_cache.errors import BSRTeamCacheError, UsageError
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.cache import TeamCache
from bsr_team_cache.team.config import STRATEGIES, make_config, read_team_config
from bsr_team_cache.team.fetch import fetch
from tests.bsr.test_real_buf import make_project
from tests.conftest import SHOP_DEP_CLOSURE, read_team_settings, start_dev_bsr

pytestmark = pytest.mark.slow


class _CountingTransport(httpx.HTTPTransport):
    """The real transport; counts completed blob uploads and mounts."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads: list[str] = []
        self.manifests: list[str] = []
        self.mounts = 0
        self.module_manifest_reads = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "/dependencies/" in request.url.path:
            self.module_manifest_reads += "/manifests/" in request.url.path
        if request.method == "PUT" and "/blobs/uploads/" in request.url.path:
            self.uploads.append(request.url.params.get("digest", ""))
        if request.method == "PUT" and "/manifests/" in request.url.path:
            self.manifests.append("sha256:" + hashlib.sha256(request.read()).hexdigest())
        response = super().handle_request(request)
        if "mount" in request.url.params and response.status_code == 201:
            self.mounts += 1
        return response


def _cache(team: str, registry, store_dir: Path, member: str, ns: str = "") -> TeamCache:
    return TeamCache(
        team,
        registry=registry,
        bsr=BSRModuleClient(),
        store=LocalStore(store_dir),
        member=member,
        namespace=ns,
    )


def _ns() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def test_config_defaults_strategies_and_validation(tmp_path: Path) -> None:
    config = make_config("platform-team")
    assert (config.cache_strategy, config.max_cache_size_mb, config.sync_frequency_minutes) == (
        "balanced",
        1000,
        60,
    )
    assert config.shared_cache and config.bundle_auto_creation and config.preload_top == 10
    aggressive = make_config("platform-team", cache_strategy="aggressive")
    assert (aggressive.max_cache_size_mb, aggressive.preload_top) == (2000, 20)
    assert STRATEGIES["conservative"].sync_frequency_minutes == 120
    with pytest.raises(UsageError, match="unknown cache strategy 'fast'"):
        make_config("t", cache_strategy="fast")
    with pytest.raises(UsageError, match="positive number of MB"):
        make_config("t", max_cache_size_mb=-5)
    with pytest.raises(UsageError, match="invalid member name 'bob smith'"):
        make_config("t", members=["bob smith"])
    with pytest.raises(UsageError, match="invalid team name"):
        make_config("Platform Team")
    assert make_config("t", members=["alice@company.com", "bob", "bob"]).members == (
        "alice@company.com",
        "bob",
    )


def test_setup_is_shared_through_the_registry(bsr_env, tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "reg")
    alice = _cache("platform-team", registry, tmp_path / "a", "alice")
    alice.setup(["bob"], cache_strategy="aggressive")  # the creator is the first admin
    bob = _cache("platform-team", registry, tmp_path / "b", "bob")
    assert bob.config().roles == {"alice": "admin"}
    assert bob.config().role_of("bob") == "member"
    with pytest.raises(UsageError) as refused:
        bob.setup(["charlie"])
    assert str(refused.value) == (
        "only admins of team platform-team change its configuration; you are 'bob' (member)."
        " Ask one of: alice"
    )
    alice.setup(roles={"bob": "admin"})
    config = bob.setup(["charlie"])  # adds a member, keeps the strategy
    assert config.members == ("alice", "bob", "charlie")
    assert config.cache_strategy == "aggressive" and config.max_cache_size_mb == 2000
    stored = read_team_config(registry, "platform-team")
    assert stored is not None and stored.updated_by == "bob"
    changed = bob.setup(cache_strategy="conservative")
    assert (changed.max_cache_size_mb, changed.sync_frequency_minutes) == (500, 120)
    removed = bob.setup(remove_members=["alice"], roles={"charlie": "reader"})
    assert (removed.members, removed.roles) == (
        ("bob", "charlie"),
        {"bob": "admin", "charlie": "reader"},
    )
    with pytest.raises(UsageError, match="would have no admin left"):
        bob.setup(remove_members=["bob"])
    entries = [
        (e["operation"], e["member"], e["refs"])
        for e in read_audit(tmp_path / "a", AuditQuery()).records
        + read_audit(tmp_path / "b", AuditQuery()).records
        if e["operation"] in ("member-add", "member-remove", "role-change")
    ]
    assert entries == [
        ("member-add", "alice", ["member:alice:admin"]),
        ("member-add", "alice", ["member:bob:member"]),
        ("role-change", "alice", ["member:bob:member->admin"]),
        ("member-add", "bob", ["member:charlie:member"]),
        ("member-remove", "bob", ["member:alice"]),
        ("role-change", "bob", ["member:charlie:member->reader"]),
    ]


@pytest.fixture(scope="module")
def ten_module_bsr(tmp_path_factory: pytest.TempPathFactory):
    """dev-bsr with the samples plus generated modules: a project of exactly 10 modules."""
    from bsr_team_cache.samples import write_generated_modules, write_sample_data
    from tests.conftest import start_dev_bsr

    data = write_sample_data(tmp_path_factory.mktemp("ten") / "data")
    extra = write_generated_modules(data, 4)
    server = start_dev_bsr(data, tmp_path_factory.mktemp("ten-bsr"))
    yield server, ["acme/orders", "acme/notes", "acme/common", *extra]
    server.stop()


def test_bundle_round_trip_without_duplicate_blobs(
    ten_module_bsr, tmp_path: Path, distribution: DistributionServer, buf_bin: str, monkeypatch
) -> None:
    server, modules = ten_module_bsr
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_cert))
    ns = _ns()
    counting = _CountingTransport()
    registry = HTTPRegistry(distribution.url, transport=counting)
    deps = [f"{server.host}/{m}" for m in modules]

    def project(root: Path) -> Path:
        root.mkdir(parents=True)
        (root / "buf.yaml").write_text("version: v2\ndeps:\n" + "".join(f"  - {d}\n" for d in deps))
        return root

    def member_fetch(project_dir: Path, member: str, **options):
        """A fetch by ``member``, with its own store and buf cache."""
        with LocalStore(tmp_path / f"{member}-store") as store, BSRModuleClient() as bsr:
            return fetch(
                project_dir,
                team="platform-team",
                registry=registry,
                bsr=bsr,
                store=store,
                buf_cache=tmp_path / f"{member}-cache",
                namespace=ns,
                **options,
            )

    # Four members fetch the same 10 modules.
    stored = []
    for i in range(4):
        report = member_fetch(project(tmp_path / f"p{i}"), f"m{i}", update_lock=True)
        assert len(report.modules) == 10
        assert report.count("bsr") == (10 if i == 0 else 0)
        stored.append(distribution.blob_digests())
    # Members 2-4 added no blob but the lock pack member 2 made (the second machine to use
    # the lock): its manifest, config and layer.
    from bsr_team_cache.team.names import pack_repository, pack_tag

    pack_repo = pack_repository("platform-team", ns)
    pack_tag_ = pack_tag(read_buf_lock(tmp_path / "p0" / "buf.lock").deps)
    pack_bytes, _ = registry.read_manifest(pack_repo, pack_tag_)
    pack = json.loads(pack_bytes)
    assert set(stored[3]) - set(stored[0]) == {
        "sha256:" + hashlib.sha256(pack_bytes).hexdigest(),
        pack["config"]["digest"],
        pack["layers"][0]["digest"],
    }
    assert set(stored[0]) <= set(stored[3])
    uploads_after_members = len(counting.uploads)

    # Two bundles over the same modules: no layer is uploaded again, they are mounted.
    alice = _cache("platform-team", registry, tmp_path / "m0-store", "alice", ns)
    first = alice.create_bundle(deps, "platform-apis", "Common platform API dependencies")
    second = alice.create_bundle(deps[:5], "shop-apis", "A subset")
    assert first.endswith("/bundles/platform-apis:v1") and second.endswith(":v1")
    from bsr_team_cache.team.bundles import bundle_repository, read_bundle

    found = read_bundle(registry, bundle_repository("platform-team", "platform-apis", ns))
    assert found is not None
    layers = {m.layer_digest for m in found[0].members}
    assert len(layers) == 10
    new_uploads = set(counting.uploads[uploads_after_members:])
    assert not layers & new_uploads  # every layer was mounted, none uploaded again
    assert counting.mounts >= 10
    after = distribution.blob_digests()
    added = set(after) - set(stored[3])  # what the bundles added
    assert not added & layers
    assert added <= new_uploads | set(counting.manifests)
    assert alice.create_bundle(deps, "platform-apis", "again").endswith(":v2")

    # A fresh member: the fetch uses the bundle (one manifest + parallel layers). Not knowing
    # the team configuration yet, it asks for the module manifests meanwhile (10 deps). (The
    # lock's pack would serve it in one request: turned off to see what bundles do alone.)
    fresh = project(tmp_path / "fresh")
    (fresh / "buf.lock").write_text((tmp_path / "p0" / "buf.lock").read_text())
    (fresh / "x.proto").write_text('syntax = "proto3";\nimport "bench/lib0/v1/file0.proto";\n')
    reads_before = counting.module_manifest_reads
    report = member_fetch(fresh, "fresh", packs=False)
    assert report.count("team") == 10
    assert report.bundles and report.bundles[0].startswith("platform-apis:")
    assert all(m.bundle for m in report.modules)
    assert counting.module_manifest_reads - reads_before == 10
    # Another fresh member names the bundle: no module is asked for one by one.
    reads_before = counting.module_manifest_reads
    named = member_fetch(fresh, "named", bundle="platform-apis")
    assert named.count("team") == 10 and all(m.bundle for m in named.modules)
    assert counting.module_manifest_reads == reads_before
    env = {**os.environ, "BUF_CACHE_DIR": str(tmp_path / "fresh-cache")}
    built = subprocess.run(
        [buf_bin, "build", "-o", os.devnull],
        cwd=fresh,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    config = read_team_settings(registry, "platform-team", ns)
    assert config is not None and {b.name for b in config.bundles} == {"platform-apis", "shop-apis"}
    raw = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{distribution.url.removeprefix('http://')}/{first}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    manifest = json.loads(raw.stdout)
    assert manifest["artifactType"] == "application/vnd.buf.module.bundle.v1"
    assert len(manifest["layers"]) == 10
    # skopeo copies every kind of artifact we push: a bundle, the bundle index, a label
    # index (module artifacts are covered in test_fetch.py).
    host = distribution.url.removeprefix("http://")
    first_module = found[0].members[0].artifact_module
    from bsr_team_cache.domain.moduleref import parse_module_name
    from bsr_team_cache.team.labels import label_index_repository

    label_repo = label_index_repository("platform-team", parse_module_name(first_module), ns)
    for i, ref in enumerate(
        [first, f"{ns}/teams/platform-team/bundle-index:latest", f"{label_repo}:labels"]
    ):
        copied = subprocess.run(
            [
                "skopeo",
                "copy",
                "--src-tls-verify=false",
                f"docker://{host}/{ref}",
                f"dir:{tmp_path / f'copy{i}'}",
            ],
            capture_output=True,
            text=True,
        )
        assert copied.returncode == 0, (ref, copied.stderr)
        assert (tmp_path / f"copy{i}" / "manifest.json").is_file()


def test_share_pull_and_read_only_refusal(
    bsr_env, tmp_path: Path, distribution: DistributionServer
) -> None:
    ns = _ns()
    registry = HTTPRegistry(distribution.url)
    host = bsr_env.host
    a = _cache("platform-team", registry, tmp_path / "a", "alice", ns)
    a.create_bundle([f"{host}/acme/pets:v1"], "common-apis", "shared pets")
    ref = a.share_bundle("common-apis", ["backend-team"], permissions="read-only")
    assert "shared/organization/bundles/common-apis" in ref

    b = _cache("backend-team", registry, tmp_path / "b", "bob", ns)
    bundle, artifacts = b.pull_bundle("common-apis", owner_team="platform-team")
    assert bundle.team == "platform-team" and {
        str(x.module).split("/", 1)[1] for x in artifacts
    } >= {"acme/pets"}
    # Team B makes its own bundle of the same name and tries to share it: refused.
    b.create_bundle([f"{host}/acme/money"], "common-apis", "B's own")
    with pytest.raises(
        BSRTeamCacheError,
        match=r"refusing to overwrite .*read-only share owned by team 'platform-team'",
    ):
        b.share_bundle("common-apis", ["frontend-team"])
    # A team it was not shared with cannot pull it.
    c = _cache("frontend-team", registry, tmp_path / "c", "carol", ns)
    with pytest.raises(BSRTeamCacheError, match="not with 'frontend-team'"):
        c.pull_bundle("common-apis", owner_team="platform-team")
    config = read_team_settings(registry, "platform-team", ns)
    assert config is not None and config.shares[0].teams == ("backend-team",)
    with pytest.raises(UsageError, match="unknown permissions"):
        a.share_bundle("common-apis", ["x"], permissions="admin")


def test_sync_pushes_local_modules_pulls_hot_set_and_evicts(bsr_env, tmp_path: Path) -> None:
    host = bsr_env.host
    team_registry = OCILayoutRegistry(tmp_path / "team")
    # Alice warmed modules while pointed at another registry: they are only in her store.
    other = _cache(
        "platform-team", OCILayoutRegistry(tmp_path / "elsewhere"), tmp_path / "a", "alice"
    )
    other.warm([f"{host}/acme/orders"])
    project = make_project(tmp_path / "p", host)
    with LocalStore(tmp_path / "a") as store, BSRModuleClient() as bsr:
        fetch(
            project,
            team="platform-team",
            registry=OCILayoutRegistry(tmp_path / "elsewhere"),
            bsr=bsr,
            store=store,
            buf_cache=None,
            update_lock=True,
        )
    alice = _cache("platform-team", team_registry, tmp_path / "a", "alice")
    alice.setup(["alice", "bob"], cache_strategy="conservative")
    report = alice.sync()
    assert len(report.pushed) == len(SHOP_DEP_CLOSURE)
    assert alice.sync().pushed == []  # idempotent

    # Bob's empty store gets the team's hot set (top 5 for "conservative") from Alice's usage.
    bob = _cache("platform-team", team_registry, tmp_path / "b", "bob")
    pulled = bob.sync().pulled
    assert len(pulled) == STRATEGIES["conservative"].preload_top
    assert bob.store.stats().entries == 5


def _big_module(data: Path, megabytes: float) -> None:
    """acme/big: one .proto whose comment is random text, so that gzip cannot shrink it much."""
    text = base64.b64encode(random.Random(7).randbytes(int(megabytes * 3 / 4 * 1e6))).decode()
    lines = "\n".join("// " + text[i : i + 76] for i in range(0, len(text), 76))
    proto = data / "acme" / "big" / "main" / "acme" / "big" / "v1" / "big.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text(f'syntax = "proto3";\n{lines}\npackage acme.big.v1;\n')


def test_sync_evicts_least_recently_used_down_to_the_team_limit(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    shutil.copytree(sample_data, data)
    _big_module(data, megabytes=1.5)
    server = start_dev_bsr(data, tmp_path / "bsr")
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_cert))
        host = server.host
        alice = _cache(
            "platform-team", OCILayoutRegistry(tmp_path / "team"), tmp_path / "a", "alice"
        )
        alice.setup(["alice"], max_cache_size_mb=1)
        for module in ("acme/big", "acme/common", "acme/notes"):  # the big one used first
            alice.warm([f"{host}/{module}"])
        entries = {e.module: e for e in alice.store.entries()}
        big = entries[f"{host}/acme/big"]
        small = sum(e.size for e in entries.values()) - big.size
        assert big.size > 1024 * 1024 > small  # only the big one has to go
        report = alice.sync()
        assert report.evicted == [f"{host}/acme/big:{big.commit}"]
        assert sorted(e.module for e in alice.store.entries()) == [
            f"{host}/acme/common",
            f"{host}/acme/notes",
        ]
        # Under the limit, the next sync evicts nothing.
        assert alice.sync().evicted == []
    finally:
        server.stop()


def _build_three_times(project: Path, registry, tmp_path: Path) -> None:
    """Three fetches of one project into one local store (fresh buf caches each time)."""
    with LocalStore(tmp_path / "s") as store, BSRModuleClient() as bsr:
        for i in range(3):
            fetch(
                project,
                team="platform-team",
                registry=registry,
                bsr=bsr,
                store=store,
                buf_cache=tmp_path / f"c{i}",
                update_lock=i == 0,
            )


def test_metrics_from_usage(bsr_env, tmp_path: Path) -> None:
    host = bsr_env.host
    registry = OCILayoutRegistry(tmp_path / "reg")
    project = make_project(tmp_path / "p", host)
    _build_three_times(project, registry, tmp_path)
    cache = _cache("platform-team", registry, tmp_path / "s", "alice")
    metrics = cache.metrics()
    n = len(SHOP_DEP_CLOSURE)
    assert metrics.fetches == 3 and metrics.modules_fetched == 3 * n
    tiers = metrics.report["tiers"]
    assert {t: v["requests"] for t, v in tiers.items()} == {
        "local": 2 * n,
        "team": 0,
        "bundle": 0,
        "bsr": n,
    }
    assert metrics.cache_hit_rate == pytest.approx(2 / 3)
    lock = read_buf_lock(project / "buf.lock")
    size = sum(cache.store.get(d.module, d.commit).size for d in lock.deps)
    assert metrics.bandwidth_saved_mb == pytest.approx(2 * size / 1e6)  # the two local fetches


def test_eviction_spares_what_a_running_fetch_uses(sample_data, tmp_path: Path) -> None:
    """A fetch in another process holds its modules while it waits on a slow BSR; evicting
    everything meanwhile removes only what it does not hold."""
    import fcntl
    import sys
    import time

    from bsr_team_cache.domain.buflock import read_buf_lock
    from tests.conftest import start_dev_bsr

    server = start_dev_bsr(sample_data, tmp_path / "bsr", "--delay-ms", "300")
    store_dir = tmp_path / "store"
    env = {**os.environ, "SSL_CERT_FILE": str(server.ca_cert), "BSR_TEAM_CACHE_DIR": str(store_dir)}
    base = [sys.executable, "-m", "bsr_team_cache"]
    reg = ["--team", "t", "--registry", f"oci-layout:{tmp_path / 'reg'}"]
    try:
        project = make_project(tmp_path / "p", server.host)
        subprocess.run(
            [*base, "fetch", str(project), *reg, "--update-lock", "--no-buf-cache", "-q"],
            env=env,
            check=True,
        )
        subprocess.run(
            [*base, "warm", *reg, "--deps", f"{server.host}/grpc/grpc"],
            env=env,
            check=True,
            capture_output=True,
        )
        lock = read_buf_lock(project / "buf.lock")
        pets = next(d for d in lock.deps if d.module.name == "pets")
        held = next(d for d in lock.deps if d.module.name == "common")
        with LocalStore(store_dir) as store:
            store._drop(pets.module, pets.commit)  # the fetch will have to ask the slow BSR
            use_lock = store._lock_path(held.module, held.commit, "use")
            # Use locks are striped (the dev BSR's port is in module names, so stripes vary
            # from run to run): grpc is spared too when it shares a stripe with a held module.
            grpc = next(e for e in store.entries() if e.module.endswith("/grpc/grpc"))
            held_stripes = {store._lock_path(d.module, d.commit, "use") for d in lock.deps}
            spared = store._lock_path(grpc.module, grpc.commit, "use") in held_stripes
        empty_registry = ["--team", "t", "--registry", f"oci-layout:{tmp_path / 'empty'}"]
        holder = subprocess.Popen(  # pets is neither local nor in this registry: slow BSR
            [*base, "fetch", str(project), *empty_registry, "--no-buf-cache", "-q"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:  # until the running fetch holds its modules
            with open(use_lock, "a+b") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    break
            assert time.monotonic() < deadline and holder.poll() is None, "fetch never started"
            time.sleep(0.02)
        with LocalStore(store_dir) as store:
            evicted = store.evict(0)
        _, err = holder.communicate(timeout=60)
    finally:
        server.stop()
    assert [e.module.split("/", 1)[1] for e in evicted] == ([] if spared else ["grpc/grpc"])
    assert holder.returncode == 0, err
    with LocalStore(store_dir) as store:
        assert {(e.module, e.commit) for e in store.entries()} == {
            (str(d.module), d.commit) for d in lock.deps
        } | ({(grpc.module, grpc.commit)} if spared else set())


@pytest.mark.parametrize("backend", ["oci-layout", "distribution"])
def test_concurrent_setups_keep_every_member(
    backend: str, tmp_path: Path, distribution: DistributionServer
) -> None:
    """Eight members add themselves at the same moment, each in its own process: none is lost
    (read-modify-write retried on the version another member wrote)."""
    import sys

    if backend == "oci-layout":
        registry = f"oci-layout:{tmp_path / 'reg'}"
    else:
        registry = f"{distribution.url}/{_ns()}"
    env = {
        **os.environ,
        "BSR_TEAM_CACHE_REGISTRY": registry,
        "BSR_TEAM_CACHE_TEAM": "t",
        "BSR_TEAM_CACHE_MEMBER": "lead",  # the first to write creates the team: its admin
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bsr_team_cache",
                "setup",
                "--members",
                f"m{i}",
                "--store-dir",
                str(tmp_path / f"s{i}"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    from bsr_team_cache.oci import open_registry

    config = read_team_config(open_registry(registry), "t")
    assert config is not None and sorted(config.members) == ["lead", *(f"m{i}" for i in range(8))]
    assert config.roles == {"lead": "admin"}


def test_conflicting_write_is_detected(tmp_path: Path, distribution: DistributionServer) -> None:
    from bsr_team_cache.errors import ConflictError
    from bsr_team_cache.oci.documents import push_document

    for registry in (OCILayoutRegistry(tmp_path / "reg"), HTTPRegistry(distribution.url)):
        repo = f"{_ns()}/doc"
        first = push_document(
            registry, repo, "latest", "application/vnd.test.v1", {"a": 1}, expected=None
        )
        with pytest.raises(ConflictError, match="changed meanwhile"):
            push_document(
                registry, repo, "latest", "application/vnd.test.v1", {"a": 2}, expected=None
            )
        push_document(registry, repo, "latest", "application/vnd.test.v1", {"a": 3}, expected=first)


def test_sync_creates_a_bundle_from_co_fetched_modules(bsr_env, tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "reg")
    project = make_project(tmp_path / "p", bsr_env.host)
    _build_three_times(project, registry, tmp_path)  # three builds, same modules
    alice = _cache("platform-team", registry, tmp_path / "s", "alice")
    created = alice.sync().bundle_created
    assert "/bundles/auto-" in created
    config = read_team_settings(registry, "platform-team")
    assert config is not None and len(config.bundles[0].modules) == len(SHOP_DEP_CLOSURE)
    assert alice.sync().bundle_created == ""  # covered now: nothing new
    # Turned off: nothing is created.
    bob = _cache("platform-team", OCILayoutRegistry(tmp_path / "reg2"), tmp_path / "s", "bob")
    bob.setup(bundle_auto_creation=False)
    assert bob.sync().bundle_created == ""
