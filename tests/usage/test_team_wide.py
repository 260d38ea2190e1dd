"""Team-wide numbers on a real registry: two members fetch different projects and sync; each
then sees both members' requests, and a member who fetched nothing sees the team's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bsr_team_cache.oci.devregistry import DistributionServer
from tests.conftest import run_cli

TEAM = "usage-team"


def _project(root: Path, deps: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "buf.yaml").write_text("version: v2\ndeps:\n" + "".join(f"  - {d}\n" for d in deps))
    return root


@pytest.mark.slow
def test_two_members_see_each_other_after_sync(
    bsr_env, distribution: DistributionServer, tmp_path: Path
) -> None:
    host = bsr_env.host
    base = {
        "SSL_CERT_FILE": str(bsr_env.ca_cert),
        "BSR_TEAM_CACHE_REGISTRY": distribution.url,
        "BSR_TEAM_CACHE_TEAM": TEAM,
    }

    def member(name: str) -> dict[str, str]:
        return {
            **base,
            "BSR_TEAM_CACHE_MEMBER": name,
            "BSR_TEAM_CACHE_HOST": f"{name}-laptop",
            "BSR_TEAM_CACHE_DIR": str(tmp_path / f"store-{name}"),
        }

    alice, bob, carol = member("alice"), member("bob"), member("carol")
    setup = run_cli("setup", "--members", "alice", "--members", "bob", env=alice)
    assert setup.returncode == 0, setup.stderr

    fetched = {}
    for who, env, deps in (
        ("alice", alice, [f"{host}/acme/pets"]),
        ("bob", bob, [f"{host}/grpc/grpc", f"{host}/acme/money"]),
    ):
        project = _project(tmp_path / f"project-{who}", deps)
        done = run_cli("fetch", str(project), "--update-lock", "--json", "--no-buf-cache", env=env)
        assert done.returncode == 0, done.stderr
        fetched[who] = json.loads(done.stdout)["modules"]
        # A second build of the same project: from the local store.
        again = run_cli("fetch", str(project), "--json", "--no-buf-cache", env=env)
        assert json.loads(again.stdout)["hits"]["local"] == len(fetched[who])
    a, b = len(fetched["alice"]), len(fetched["bob"])
    assert {m["tier"] for m in fetched["alice"]} == {"bsr"}
    shared = sum(1 for m in fetched["bob"] if m["tier"] == "team")
    assert shared == len(
        {m["name"] for m in fetched["alice"]} & {m["name"] for m in fetched["bob"]}
    )
    # pets' closure and bob's deps share money and googleapis: bob gets those from the team.
    assert sorted(m["name"] for m in fetched["bob"] if m["tier"] == "team") == [
        f"{host}/acme/money",
        f"{host}/googleapis/googleapis",
    ]

    for env in (alice, bob):
        synced = run_cli("sync", "--json", env=env)
        assert synced.returncode == 0, synced.stderr
    # Alice synced before bob shipped: she has her own events only until her next read.
    assert json.loads(synced.stdout)["events_shipped"] == 2 * b
    assert json.loads(synced.stdout)["events_merged"] == 2 * a

    def monitor(env: dict[str, str], *extra: str) -> dict:
        done = run_cli("monitor", "--json", *extra, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        return json.loads(done.stdout)

    for env in (alice, bob, carol):  # carol fetched nothing: she reads the team's log
        report = monitor(env)
        assert report["members"] == ["alice", "bob"]
        assert report["requests"] == 2 * (a + b)
        assert report["fetches"] == 4 and report["hosts"] == 2
        assert {t: v["requests"] for t, v in report["tiers"].items()} == {
            "local": a + b,  # the second builds
            "team": shared,  # bob's first build found alice's downloads in the registry
            "bundle": 0,
            "bsr": a + b - shared,
        }
        assert report["hit_rate"] == (a + b + shared) / (2 * (a + b))
        assert report["team_hit_rate"] == shared / (a + b)
        assert report["shared_cache_efficiency"] == 1.0  # alice asked for them first
        assert report["storage"]["machines"] == (3 if env is carol else 2)
    page = tmp_path / "dashboard.html"
    written = run_cli("monitor", "--html", str(page), env=carol)
    assert written.returncode == 0, written.stderr
    assert f"wrote {page}" in written.stdout and "Cache Performance for team" in written.stdout
    html = page.read_text()
    assert html.count("<figure") == 5 and html.count("<svg") == 5 and "<script" not in html
    only_bob = monitor(carol, "--member", "bob")
    assert only_bob["members"] == ["bob"] and only_bob["requests"] == 2 * b
    assert {m["module"] for m in only_bob["top_modules"]} == {m["name"] for m in fetched["bob"]}

    # The member who fetched nothing gets the team's recommendations: preload the team's
    # modules (all 5 distinct ones; her store has none), which missed a local store 7 times.
    advice = run_cli("recommend", "--json", env=carol)
    assert advice.returncode == 0, advice.stderr
    found = json.loads(advice.stdout)
    assert found["requests"] == 2 * (a + b)
    preload = found["recommendations"][0]
    assert (preload["priority"], preload["action"]) == ("HIGH", "preload_dependencies")
    everything = {f"{m['name']}:{m['commit']}" for m in fetched["alice"] + fetched["bob"]}
    assert set(preload["data"]["missing"]) == everything and len(everything) == 5
    assert (preload["data"]["misses"], preload["data"]["misses_here"]) == (a + b, 0)
    text = run_cli("recommend", env=carol)
    assert text.stdout.splitlines()[:2] == [
        f"Cache Recommendations for team {TEAM}:",
        "1. [HIGH] preload_dependencies",
    ]
