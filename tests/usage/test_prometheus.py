"""Prometheus metrics: ``metrics`` checked value by value and by promtool, running totals that
match a recount, and a real Prometheus server scraping ``serve-metrics``."""

from __future__ import annotations

import json
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bsr_team_cache._proc import stop_process
from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.oci.artifact import ModuleArtifact, encode_module
from bsr_team_cache.store import LocalStore
from bsr_team_cache.usage import prometheus
from bsr_team_cache.usage.events import OPERATIONS, TIERS, UsageEvent
from bsr_team_cache.usage.log import MERGED, open_event_log
from tests.conftest import run_cli

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
PLATFORM = "platform"
APPS = 'apps "mobile"\\ios'  # quotes and a backslash: the label value must be escaped
COMMIT = "c" * 32


def _event(
    module: str,
    tier: str,
    size: int,
    *,
    at: float,
    fetch: str = "",
    fetch_seconds: float = 0.0,
    team: str = PLATFORM,
    member: str = "alice",
    operation: str = "fetch",
    bundle: str = "",
) -> UsageEvent:
    return UsageEvent(
        time=at,
        member=member,
        build=f"build-{fetch or 'imported'}",
        module=f"buf.build/acme/{module}",
        commit=COMMIT,
        tier=tier,
        bytes=size,
        seconds=0.01,
        team=team,
        host="laptop-1",
        fetch=fetch,
        fetch_seconds=fetch_seconds,
        operation=operation,
        bundle=bundle,
    )


# This machine's events. Fetches f1 (0.3 s), f2 (4 s) and f3 (700 s: past the last bucket),
# a warm (not a fetch: no duration), and an imported event without a fetch id or wall time.
PLATFORM_EVENTS = [
    _event("pets", "local", 100, at=T0, fetch="f1", fetch_seconds=0.3),
    _event("money", "team", 2000, at=T0, fetch="f1", fetch_seconds=0.3),
    _event("orders", "bsr", 50_000, at=T0, fetch="f1", fetch_seconds=0.3),
    _event("pets", "local", 100, at=T0 + 60, fetch="f2", fetch_seconds=4.0),
    _event("orders", "bundle", 50_000, at=T0 + 60, fetch="f2", fetch_seconds=4.0, bundle="shop:v1"),
    _event("notes", "bsr", 3000, at=T0 + 120, fetch="f3", fetch_seconds=700.0),
    _event("money", "team", 2000, at=T0 + 180, fetch="w1", fetch_seconds=12.0, operation="warm"),
    _event("pets", "local", 7, at=T0 + 240),
]
# A fetch exactly on a bucket's bound (le is inclusive), for a second team.
APPS_EVENTS = [_event("pets", "team", 10, at=T0 + 30, fetch="f4", fetch_seconds=0.01, team=APPS)]
# Other members' events merged from the team's registry: counted on their machines, not here.
MERGED_EVENTS = [
    _event("orders", "bsr", 999_999, at=T0 + 500, fetch="g1", fetch_seconds=9.0, member="bob"),
    _event("orders", "bsr", 999_999, at=T0 + 500, fetch="g2", fetch_seconds=9.0, team="other"),
]


def _artifact(name: str, commit_char: str) -> ModuleArtifact:
    files = {f"{name}/v1/{name}.proto": f'syntax = "proto3";\npackage {name}.v1;\n'.encode()}
    return ModuleArtifact(
        parse_module_name(f"buf.build/acme/{name}"),
        commit_char * 32,
        b5_from_contents(files),
        (),
        files,
        "2026-01-01T00:00:00Z",
    )


STORED = [_artifact("pets", "a"), _artifact("money", "b")]


def _stored_bytes() -> int:
    """What the store keeps of each artifact: its manifest (config embedded) and files layer."""
    return sum(len(encode_module(a).manifest) + len(encode_module(a).layer) for a in STORED)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with LocalStore(root) as store:
        for artifact in STORED:
            store.put(artifact)
    with open_event_log(root) as log:
        log.add(PLATFORM_EVENTS)
        log.add(APPS_EVENTS)
        log.add(MERGED_EVENTS, source=MERGED)
        log.bump({"evictions": 2, "errors:registry": 1})
    return root


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no HELP text"
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


def _requests_and_bytes(team: str, served: dict[tuple[str, str], tuple[int, int]]) -> Samples:
    """Every tier and operation of ``team``: ``served`` ones with their (requests, bytes)."""
    out: Samples = {}
    for tier in TIERS:
        for operation in OPERATIONS:
            requests, size = served.get((tier, operation), (0, 0))
            labels = {"team": team, "tier": tier, "operation": operation}
            out[_key("bsr_team_cache_module_requests_total", **labels)] = requests
            out[_key("bsr_team_cache_module_bytes_total", **labels)] = size
    return out


