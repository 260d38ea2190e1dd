"""What team access control and encryption at rest cost a new machine's fetch, measured side by
side in one run, every service behind its own shaped link (bsr_team_cache.devnet; default
20 ms RTT, 100 Mbit/s each).

    .venv/bin/python bench/bench_security.py [--repeat 5] [--warmup 1] [--rtt-ms 20]
        [--mbit 100] [--sets 10,googleapis] [--json FILE]

Services, on loopback, each behind its own link: dev-bsr (TLS; only member A's first fetch
uses it), a CNCF Distribution without auth, a CNCF Distribution with ``auth: token`` whose
token realm is a real ``bsr-team-cache auth-server`` process (bcrypt passwords, default cost),
and that auth server.

For each dependency set (bench_fetch's sets), four teams: (a) ``plain`` on the open
registry, (b) ``auth`` on the token-auth registry, (c) ``enc`` encrypting its layers on the
open registry, (d) ``auth+enc``. For each, member A (a site admin of the auth server) runs
`setup --members bob` (with ``--encrypt`` and both members' public keys for (c), (d)) and
`fetch --update-lock` once, which publishes the modules (encrypted for (c), (d)).

Rows, measured in rounds (each round runs every row once, so drift of a noisy machine hits
all rows alike; emptying directories is not timed): member B's `bsr-team-cache fetch -q`
into an empty local store and empty buf cache (a new machine), per team; for (b) and (d)
also "tokens cached": the same, but the registry tokens of B's previous fetch are kept
(whatever the client keeps of them in the local store: see oci/http.py), i.e. a fetch after
the first. The "token requests" column counts the auth server's ``grant``/``refuse`` audit
records for B during the row (one per token request here: every scope a fetch asks is of one
team).

Then, in-process: the auth server's cost per token request (N requests straight to its port,
not through the link, the bcrypt check warm in its cache), one bcrypt check at the default
cost, and encrypt/decrypt of a layer per MB.

Before measuring, the package is byte-compiled (compileall) so that no run pays for compiling;
the output's first lines say whether bytecode was cached before and whether writing it is off.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _util import ChildRun, check_child, median_seconds, run_child, summary, table
from bench_fetch import (
    CountingProxy,
    DepSet,
    bytecode_state,
    compile_package,
    describe_bytecode,
    environment,
    write_bench_data,
    write_project,
)

from bsr_team_cache._proc import stop_process
from bsr_team_cache.auth.users import BCRYPT_ROUNDS, CredentialStore
from bsr_team_cache.bsr.devbsr import DevBSRServer, ModuleRepository
from bsr_team_cache.demo import find_buf
from bsr_team_cache.oci.devregistry import DistributionServer, TokenAuth, free_port
from bsr_team_cache.oci.encryption import (
    decrypt_layer,
    encrypt_layer,
    generate_private_key,
    private_key_pem,
    public_key_pem,
)

SETS = ("10", "googleapis")
SERVICE, ISSUER = "bsr-team-cache", "bsr-team-cache-auth"
NAMESPACE = "bench"
PASSWORDS = {"alice": "alice-bench-password", "bob": "bob-bench-password"}
PUBLISHER, FETCHER = "alice", "bob"
LAYER_MEDIA_TYPE = "application/vnd.buf.module.files.v1.tar+gzip"

PLAIN, AUTH, ENC, AUTH_ENC = "(a) no auth", "(b) token auth", "(c) encrypted", "(d) auth + enc"
CACHED = "  tokens cached"
AUTH_CACHED, AUTH_ENC_CACHED = f"{AUTH}{CACHED}", f"{AUTH_ENC}{CACHED}"
ROW_ORDER = (PLAIN, AUTH, AUTH_CACHED, ENC, AUTH_ENC, AUTH_ENC_CACHED)


@dataclass(frozen=True)
class TeamSetup:
    """One of the four teams: on which registry, and whether it encrypts."""

    key: str  # part of the team name
    row: str
    auth: bool
    encrypt: bool


TEAMS = (
    TeamSetup("plain", PLAIN, auth=False, encrypt=False),
    TeamSetup("auth", AUTH, auth=True, encrypt=False),
    TeamSetup("enc", ENC, auth=False, encrypt=True),
    TeamSetup("authenc", AUTH_ENC, auth=True, encrypt=True),
)


# -- the services ---------------------------------------------------------------------------


@dataclass
class Services:
    bsr_host: str  # localhost:PORT of the BSR's link, as buf.yaml names it
    ca: Path  # the CA that signed dev-bsr's certificate
    open_url: str  # the registry without auth, through its link, with the namespace
    auth_url: str  # the registry with auth: token, through its link, with the namespace
    token_url: str  # the auth server's /token, straight (not through its link)
    open_direct: str  # the same registries, straight (for per-request costs)
    auth_direct: str
    auth_state: Path  # the auth server's state directory (users, key, audit.jsonl)
    links: dict[str, CountingProxy]

    def counts(self) -> dict[str, int]:
        return {name: link.connections for name, link in self.links.items()}

    def audit_records(self, member: str) -> int:
        """The auth server's grant and refuse records for ``member`` so far."""
        path = self.auth_state / "audit.jsonl"
        if not path.exists():
            return 0
        count = 0
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("member") == member and record.get("operation") in ("grant", "refuse"):
                count += 1
        return count


