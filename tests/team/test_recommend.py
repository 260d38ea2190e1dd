"""Recommendations fire on recorded evidence only."""

from __future__ import annotations

import time
from pathlib import Path

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.store import LocalStore, UsageEvent
from bsr_team_cache.team.cache import TeamCache
from bsr_team_cache.team.recommend import recommendations


def _cache(tmp_path: Path) -> TeamCache:
    return TeamCache(
        "t",
        registry=OCILayoutRegistry(tmp_path / "reg"),
        bsr=BSRModuleClient(),
        store=LocalStore(tmp_path / "store"),
        member="alice",
    )


def _fetch(store: LocalStore, fetch_id: str, modules: list[str], tier: str) -> None:
    store.record_usage(
        [
            UsageEvent(
                fetch_id, time.time(), "/p", f"buf.build/acme/{m}", m[0] * 32, tier, 100, 0.01
            )
            for m in modules
        ],
    )


def test_nothing_recorded_means_no_advice(tmp_path: Path) -> None:
    assert recommendations(_cache(tmp_path)) == []


def test_co_fetched_modules_suggest_a_bundle_and_preloading(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    for i in range(3):
        _fetch(cache.store, f"f{i}", ["a", "b", "c"], "bsr" if i == 0 else "team")
    _fetch(cache.store, "f9", ["d"], "bsr")
    actions = {r.action: r for r in recommendations(cache)}
    assert set(actions) == {"preload_dependencies", "create_bundle"}
    assert (
        "Create bundle for 3 frequently used dependencies" in actions["create_bundle"].description
    )
    assert "4 of them are not in the local store" in actions["preload_dependencies"].description


def test_bundled_modules_are_not_suggested_again(tmp_path: Path) -> None:
    from dataclasses import replace

    from bsr_team_cache.team.config import BundleRecord

    cache = _cache(tmp_path)
    for i in range(3):
        _fetch(cache.store, f"f{i}", ["a", "b"], "team")
    record = BundleRecord(
        "ab", "v1", "", ("buf.build/acme/a:" + "a" * 32, "buf.build/acme/b:" + "b" * 32)
    )
    cache._update(lambda c: replace(c, bundles=(record,)))
    assert "create_bundle" not in {r.action for r in recommendations(cache)}