def _histogram(team: str, observations: list[float]) -> Samples:
    name = "bsr_team_cache_fetch_duration_seconds"
    out: Samples = {}
    for bound in prometheus.FETCH_BUCKETS:
        out[_key(f"{name}_bucket", team=team, le=str(bound))] = sum(
            1 for seconds in observations if seconds <= bound
        )
    out[_key(f"{name}_bucket", team=team, le="+Inf")] = len(observations)
    out[_key(f"{name}_count", team=team)] = len(observations)
    out[_key(f"{name}_sum", team=team)] = sum(observations)
    return out


def _expected() -> Samples:
    return {
        **_requests_and_bytes(
            PLATFORM,
            {
                ("local", "fetch"): (3, 207),
                ("team", "fetch"): (1, 2000),
                ("bundle", "fetch"): (1, 50_000),
                ("bsr", "fetch"): (2, 53_000),
                ("team", "warm"): (1, 2000),
            },
        ),
        **_requests_and_bytes(APPS, {("team", "fetch"): (1, 10)}),
        **_histogram(PLATFORM, [0.3, 4.0, 700.0]),
        **_histogram(APPS, [0.01]),
        _key("bsr_team_cache_store_bytes"): _stored_bytes(),
        _key("bsr_team_cache_store_entries"): 2,
        _key("bsr_team_cache_evictions_total"): 2,
        _key("bsr_team_cache_errors_total", kind="registry"): 1,
        _key("bsr_team_cache_last_event_timestamp_seconds", team=PLATFORM): T0 + 240,
        _key("bsr_team_cache_last_event_timestamp_seconds", team=APPS): T0 + 30,
    }


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install prometheus")
    return found