def start_auth_server(state: Path, registry_port: int, port: int, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "bsr_team_cache", "auth-server"]
    argv += ["--registry", f"http://127.0.0.1:{registry_port}/{NAMESPACE}"]
    argv += ["--state", str(state), "--listen", f"127.0.0.1:{port}"]
    argv += ["--service", SERVICE, "--issuer", ISSUER]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"auth-server exited: {log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/token", timeout=1).status_code == 401:
                return proc
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"auth-server did not answer: {log.read_text()}")
        time.sleep(0.1)


@contextlib.contextmanager
def services(tmp: Path, data: Path, rtt_ms: float, mbit: float) -> Iterator[Services]:
    """dev-bsr, both registries and the auth server, each behind its own shaped link."""
    bsr, ca = DevBSRServer.with_tls(ModuleRepository(data), tmp / "tls")
    state = tmp / "auth-state"
    users = CredentialStore(state)  # bcrypt at the default cost, as in production
    users.add_user(PUBLISHER, PASSWORDS[PUBLISHER], site_admin=True)  # creates the teams
    users.add_user(FETCHER, PASSWORDS[FETCHER])
    open_registry = DistributionServer(tmp / "open-registry")
    auth_port, auth_registry_port = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        bsr.start()
        stack.callback(bsr.stop)
        open_registry.start()
        stack.callback(open_registry.stop)
        auth_link = CountingProxy(("127.0.0.1", auth_port), rtt_ms=rtt_ms, mbit=mbit).start()
        stack.callback(auth_link.stop)
        server = start_auth_server(state, auth_registry_port, auth_port, tmp / "auth-server.log")
        stack.callback(stop_process, server)
        realm = f"http://127.0.0.1:{auth_link.port}/token"
        auth_registry = DistributionServer(
            tmp / "auth-registry",
            port=auth_registry_port,
            token_auth=TokenAuth(realm, SERVICE, ISSUER, state / "cert.pem"),
        )
        auth_registry.start()
        stack.callback(auth_registry.stop)
        links = {"auth": auth_link}
        for name, port in (
            ("bsr", bsr.port),
            ("registry", open_registry.port),
            ("auth-registry", auth_registry.port),
        ):
            links[name] = CountingProxy(("127.0.0.1", port), rtt_ms=rtt_ms, mbit=mbit).start()
            stack.callback(links[name].stop)
        yield Services(
            bsr_host=f"localhost:{links['bsr'].port}",
            ca=ca,
            open_url=f"http://127.0.0.1:{links['registry'].port}/{NAMESPACE}",
            auth_url=f"http://127.0.0.1:{links['auth-registry'].port}/{NAMESPACE}",
            token_url=f"http://127.0.0.1:{auth_port}/token",
            open_direct=open_registry.url,
            auth_direct=auth_registry.url,
            auth_state=state,
            links=links,
        )


