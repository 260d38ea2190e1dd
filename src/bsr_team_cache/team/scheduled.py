"""``warm --scheduled``'s execution (what cron or CI runs): the team's schedule and the modules
to warm come from usage/schedule.py; here they are warmed, the team's bundles this store lacks
a module of are pulled, and the weekly refresh (a sync) runs when it is due.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import BSRTeamCacheError, InvalidContentError, RegistryError
from bsr_team_cache.team.fetch import TIERS
from bsr_team_cache.usage.schedule import ScheduledRun, refresh_due, scheduled_refs, team_schedule

if TYPE_CHECKING:
    from bsr_team_cache.team.cache import TeamCache
    from bsr_team_cache.team.config import BundleRecord


def refresh_key(cache: TeamCache) -> str:
    """Where the local store remembers the last weekly refresh of the team."""
    return f"scheduled-refresh:{cache.registry.describe()}:{cache.namespace}:{cache.team}"


def run_scheduled(
    cache: TeamCache, *, timezone: str = "UTC", now: float | None = None
) -> ScheduledRun:
    """Do what the team's schedule says now (see usage/schedule.py)."""
    now = time.time() if now is None else now
    warnings: list[str] = []
    config = cache.config_or_defaults(warnings)
    with cache.events(warnings) as log:
        schedule = team_schedule(log, team=cache.team, timezone=timezone, now=now)
        refs = scheduled_refs(
            log, team=cache.team, schedule=schedule, preload_top=config.preload_top, now=now
        )
    run = ScheduledRun(schedule, refs, warnings=warnings)
    if refs:
        report = cache.warm(refs)
        warnings.extend(report.warnings)
        run.modules = {tier: report.count(tier) for tier in TIERS}
    for bundle in config.bundles:
        _pull_if_lacking(cache, bundle, run)
    last = cache.store.kv_get(refresh_key(cache))
    if refresh_due(schedule, float(last) if last else None, now):
        synced = cache.sync()
        warnings.extend(synced.warnings)
        cache.store.kv_put(refresh_key(cache), repr(now))
        run.refreshed = True
    elif schedule.weekly_day is not None:
        run.next_refresh = f"{schedule.weekly_day} {schedule.weekly_time} ({schedule.timezone})"
    return run


def _pull_if_lacking(cache: TeamCache, bundle: BundleRecord, run: ScheduledRun) -> None:
    """Pull ``bundle`` unless the store has every module of it; a failure is a warning."""
    label = f"{bundle.name}:{bundle.version}"
    keys = [key.rpartition(":") for key in bundle.modules]
    if all(cache.store.contains(parse_module_name(m), c) for m, _, c in keys):
        run.bundles_current.append(label)
        return
    try:
        pulled, _ = cache.pull_bundle(bundle.name)
    except (BSRTeamCacheError, InvalidContentError, RegistryError) as exc:
        run.warnings.append(f"bundle {label} not pulled: {exc}")
        return
    run.bundles_pulled.append(f"{pulled.name}:{pulled.version}")