def test_metrics_command_gives_exact_values_that_promtool_accepts(store_dir: Path) -> None:
    done = run_cli("metrics", "--store-dir", str(store_dir))
    assert done.returncode == 0, done.stderr
    assert _samples(done.stdout) == _expected()
    # The buckets as written: the fetch of 4 s counts from le="5.0" on, not in le="2.5".
    assert 'fetch_duration_seconds_bucket{le="2.5",team="platform"} 1.0\n' in done.stdout
    assert 'fetch_duration_seconds_bucket{le="5.0",team="platform"} 2.0\n' in done.stdout
    assert 'team="apps \\"mobile\\"\\\\ios"' in done.stdout  # escaped as the format says

    lint = subprocess.run(
        [_promtool(), "check", "metrics"],
        input=done.stdout,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")


def test_an_empty_store_gives_zero_gauges_and_no_series(tmp_path: Path) -> None:
    done = run_cli("metrics", "--store-dir", str(tmp_path / "new"))
    assert done.returncode == 0, done.stderr
    assert _samples(done.stdout) == {
        _key("bsr_team_cache_store_bytes"): 0,
        _key("bsr_team_cache_store_entries"): 0,
        _key("bsr_team_cache_evictions_total"): 0,
    }
    lint = subprocess.run(
        [_promtool(), "check", "metrics"],
        input=done.stdout,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")


def _exposition(root: Path) -> str:
    with LocalStore(root) as store, open_event_log(root) as log:
        return prometheus.exposition(store, log)


def test_running_totals_add_new_events_and_match_a_recount(store_dir: Path) -> None:
    first = _exposition(store_dir)  # sums every event and saves the totals
    assert _samples(first) == _expected()
    with open_event_log(store_dir) as log:
        saved = json.loads(log.get_state(prometheus.STATE_KEY))
        assert (saved["through"], len(saved["teams"])) == (11, 2)
        log.add(
            [
                _event("pets", "bsr", 500, at=T0 + 900, fetch="f5", fetch_seconds=0.05),
                _event("money", "bsr", 600, at=T0 + 900, fetch="f5", fetch_seconds=0.05),
            ]
        )
        log.add([_event("pets", "local", 1, at=T0 + 999, fetch="f6", fetch_seconds=0.05)], MERGED)
    added = _samples(_exposition(store_dir))
    expected = _expected()
    expected.update(
        {
            _key(
                "bsr_team_cache_module_requests_total",
                team=PLATFORM,
                tier="bsr",
                operation="fetch",
            ): 4,
            _key(
                "bsr_team_cache_module_bytes_total", team=PLATFORM, tier="bsr", operation="fetch"
            ): 54_100,
            **_histogram(PLATFORM, [0.3, 4.0, 700.0, 0.05]),
            _key("bsr_team_cache_last_event_timestamp_seconds", team=PLATFORM): T0 + 900,
        }
    )
    assert added == expected
    with open_event_log(store_dir) as log:
        assert json.loads(log.get_state(prometheus.STATE_KEY))["through"] == 14
        log.db.execute("DELETE FROM state WHERE key = ?", (prometheus.STATE_KEY,))
    assert _samples(_exposition(store_dir)) == expected  # a recount from scratch agrees


def test_totals_of_a_replaced_log_are_not_reused(store_dir: Path) -> None:
    _exposition(store_dir)
    with open_event_log(store_dir) as log:
        saved = log.get_state(prometheus.STATE_KEY)
    for name in ("events.db", "events.db-wal", "events.db-shm"):
        (store_dir / name).unlink(missing_ok=True)
    with open_event_log(store_dir) as log:
        # A new log holding other events, with the old totals planted in its state.
        log.add([_event("pets", "team", 5, at=T0 + i, fetch=f"n{i}") for i in range(11)])
        log.set_state(prometheus.STATE_KEY, saved)
    samples = _samples(_exposition(store_dir))
    teams = {dict(labels).get("team") for _name, labels in samples} - {None}
    assert teams == {PLATFORM}
    key = _key(
        "bsr_team_cache_module_requests_total", team=PLATFORM, tier="team", operation="fetch"
    )
    assert samples[key] == 11
    assert samples[_key("bsr_team_cache_fetch_duration_seconds_count", team=PLATFORM)] == 0


def _strings_for_counts(saved: dict) -> dict:
    saved["teams"][PLATFORM]["requests"] = ["x"] * len(saved["teams"][PLATFORM]["requests"])
    return saved


def _unknown_field(saved: dict) -> dict:
    saved["teams"][PLATFORM]["misses"] = 1
    return saved


def _other_buckets(saved: dict) -> dict:
    saved["buckets"] = [1.0]
    return saved


@pytest.mark.parametrize("spoil", [_strings_for_counts, _unknown_field, _other_buckets])
def test_unusable_saved_totals_mean_a_recount(store_dir: Path, spoil) -> None:
    _exposition(store_dir)
    with open_event_log(store_dir) as log:
        saved = json.loads(log.get_state(prometheus.STATE_KEY))
        log.set_state(prometheus.STATE_KEY, json.dumps(spoil(saved)))
    assert _samples(_exposition(store_dir)) == _expected()
    with open_event_log(store_dir) as log:
        log.set_state(prometheus.STATE_KEY, "not JSON")
    assert _samples(_exposition(store_dir)) == _expected()


def test_at_most_max_teams_are_labelled_those_seen_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus, "MAX_TEAMS", 2)
    root = tmp_path / "store"
    with open_event_log(root) as log:
        for i, team in enumerate(("first", "second", "third")):
            log.add([_event("pets", "local", 1, at=T0 + i, fetch=f"f{i}", team=team)])
    samples = _samples(_exposition(root))
    teams = {dict(labels).get("team") for _name, labels in samples} - {None}
    assert teams == {"first", "second"}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_server_answers_scrapes_and_a_broken_log_with_503(store_dir: Path) -> None:
    server = prometheus.bind(store_dir, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, body = _get(server.url)
        assert status == 200 and _samples(body) == _expected()
        base = server.url.removesuffix("/metrics")
        assert _get(f"{base}/other")[0] == 404
        for name in ("events.db-wal", "events.db-shm"):
            (store_dir / name).unlink(missing_ok=True)
        (store_dir / "events.db").write_bytes(b"not a database" * 100)
        status, body = _get(server.url)
        assert status == 503 and "usage log" in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_busy_port_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve-metrics", "--store-dir", str(tmp_path / "s"), "--port", str(port))
    assert done.returncode == 2
    assert done.stderr == (
        f"bsr-team-cache: error: port {port} is already in use on 127.0.0.1: stop what"
        " listens there or pass another --port\n"
    )


# -- a real Prometheus server --------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line ``proc`` prints, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
    return proc.stdout.readline()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; each is stopped (by its own pid) however the test ends."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in reversed(started):
        stop_process(proc)


def _query(port: int, expression: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["data"]["result"]
    except (OSError, ValueError):
        return []  # not up yet


@pytest.mark.slow
def test_prometheus_scrapes_serve_metrics(
    store_dir: Path, tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    prometheus_bin = shutil.which("prometheus")
    if prometheus_bin is None:
        pytest.fail("prometheus is missing: apt-get install prometheus")
    command = [sys.executable, "-m", "bsr_team_cache", "serve-metrics", "--port", "0"]
    with open(tmp_path / "serve-metrics.log", "w") as errors:
        server = subprocess.Popen(
            [*command, "--store-dir", str(store_dir)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    processes.append(server)
    line = _first_line(server, 30)
    assert line.startswith("serving http://127.0.0.1:") and line.endswith("/metrics\n"), line
    url = line.split()[1]
    status, body = _get(url)
    assert status == 200 and _samples(body) == _expected()

    target = urllib.parse.urlsplit(url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: bsr_team_cache\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    web_port = _free_port()
    with open(tmp_path / "prometheus.log", "w") as log:
        scraper = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    processes.append(scraper)
    wanted = 'bsr_team_cache_module_requests_total{team="platform",tier="local",operation="fetch"}'
    deadline = time.monotonic() + 20
    result: list[dict] = []
    while time.monotonic() < deadline and not result:
        assert scraper.poll() is None, (tmp_path / "prometheus.log").read_text()
        result = _query(web_port, wanted)
        time.sleep(0.2)
    assert result, f"no series after 20 s:\n{(tmp_path / 'prometheus.log').read_text()}"
    assert [(r["metric"]["job"], r["value"][1]) for r in result] == [("bsr_team_cache", "3")]
    count = _query(web_port, 'bsr_team_cache_fetch_duration_seconds_count{team="platform"}')
    assert [r["value"][1] for r in count] == ["3"]