# -- measuring ------------------------------------------------------------------------------


@dataclass
class RowResult:
    seconds: list[float] = field(default_factory=list)
    token_requests: list[int] = field(default_factory=list)
    connections: list[dict[str, int]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def as_json(self) -> dict:
        lo, med = summary(self.seconds)
        return {
            "seconds": self.seconds,
            "min_s": lo,
            "median_s": med,
            "token_requests_per_run": self.token_requests,
            "connections_per_run": self.connections,
        }


@dataclass
class Case:
    """A row: ``prepare`` (not timed), then member B's fetch against ``team``."""

    row: str
    team: TeamSetup
    prepare: Callable[[], None]


class SetBench:
    """The rows of one dependency set, on shared services."""

    def __init__(self, depset: DepSet, svc: Services, root: Path, keys: Path) -> None:
        self.depset, self.svc, self.root, self.keys = depset, svc, root, keys
        self.project = root / "project"
        self.info: dict[str, object] = {}
        self.rows: dict[str, RowResult] = {}
        self.base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BUF_", "BSR_TEAM_CACHE_", "SSL_CERT_", "DOCKER_", "REGISTRY_"))
        }
        self.docker_config = root / "docker-config"  # empty: no credentials from the machine
        self.docker_config.mkdir(parents=True)

    def team_name(self, team: TeamSetup) -> str:
        return f"s{self.depset.key}{team.key}".lower()

    def dirs(self, member: str, team: TeamSetup) -> tuple[Path, Path]:
        """(buf cache, local store) of a member for one team."""
        base = self.root / member / team.key
        return base / "buf-cache", base / "store"

    def env(self, member: str, team: TeamSetup) -> dict[str, str]:
        cache, store = self.dirs(member, team)
        env = {
            **self.base_env,
            "BUF_CACHE_DIR": str(cache),
            "BSR_TEAM_CACHE_DIR": str(store),
            "BSR_TEAM_CACHE_REGISTRY": self.svc.auth_url if team.auth else self.svc.open_url,
            "BSR_TEAM_CACHE_TEAM": self.team_name(team),
            "BSR_TEAM_CACHE_MEMBER": member,
            "DOCKER_CONFIG": str(self.docker_config),
            "SSL_CERT_FILE": str(self.svc.ca),
        }
        if team.auth:
            env["BSR_TEAM_CACHE_REGISTRY_USERNAME"] = member
            env["BSR_TEAM_CACHE_REGISTRY_PASSWORD"] = PASSWORDS[member]
        if team.encrypt:
            env["BSR_TEAM_CACHE_PRIVATE_KEY_FILE"] = str(self.keys / f"{member}.pem")
        return env

    def cli(self, what: str, member: str, team: TeamSetup, *args: str) -> ChildRun:
        argv = [sys.executable, "-m", "bsr_team_cache", *args]
        return check_child(what, run_child(argv, env=self.env(member, team)))

    # -- set-up ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Each team: member A's `setup` and `fetch --update-lock` (publishes the modules)."""
        write_project(self.project, self.svc.bsr_host, self.depset)
        for team in TEAMS:
            args = ["setup", "--members", FETCHER]
            if team.encrypt:
                args.append("--encrypt")
                for member in (PUBLISHER, FETCHER):
                    args += ["--encryption-key", f"{member}={self.keys / f'{member}.pub.pem'}"]
            self.cli(f"setup ({team.row})", PUBLISHER, team, *args)
            run = self.cli(
                f"publish ({team.row})",
                PUBLISHER,
                team,
                "fetch",
                str(self.project),
                "--update-lock",
                "-q",
            )
            self.info[f"publish {team.key} (s)"] = run.seconds

    # -- the rows -------------------------------------------------------------------------
    def fresh(self, team: TeamSetup, *, keep_tokens: bool) -> Callable[[], None]:
        """Empty B's buf cache and local store; with ``keep_tokens``, what the registry client
        keeps of its tokens in the store (any file matching *token*) survives."""
        cache, store = self.dirs(FETCHER, team)

        def prepare() -> None:
            kept = {}
            if keep_tokens and store.exists():
                kept = {p.name: p.read_bytes() for p in store.glob("*token*") if p.is_file()}
            for d in (cache, store):
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir(parents=True)
            for name, content in kept.items():
                path = store / name
                path.write_bytes(content)
                path.chmod(0o600)

        return prepare

    def cases(self) -> list[Case]:
        cases = []
        for team in TEAMS:
            cases.append(Case(team.row, team, self.fresh(team, keep_tokens=False)))
            if team.auth:
                cases.append(Case(f"{team.row}{CACHED}", team, self.fresh(team, keep_tokens=True)))
        return cases

    def run_case(self, case: Case) -> tuple[float, int, dict[str, int]]:
        case.prepare()
        records, conns = self.svc.audit_records(FETCHER), self.svc.counts()
        args = ("fetch", str(self.project), "-q")
        run = self.cli(f"fetch ({case.row})", FETCHER, case.team, *args)
        after = self.svc.counts()
        opened = {k: after[k] - conns[k] for k in after if after[k] > conns[k]}
        return run.seconds, self.svc.audit_records(FETCHER) - records, opened

    def measure(self, repeat: int, warmup: int) -> None:
        cases = self.cases()
        for round_ in range(warmup + repeat):
            for case in cases:
                seconds, tokens, opened = self.run_case(case)
                if round_ < warmup:
                    continue
                row = self.rows.setdefault(case.row, RowResult())
                row.seconds.append(seconds)
                row.token_requests.append(tokens)
                row.connections.append(opened)


