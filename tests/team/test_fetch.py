"""The fetch path with real processes: dev-bsr, CNCF Distribution or the on-disk layout, real buf.

Each "member" is a separate process with its own local store and buf cache, as on another
machine; they share only the team registry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from bsr_team_cache._testhooks import POINTS
from bsr_team_cache.bufcache.v3 import module_entry_dir
from bsr_team_cache.domain.buflock import BufLock, LockedDep, read_buf_lock, write_buf_lock
from bsr_team_cache.domain.moduleref import parse_module_ref
from bsr_team_cache.oci.artifact import module_repository
from bsr_team_cache.oci.devregistry import DistributionServer, free_port
from bsr_team_cache.store import LocalStore
from tests.bsr.test_real_buf import make_project
from tests.conftest import SHOP_DEP_CLOSURE, run_cli, start_dev_bsr

pytestmark = pytest.mark.slow
TEAM = "platform-team"


def _fetch_argv(project: Path, registry: str, *extra: str) -> list[str]:
    """`bsr-team-cache fetch` as a separate process would run it."""
    return [
        sys.executable,
        "-m",
        "bsr_team_cache",
        "fetch",
        str(project),
        "--team",
        TEAM,
        "--registry",
        registry,
        *extra,
    ]


def _fetch(project: Path, registry: str, member: Path, ca: Path, *extra: str):
    env = {
        "SSL_CERT_FILE": str(ca),
        "BUF_CACHE_DIR": str(member / "buf-cache"),
        "BSR_TEAM_CACHE_DIR": str(member / "store"),
    }
    return run_cli(*_fetch_argv(project, registry, "--json", *extra)[3:], env=env)


def _hits(result: subprocess.CompletedProcess) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["hits"]


def _buf_build(
    buf_bin: str, project: Path, member: Path, ca: Path, *out: str
) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUF_CACHE_DIR": str(member / "buf-cache"), "SSL_CERT_FILE": str(ca)}
    return subprocess.run(
        [buf_bin, "build", *(out or ("-o", os.devnull))],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _files_and_messages(descriptor_set: Path) -> list[tuple[str, list[str]]]:
    """Each file of a FileDescriptorSet (buf's image reads as one) with its message names;
    the well-known types by name only (each compiler brings its own version of them)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    return sorted(
        (f.name, [] if f.name.startswith("google/protobuf/") else [m.name for m in f.message_type])
        for f in files
    )


@pytest.fixture(params=["distribution", "oci-layout"])
def team_registry(request, distribution: DistributionServer, tmp_path: Path) -> str:
    if request.param == "distribution":
        return f"{distribution.url}/run-{tmp_path.name[-24:].lower().replace('_', '-')}"
    return f"oci-layout:{tmp_path / 'team-registry'}"


def test_member_b_builds_offline_from_the_team_registry(
    sample_data, tmp_path, buf_bin, team_registry
):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    ca = server.ca_cert
    try:
        project_a = make_project(tmp_path / "a", server.host)
        cold = _fetch(project_a, team_registry, tmp_path / "member-a", ca, "--update-lock")
        assert _hits(cold) == {"local": 0, "team": 0, "bsr": 6}
        assert all(m["published"] for m in json.loads(cold.stdout)["modules"])
        assert server.count("Download") == 1
    finally:
        server.stop()

    # Member B: another checkout, empty local store and buf cache, the BSR is gone.
    project_b = make_project(tmp_path / "b", server.host)
    (project_b / "buf.lock").write_text((project_a / "buf.lock").read_text())
    member_b = tmp_path / "member-b"
    warm = _fetch(project_b, team_registry, member_b, ca, "--export", str(tmp_path / "include"))
    assert _hits(warm) == {"local": 0, "team": 6, "bsr": 0}
    for dep in read_buf_lock(project_b / "buf.lock").deps:
        entry = module_entry_dir(member_b / "buf-cache", dep.module, dep.commit)
        assert (entry / "module.yaml").is_file()
    built = _buf_build(buf_bin, project_b, member_b, ca, "-o", str(tmp_path / "buf.binpb"))
    assert built.returncode == 0, built.stderr
    # protoc builds the project from the exported tree alone, to the same files as buf.
    protoc = subprocess.run(
        [
            "protoc",
            "-I",
            str(tmp_path / "include"),
            "-I",
            str(project_b),
            "--include_imports",
            "--descriptor_set_out",
            str(tmp_path / "protoc.pb"),
            "shop/v1/shop.proto",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert protoc.returncode == 0, protoc.stderr
    assert _files_and_messages(tmp_path / "protoc.pb") == _files_and_messages(
        tmp_path / "buf.binpb"
    )
    # Other buf commands that read dependencies work offline on the same cache.
    env = {**os.environ, "BUF_CACHE_DIR": str(member_b / "buf-cache"), "SSL_CERT_FILE": str(ca)}
    graph = subprocess.run(
        [buf_bin, "dep", "graph"],
        cwd=project_b,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert graph.returncode == 0, graph.stderr
    assert graph.stdout.count("->") >= len(SHOP_DEP_CLOSURE)
    # buf itself writes no commit records for such a build, and neither does fetch.
    assert not any((member_b / "buf-cache" / "v3" / "commits").glob("*/*/*.json"))

    # Again with a fresh buf cache: everything from member B's local store.
    (member_b / "buf-cache").rename(tmp_path / "old-cache")
    assert _hits(_fetch(project_b, team_registry, member_b, ca)) == {
        "local": 6,
        "team": 0,
        "bsr": 0,
    }
    assert _buf_build(buf_bin, project_b, member_b, ca).returncode == 0


def test_skopeo_inspects_and_copies_every_artifact(
    sample_data, tmp_path, distribution: DistributionServer
):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    url = f"{distribution.url}/skopeo"
    try:
        project = make_project(tmp_path / "a", server.host)
        assert _fetch(project, url, tmp_path / "m", server.ca_cert, "--update-lock").returncode == 0
    finally:
        server.stop()
    host = distribution.url.removeprefix("http://")
    deps = read_buf_lock(project / "buf.lock").deps
    assert len(deps) == len(SHOP_DEP_CLOSURE)
    for dep in deps:
        ref = f"docker://{host}/skopeo/{module_repository(TEAM, dep.module)}:{dep.commit}"
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", ref],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert raw.returncode == 0, raw.stderr
        manifest = json.loads(raw.stdout)
        assert manifest["artifactType"] == "application/vnd.buf.module.v1"
        assert manifest["annotations"]["org.opencontainers.image.revision"] == dep.commit
        copy = subprocess.run(
            ["skopeo", "copy", "--src-tls-verify=false", ref, f"dir:{tmp_path / dep.commit}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert copy.returncode == 0, copy.stderr
        layer = tmp_path / dep.commit / manifest["layers"][0]["digest"].removeprefix("sha256:")
        assert layer.stat().st_size == manifest["layers"][0]["size"]


def test_skopeo_reads_the_on_disk_layout(sample_data, tmp_path):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    registry = tmp_path / "team-registry"
    try:
        project = make_project(tmp_path / "a", server.host)
        result = _fetch(
            project, f"oci-layout:{registry}", tmp_path / "m", server.ca_cert, "--update-lock"
        )
        assert result.returncode == 0, result.stderr
    finally:
        server.stop()
    for dep in read_buf_lock(project / "buf.lock").deps:
        repo = registry / module_repository(TEAM, dep.module)
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{repo}:{dep.commit}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert raw.returncode == 0, raw.stderr
        assert json.loads(raw.stdout)["annotations"]["org.opencontainers.image.title"] == str(
            dep.module
        )
    assert sys.platform.startswith("linux")


def _lock_without_download(project: Path, server, modules: list[str]) -> BufLock:
    """Write buf.lock from GetGraph only, so the request log's Downloads are the fetch's."""
    from bsr_team_cache._wire import default_ssl_context
    from bsr_team_cache.bsr.client import BSRModuleClient
    from bsr_team_cache.bsr.connect import ConnectTransport

    ctx = default_ssl_context()
    ctx.load_verify_locations(cafile=str(server.ca_cert))
    with BSRModuleClient(ConnectTransport(verify=ctx)) as client:
        graph = client.graph([parse_module_ref(f"{server.host}/{m}") for m in modules])
    deps = sorted(
        (LockedDep(c.module, c.commit_id, c.digest) for c in graph.commits.values()),
        key=lambda d: str(d.module),
    )
    lock = BufLock("v2", tuple(deps))
    write_buf_lock(project / "buf.lock", lock)
    return lock


def test_eight_processes_one_download(sample_data, tmp_path, distribution: DistributionServer):
    # A slow BSR widens the window in which all eight processes miss at once.
    server = start_dev_bsr(sample_data, tmp_path / "bsr", "--delay-ms", "300")
    try:
        project = make_project(tmp_path / "p", server.host)
        lock = _lock_without_download(project, server, ["acme/pets"])
        env = {
            **os.environ,
            "SSL_CERT_FILE": str(server.ca_cert),
            "BSR_TEAM_CACHE_DIR": str(tmp_path / "shared-store"),
        }
        procs = [
            subprocess.Popen(
                _fetch_argv(project, f"{distribution.url}/single-flight", "--json"),
                env={**env, "BUF_CACHE_DIR": str(tmp_path / f"buf-cache-{i}")},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(8)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outputs]
        assert server.count("Download") == 1
        tiers = sorted(json.loads(out)["hits"]["bsr"] for out, _ in outputs)
        assert tiers == [0] * 7 + [len(lock.deps)]
    finally:
        server.stop()
    with LocalStore(tmp_path / "shared-store") as store:
        assert {(e.module, e.commit) for e in store.entries()} == {
            (str(d.module), d.commit) for d in lock.deps
        }
        for dep in lock.deps:
            assert store.get(dep.module, dep.commit) is not None  # verified read


def test_tampered_blobs_are_detected_and_refetched(sample_data, tmp_path):
    # Its own registry: Distribution shares blob storage across repositories, and this test
    # corrupts a blob that other tests' artifacts also contain.
    distribution = DistributionServer(tmp_path / "registry").start()
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    url = f"{distribution.url}/tamper"
    ca = server.ca_cert
    try:
        project = make_project(tmp_path / "a", server.host)
        member = tmp_path / "member"
        assert _hits(_fetch(project, url, member, ca, "--update-lock"))["bsr"] == 6
        lock = read_buf_lock(project / "buf.lock")
        pets = next(d for d in lock.deps if d.module.name == "pets")

        # 1. The local store: every blob of acme/pets gets one byte flipped.
        with LocalStore(member / "store") as store:
            row = store._db.execute(
                "SELECT blobs FROM entries WHERE commit_id = ?", (pets.commit,)
            ).fetchone()
        for digest in json.loads(row[0]):
            path = member / "store" / "blobs" / "sha256" / digest.removeprefix("sha256:")
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
        shutil_cache = member / "buf-cache"
        subprocess.run(["rm", "-rf", str(shutil_cache)], check=True)
        again = _fetch(project, url, member, ca)
        assert _hits(again) == {"local": 5, "team": 1, "bsr": 0}
        assert "is corrupt" in again.stderr and "local store" in again.stderr
        entry = module_entry_dir(shutil_cache, pets.module, pets.commit)
        assert (entry / "files" / "acme" / "pets" / "v1" / "pet.proto").read_bytes() == (
            sample_data / "acme" / "pets" / "main" / "acme" / "pets" / "v1" / "pet.proto"
        ).read_bytes()

        # 2. The team registry: acme/pets' files layer is corrupted in Distribution's storage.
        manifest = json.loads(
            subprocess.run(
                [
                    "skopeo",
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                    f"docker://{distribution.url.removeprefix('http://')}/tamper/"
                    f"{module_repository(TEAM, pets.module)}:{pets.commit}",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        layer_hex = manifest["layers"][0]["digest"].removeprefix("sha256:")
        stored = next(p for p in distribution.storage.rglob("data") if p.parent.name == layer_hex)
        stored.write_bytes(stored.read_bytes()[:-8] + b"XXXXXXXX")
        fresh = tmp_path / "fresh-member"
        third = _fetch(project, url, fresh, ca)
        assert _hits(third) == {"local": 0, "team": 5, "bsr": 1}
        assert "is corrupt" in third.stderr
    finally:
        server.stop()
        distribution.stop()


def _store_is_consistent(store_dir: Path) -> int:
    """Every visible entry reads back verified; returns how many there are."""
    with LocalStore(store_dir) as store:
        entries = store.entries()
        for e in entries:
            from bsr_team_cache.domain.moduleref import parse_module_name

            assert store.get(parse_module_name(e.module), e.commit) is not None
        return len(entries)


# The fetch with the placing process (bufcache/placer.py) for its six modules: it inherits the
# test hook, so it is killed at a buf cache point, and the fetch then at the same point.
_WITH_PLACER = (
    "import sys; from bsr_team_cache.bufcache import placer;"
    " placer.PLACER_MIN_ENTRIES = 2; placer.usable_cpus = lambda: 2;"
    " from bsr_team_cache.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    ("point", "placing"),
    [(p, False) for p in POINTS] + [(p, True) for p in POINTS if p.startswith("bufcache.")],
)
def test_kill_9_leaves_nothing_half_written(sample_data, tmp_path, buf_bin, point, placing):
    """The fetch is killed (SIGKILL, by its own test hook) at a named point of its write path:
    the store and buf's cache hold no half entry, and the next fetch completes them. Also with
    a placing process writing buf's cache."""
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    registry = f"oci-layout:{tmp_path / 'team-registry'}"
    ca = server.ca_cert
    member = tmp_path / "member"
    try:
        project = make_project(tmp_path / "p", server.host)
        _lock_without_download(project, server, ["acme/orders", "acme/notes", "acme/common"])
        env = {
            **os.environ,
            "SSL_CERT_FILE": str(ca),
            "BUF_CACHE_DIR": str(member / "buf-cache"),
            "BSR_TEAM_CACHE_DIR": str(member / "store"),
            "BSR_TEAM_CACHE_KILL_AT": point,
        }
        argv = _fetch_argv(project, registry)
        if placing:
            argv[1:3] = ["-c", _WITH_PLACER]
        killed = subprocess.run(argv, env=env, capture_output=True, timeout=120)
        assert killed.returncode == -signal.SIGKILL  # it did reach the point
        kept = _store_is_consistent(member / "store")  # every visible entry is whole
        if point.startswith("store."):  # killed while saving the first module
            assert kept == 0
        cache = member / "buf-cache" / "v3" / "modules" / "b5"
        for entry in cache.glob("*/*/*/*") if cache.exists() else ():
            if not entry.name.startswith("."):
                assert (entry / "module.yaml").is_file(), entry
        final = _fetch(project, registry, member, ca)
        assert final.returncode == 0, final.stderr
        assert _store_is_consistent(member / "store") == len(SHOP_DEP_CLOSURE)
        assert _buf_build(buf_bin, project, member, ca).returncode == 0
    finally:
        server.stop()


def test_registry_down_falls_back_to_the_bsr(sample_data, tmp_path):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    try:
        project = make_project(tmp_path / "p", server.host)
        down = f"http://127.0.0.1:{free_port()}/team"
        result = _fetch(project, down, tmp_path / "m", server.ca_cert, "--update-lock")
        assert _hits(result) == {"local": 0, "team": 0, "bsr": 6}
        warnings = json.loads(result.stdout)["warnings"]
        registry = [w for w in warnings if "team registry" in w]
        assert len(registry) == 1, warnings  # one warning, not one per step that noticed
        assert registry[0].startswith(f"team registry unavailable ({down}: ")
        assert registry[0].endswith("; falling back to the BSR")
        assert not any(m["published"] for m in json.loads(result.stdout)["modules"])
    finally:
        server.stop()


def test_nothing_cached_and_bsr_down_is_a_clear_error(sample_data, tmp_path, distribution):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    project = make_project(tmp_path / "a", server.host)
    try:
        _lock_without_download(project, server, ["acme/orders", "acme/notes", "acme/common"])
    finally:
        server.stop()
    result = _fetch(project, f"{distribution.url}/empty", tmp_path / "m", server.ca_cert)
    assert result.returncode == 1
    assert "not in the local store or the team registry" in result.stderr
    assert "BSR is unavailable" in result.stderr
    for module in SHOP_DEP_CLOSURE:
        assert module in result.stderr
    assert "Traceback" not in result.stderr


def test_labels_resolve_from_the_team_index_when_the_bsr_is_down(
    sample_data, tmp_path, distribution: DistributionServer
):
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    url = f"{distribution.url}/labels"
    ca = server.ca_cert
    try:
        project_a = make_project(tmp_path / "a", server.host)
        cold = _fetch(project_a, url, tmp_path / "ma", ca, "--update-lock")
        assert _hits(cold)["bsr"] == 6
        assert cold.stderr == ""
    finally:
        server.stop()
    expected = read_buf_lock(project_a / "buf.lock")
    # Member B has no buf.lock: buf.yaml's refs resolve through the team's label index.
    project_b = make_project(tmp_path / "b", server.host)
    result = _fetch(project_b, url, tmp_path / "mb", ca, "--update-lock")
    assert _hits(result) == {"local": 0, "team": 6, "bsr": 0}
    assert json.loads(result.stdout)["resolved_by"] == "label index"
    assert "resolved to" in result.stderr and "from the label index" in result.stderr
    assert read_buf_lock(project_b / "buf.lock") == expected
    # Older than the TTL: refused, with what to do.
    project_c = make_project(tmp_path / "c", server.host)
    stale = _fetch(project_c, url, tmp_path / "mc", ca, "--label-ttl", "0")
    assert stale.returncode == 1
    assert "TTL" in stale.stderr and "Pin the deps in buf.lock" in stale.stderr
    assert not (project_c / "buf.lock").exists()


def test_progress_bar_on_a_terminal_only(sample_data, tmp_path):
    import pty

    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    try:
        project = make_project(tmp_path / "p", server.host)
        registry = f"oci-layout:{tmp_path / 'reg'}"
        master, slave = pty.openpty()
        env = {
            **os.environ,
            "SSL_CERT_FILE": str(server.ca_cert),
            "BUF_CACHE_DIR": str(tmp_path / "c1"),
        }
        cmd = _fetch_argv(project, registry, "--update-lock")
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=slave, timeout=120)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        os.close(master)
        assert done.returncode == 0
        assert b"[####################] 6/6" in seen
        assert b"6 modules (0 local, 0 team, 6 bsr)" in done.stdout
        # Not a terminal: no progress output at all.
        quiet = _fetch(project, registry, tmp_path / "m2", server.ca_cert)
        assert quiet.stderr == ""
    finally:
        server.stop()


def test_a_complete_buf_cache_entry_is_not_rewritten_and_an_incomplete_one_is(
    sample_data, tmp_path, buf_bin
):
    """A warm fetch leaves complete entries of buf's cache alone (buf re-verifies the digest
    when it reads them) and does not even read the local store for them; an entry that lacks
    module.yaml is rebuilt from the store."""
    server = start_dev_bsr(sample_data, tmp_path / "bsr")
    registry = f"oci-layout:{tmp_path / 'team-registry'}"
    member = tmp_path / "member"
    ca = server.ca_cert
    try:
        project = make_project(tmp_path / "p", server.host)
        assert _hits(_fetch(project, registry, member, ca, "--update-lock"))["bsr"] == 6
    finally:
        server.stop()
    lock = read_buf_lock(project / "buf.lock")
    pets = next(d for d in lock.deps if d.module.name == "pets")
    notes = next(d for d in lock.deps if d.module.name == "notes")
    complete = module_entry_dir(member / "buf-cache", pets.module, pets.commit)
    incomplete = module_entry_dir(member / "buf-cache", notes.module, notes.commit)
    (complete / "marker").write_text("left alone")
    before = (complete / "module.yaml").stat()
    (incomplete / "module.yaml").unlink()
    (incomplete / "marker").write_text("replaced")
    # The store's copy of pets is corrupted: a fetch that read it would say so.
    with LocalStore(member / "store") as store:
        (blobs,) = store._db.execute(
            "SELECT blobs FROM entries WHERE commit_id = ?", (pets.commit,)
        ).fetchone()
    for digest in json.loads(blobs):
        path = member / "store" / "blobs" / "sha256" / digest.removeprefix("sha256:")
        path.write_bytes(path.read_bytes()[::-1])

    warm = _fetch(project, registry, member, ca)
    assert _hits(warm) == {"local": 6, "team": 0, "bsr": 0}
    assert json.loads(warm.stdout)["warnings"] == []
    assert (complete / "marker").read_text() == "left alone"
    after = (complete / "module.yaml").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (incomplete / "module.yaml").is_file()
    assert not (incomplete / "marker").exists()
    assert sorted(p.name for p in (incomplete / "files" / "acme" / "notes" / "v1").iterdir()) == [
        p.name for p in sorted((sample_data / "acme/notes/main/acme/notes/v1").iterdir())
    ]
    assert _buf_build(buf_bin, project, member, ca).returncode == 0
    # --export needs the files: then the store is read, and its corruption found and mended.
    exported = _fetch(project, registry, member, ca, "--export", str(tmp_path / "include"))
    assert _hits(exported) == {"local": 5, "team": 1, "bsr": 0}
    assert "is corrupt" in exported.stderr
