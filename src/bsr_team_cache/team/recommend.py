"""Recommendations from recorded usage (this member's fetches and the team's configuration).
Each rule fires only on evidence; the figures quoted are measured, not assumed."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

from bsr_team_cache.team.fetch import BSR, LOCAL

if TYPE_CHECKING:
    from bsr_team_cache.team.cache import TeamCache

WINDOW = 30 * 24 * 3600.0
MIN_FETCHES_TOGETHER = 3


@dataclass(frozen=True)
class Recommendation:
    priority: str  # HIGH, MEDIUM, LOW
    action: str
    description: str
    expected_improvement: str


def recommendations(cache: TeamCache) -> list[Recommendation]:
    events = cache.store.usage_events(time.time() - WINDOW)
    if not events:
        return []
    config = cache.config()
    out: list[Recommendation] = []
    counts = Counter(f"{e.module}:{e.commit}" for e in events)
    from_bsr = [e for e in events if e.tier == BSR]
    hit_rate = 1 - len(from_bsr) / len(events)
    top = [k for k, _ in counts.most_common(config.preload_top)]
    missing = [k for k in top if not _in_store(cache, k)]
    if missing:
        out.append(
            Recommendation(
                "HIGH",
                "preload_dependencies",
                f"Preload top {len(top)} dependencies for faster access ({len(missing)} of them"
                " are not in the local store): run `sync` or `warm`",
                f"{len(missing)} fewer remote fetches on the next cold build",
            )
        )
    frequent = co_fetched(events)
    bundled = {m for b in config.bundles for m in b.modules}
    candidates = sorted(frequent - bundled)
    if len(candidates) >= 2:
        team_fetches = [
            e for e in events if e.tier != LOCAL and f"{e.module}:{e.commit}" in frequent
        ]
        out.append(
            Recommendation(
                "MEDIUM",
                "create_bundle",
                f"Create bundle for {len(candidates)} frequently used dependencies (fetched"
                f" together in >= {MIN_FETCHES_TOGETHER} builds; {len(team_fetches)} remote"
                " fetches of them recorded)",
                "one manifest request plus parallel transfers instead of one round trip each",
            )
        )
    stats = cache.store.stats()
    limit = config.max_cache_size_mb * 1024 * 1024
    # Only a full store is helped by a bigger one; cold misses are what preloading is for.
    if stats.bytes > 0.9 * limit:
        out.append(
            Recommendation(
                "MEDIUM",
                "increase_cache_size",
                f"Increase cache size to improve hit rate (current hit rate: {hit_rate:.1%};"
                f" local store {stats.bytes / 1e6:.1f} of {config.max_cache_size_mb} MB)",
                "Improve cache hit rate to >85%",
            )
        )
    return out


def co_fetched(events: list, minimum: int = MIN_FETCHES_TOGETHER) -> set[str]:
    """``module:commit``s that were fetched together with another one in >= ``minimum``
    builds (the candidates for a bundle)."""
    fetches: dict[str, set[str]] = {}
    for e in events:
        fetches.setdefault(e.fetch_id, set()).add(f"{e.module}:{e.commit}")
    together: Counter[frozenset[str]] = Counter()
    for modules in fetches.values():
        for pair in combinations(sorted(modules), 2):
            together[frozenset(pair)] += 1
    return {m for pair, n in together.items() if n >= minimum for m in pair}


def auto_bundle_candidates(cache: TeamCache) -> list[str]:
    """What an automatic bundle would hold: co-fetched modules no bundle covers yet."""
    events = cache.store.usage_events(time.time() - WINDOW)
    bundled = {m for b in cache.config().bundles for m in b.modules}
    return sorted(co_fetched(events) - bundled)


def _in_store(cache: TeamCache, key: str) -> bool:
    from bsr_team_cache.domain.moduleref import parse_module_name

    name, _, commit = key.rpartition(":")
    return cache.store.contains(parse_module_name(name), commit)