# -- in-process figures -----------------------------------------------------------------------


def token_request_cost(svc: Services, team: str, n: int) -> dict[str, float]:
    """The auth server's time per token request (straight to its port), bcrypt warm."""
    scope = f"repository:{NAMESPACE}/teams/{team}/dependencies/x/y/z:pull"
    params = {"service": SERVICE, "scope": scope}
    auth = (FETCHER, PASSWORDS[FETCHER])

    # One client: a new httpx client per request would measure its own set-up (an SSL
    # context, ~30 ms), not the server.
    with httpx.Client(timeout=30) as client:

        def one() -> None:
            client.get(svc.token_url, params=params, auth=auth).raise_for_status()

        one()  # the bcrypt check, cached by the server from here on
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            one()
            samples.append(time.perf_counter() - start)
    lo, med = summary(samples)
    return {"requests": n, "min_ms": lo * 1000, "median_ms": med * 1000}


def registry_request_cost(svc: Services, rounds: int) -> dict[str, float]:
    """What a cached token costs the registry: 10 manifest GETs in a row, straight to each
    registry (no link), alternating, the token already in the client's memory."""
    from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
    from bsr_team_cache.oci.credentials import Credentials
    from bsr_team_cache.oci.documents import EMPTY_CONFIG, artifact_manifest
    from bsr_team_cache.oci.http import HTTPRegistry

    creds = Credentials(PUBLISHER, PASSWORDS[PUBLISHER])
    clients = {
        "open": HTTPRegistry(svc.open_direct, credentials=creds),
        "token": HTTPRegistry(svc.auth_direct, credentials=creds),
    }
    repos = [f"{NAMESPACE}/teams/request-cost/dependencies/bench/o/m{i}" for i in range(10)]
    layer = {"mediaType": "application/octet-stream", "digest": sha256_digest(b"x"), "size": 1}
    manifest = artifact_manifest("application/vnd.example.bench", [layer])
    samples: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for client in clients.values():
            for repo in repos:
                for blob in (EMPTY_CONFIG, b"x"):
                    client.push_blob(repo, blob, sha256_digest(blob))
                client.push_manifest(repo, "v1", manifest, OCI_MANIFEST)
                client.read_manifest(repo, "v1")  # the token, once
        for _ in range(rounds):
            for name, client in clients.items():
                start = time.perf_counter()
                for repo in repos:
                    client.read_manifest(repo, "v1")
                samples[name].append(time.perf_counter() - start)
    finally:
        for client in clients.values():
            client.close()
    (open_min, open_med), (tok_min, tok_med) = summary(samples["open"]), summary(samples["token"])
    return {
        "open_median_ms": open_med * 1000,
        "token_median_ms": tok_med * 1000,
        "per_request_ms": (tok_med - open_med) * 100,  # of 10 requests
        "per_request_min_ms": (tok_min - open_min) * 100,
    }


def bcrypt_check_ms() -> float:
    import bcrypt

    hashed = bcrypt.hashpw(b"a-password", bcrypt.gensalt(BCRYPT_ROUNDS))
    return median_seconds(lambda: bcrypt.checkpw(b"a-password", hashed), repeat=3) * 1000


def encryption_cost(size_mb: int, repeat: int) -> dict[str, float]:
    """ms per MB to encrypt (2 recipients) and decrypt a layer of ``size_mb`` MB."""
    keys = [generate_private_key(), generate_private_key()]
    data = os.urandom(size_mb << 20)  # a gzip layer is about as random as this
    pems = [public_key_pem(k) for k in keys]
    layer = encrypt_layer(data, LAYER_MEDIA_TYPE, pems)

    def decrypt() -> bytes:
        return decrypt_layer(layer.data, layer.media_type, layer.annotations, keys[1:], "bench")

    assert decrypt() == data
    return {
        "layer_mb": size_mb,
        "encrypt_ms_per_mb": median_seconds(
            lambda: encrypt_layer(data, LAYER_MEDIA_TYPE, pems), repeat
        )
        * 1000
        / size_mb,
        "decrypt_ms_per_mb": median_seconds(decrypt, repeat) * 1000 / size_mb,
    }


def write_keys(directory: Path) -> None:
    directory.mkdir(parents=True, mode=0o700)
    for member in (PUBLISHER, FETCHER):
        key = generate_private_key()
        private = directory / f"{member}.pem"
        private.write_bytes(private_key_pem(key))
        private.chmod(0o600)
        (directory / f"{member}.pub.pem").write_bytes(public_key_pem(key))


# -- reporting ------------------------------------------------------------------------------


def _connections(row: RowResult) -> str:
    names = sorted({k for run in row.connections for k in run})
    medians = {n: statistics.median(run.get(n, 0) for run in row.connections) for n in names}
    return " ".join(f"{n} {medians[n]:g}" for n in names if medians[n])


def render_set(bench: SetBench) -> tuple[str, dict[str, float]]:
    rows = bench.rows
    plain = rows[PLAIN]
    lines: list[tuple[str, ...]] = [
        ("new-machine fetch", "min", "median", "vs (a)", "- (a)", "token requests", "conns")
    ]
    for name in ROW_ORDER:
        row = rows[name]
        lo, med = summary(row.seconds)
        lines.append(
            (
                name,
                f"{lo * 1000:.0f} ms",
                f"{med * 1000:.0f} ms",
                f"{med / plain.median:.2f}x",
                f"{(med - plain.median) * 1000:+.0f} ms",
                f"{statistics.median(row.token_requests):g}",
                _connections(row),
            )
        )
    ratios = {
        "token_cost_cold_ms": (rows[AUTH].median - plain.median) * 1000,
        "token_cost_cached_ms": (rows[AUTH_CACHED].median - plain.median) * 1000,
        "token_cost_cached_min_ms": (min(rows[AUTH_CACHED].seconds) - min(plain.seconds)) * 1000,
        "encryption_ratio": rows[ENC].median / plain.median,
        "encryption_ratio_min": min(rows[ENC].seconds) / min(plain.seconds),
        "auth_enc_cached_ratio": rows[AUTH_ENC_CACHED].median / plain.median,
    }
    info = "; ".join(
        f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in bench.info.items()
    )
    n = len(bench.depset.deps)
    head = f"== {bench.depset.title}: {n} module{'s' if n > 1 else ''}\nset-up: {info}"
    cached = ratios["token_cost_cached_ms"]
    enc = ratios["encryption_ratio"]
    tail = (
        f"token cost per fetch after the first ((b) tokens cached - (a), medians):"
        f" {cached:+.0f} ms ({'meets' if cached < 5 else 'misses'} < 5 ms; mins:"
        f" {ratios['token_cost_cached_min_ms']:+.0f} ms); first fetch: "
        f"{ratios['token_cost_cold_ms']:+.0f} ms\n"
        f"encryption ((c)/(a), medians): {enc:.2f}x ({'meets' if enc < 1.2 else 'misses'}"
        f" < 1.20x; mins: {ratios['encryption_ratio_min']:.2f}x)"
    )
    return f"{head}\n{table(lines)}\n{tail}", ratios


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per row")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="each link's round trip")
    parser.add_argument("--mbit", type=float, default=100.0, help="each link's bandwidth")
    parser.add_argument("--sets", default="10", help=f"comma-separated subset of {','.join(SETS)}")
    parser.add_argument("--token-requests", type=int, default=50, help="timed token requests")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if not args.sets or any(s not in SETS for s in args.sets):
        parser.error(f"--sets: choose from {','.join(SETS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    buf = find_buf()
    if buf is None:
        sys.exit("buf not found: pip install -e '.[test]'")
    started = time.perf_counter()
    before = bytecode_state()
    package_dir = compile_package()
    after = bytecode_state()
    env = environment(buf, use_curl=False)
    env.pop("restore", None)
    print(describe_bytecode(before, after, package_dir))
    print(" ".join(f"{k}: {v};" for k, v in env.items()))
    print(
        f"links: {args.rtt_ms:g} ms RTT, {args.mbit:g} Mbit/s each (dev-bsr, registry,"
        f" token-auth registry, auth server); {args.repeat} measured runs per row after"
        f" {args.warmup} warm-up round(s)\n"
    )
    results: dict[str, Any] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "bytecode": {"before": before, "after": after},
        "environment": env,
        "sets": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp_name:
        tmp = Path(tmp_name)
        sets = write_bench_data(tmp / "data", args.sets)
        write_keys(tmp / "keys")
        with services(tmp, tmp / "data", args.rtt_ms, args.mbit) as svc:
            for key in args.sets:
                bench = SetBench(sets[key], svc, tmp / "sets" / key, tmp / "keys")
                compile_package()  # the package may have been edited since
                t0 = time.perf_counter()
                bench.setup()
                bench.measure(args.repeat, args.warmup)
                bench.info["this set's wall time (s)"] = time.perf_counter() - t0
                text, ratios = render_set(bench)
                print(text + "\n", flush=True)
                results["sets"][key] = {
                    "info": bench.info,
                    "rows": {name: row.as_json() for name, row in bench.rows.items()},
                    **ratios,
                }
            team = f"s{args.sets[0]}auth"
            server = token_request_cost(svc, team, args.token_requests)
            per_request = registry_request_cost(svc, 30)
    bcrypt_ms = bcrypt_check_ms()
    crypto = encryption_cost(8, args.repeat)
    results.update(
        token_request=server,
        registry_request=per_request,
        bcrypt_check_ms=bcrypt_ms,
        encryption=crypto,
    )
    print(
        "registry, 10 manifest GETs in a row with a cached token vs none (straight, n=30):"
        f" {per_request['token_median_ms']:.1f} vs {per_request['open_median_ms']:.1f} ms,"
        f" {per_request['per_request_ms']:.2f} ms per request (mins:"
        f" {per_request['per_request_min_ms']:.2f})"
    )
    print(
        f"auth server, per token request (straight to its port, bcrypt cached, n={server['requests']}):"
        f" median {server['median_ms']:.1f} ms, min {server['min_ms']:.1f} ms;"
        f" one bcrypt check at cost {BCRYPT_ROUNDS} (paid once per user per server process):"
        f" {bcrypt_ms:.0f} ms"
    )
    print(
        f"encryption in process ({crypto['layer_mb']} MB layer, 2 recipients): encrypt"
        f" {crypto['encrypt_ms_per_mb']:.1f} ms/MB, decrypt {crypto['decrypt_ms_per_mb']:.1f} ms/MB"
    )
    total = time.perf_counter() - started
    results["total_s"] = total
    print(f"whole run: {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
