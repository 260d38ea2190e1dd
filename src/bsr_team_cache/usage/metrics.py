"""The team's cache metrics, computed in SQL from the event log (definitions: docs/metrics.md).

Only demand requests count toward rates (operation ``fetch``: a build asked for the module);
warms, bundle pulls and syncs fill caches ahead of demand and would flatter every rate.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bsr_team_cache.usage.events import BUNDLE, LOCAL, TEAM, TIERS, format_time
from bsr_team_cache.usage.log import OPERATION_CODE, TIER_CODE, EventLog
from bsr_team_cache.usage.model import fit_bsr_fetches

WINDOW = 30 * 24 * 3600.0
DAY = 86400
TOP_MODULES = 10
_FETCH = OPERATION_CODE["fetch"]
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _rates(tiers: dict[str, int]) -> dict[str, float | None]:
    """Hit rate, team hit rate and bundle usage rate of per-tier request counts."""
    local, team, bundle, bsr = (tiers.get(t, 0) for t in TIERS)
    return {
        "hit_rate": _ratio(local + team + bundle, local + team + bundle + bsr),
        "team_hit_rate": _ratio(team + bundle, team + bundle + bsr),
        "bundle_usage_rate": _ratio(bundle, team + bundle),
    }


def compute(
    log: EventLog,
    *,
    team: str,
    member: str | None = None,
    since: float | None = None,
    until: float | None = None,
    timezone: str = "UTC",
    store_bytes: dict[str, int] | None = None,
) -> dict:
    """The monitor report (see docs/metrics.md for each key). ``store_bytes``: the latest
    local-store size of each machine of the team (for storage against the registry)."""
    until = time.time() if until is None else until
    since = until - WINDOW if since is None else since
    zone = ZoneInfo(timezone)
    where, params = log.where(team=team, member=member, since=since, until=until)
    demand = f"{where} AND operation = {_FETCH}"
    selected = log.where(team=team, member=member, since=since, until=until, alias="e")
    model = fit_bsr_fetches(log, team=team)  # the whole team's downloads: more samples
    latency = model.latency_seconds if model else 0.0
    per_byte = 1.0 / model.bytes_per_second if model and model.bytes_per_second else 0.0
    db = log.db

    # Requests, bytes and the BSR estimate per UTC day and tier.
    daily: dict[int, dict] = {}
    tiers = {t: {"requests": 0, "bytes": 0} for t in TIERS}
    for day, tier, n, size in db.execute(
        f"SELECT CAST(time / {DAY} AS INTEGER), tier, COUNT(*), TOTAL(bytes)"
        f" FROM events{demand} GROUP BY 1, 2",
        params,
    ):
        name = TIERS[tier]
        tiers[name]["requests"] += n
        tiers[name]["bytes"] += int(size)
        row = daily.setdefault(day, _empty_period())
        row["tiers"][name] += n
        row["bytes"][name] += int(size)
    # Whole fetches: their wall time (else the sum of their modules' times) per day.
    for day, fetches, measured in db.execute(
        f"SELECT CAST(t / {DAY} AS INTEGER), COUNT(*), TOTAL(m) FROM (SELECT MIN(time) t,"
        " CASE WHEN MAX(fetch_seconds) > 0 THEN MAX(fetch_seconds) ELSE TOTAL(seconds) END m"
        f" FROM events{demand} GROUP BY fetch) GROUP BY 1",
        params,
    ):
        row = daily.setdefault(day, _empty_period())
        row["fetches"] += fetches
        row["measured_seconds"] += measured
    # The same fetches from the BSR: one BSR fetch each, of all their bytes.
    for row in daily.values():
        row["estimated_bsr_seconds"] = (
            row["fetches"] * latency + sum(row["bytes"].values()) * per_byte
        )

    requests = sum(t["requests"] for t in tiers.values())
    counts = {t: v["requests"] for t, v in tiers.items()}
    measured = sum(r["measured_seconds"] for r in daily.values())
    estimated = sum(r["estimated_bsr_seconds"] for r in daily.values())
    builds, hosts, fetches = db.execute(
        f"SELECT COUNT(DISTINCT build), COUNT(DISTINCT host), COUNT(DISTINCT fetch)"
        f" FROM events{demand}",
        params,
    ).fetchone()
    member_ids = [r[0] for r in db.execute(f"SELECT DISTINCT member FROM events{where}", params)]
    names = log.strings(member_ids)
    report: dict = {
        "team": team,
        "member": member,
        "since": format_time(since),
        "until": format_time(until),
        "timezone": timezone,
        "requests": requests,
        "fetches": fetches,
        "builds": builds,
        "members": sorted(names.values()),
        "hosts": hosts,
        "tiers": tiers,
        **_rates(counts),
        "bandwidth_saved_bytes": sum(tiers[t]["bytes"] for t in (LOCAL, TEAM, BUNDLE)),
        "team_bandwidth_saved_bytes": sum(tiers[t]["bytes"] for t in (TEAM, BUNDLE)),
        "build_time_improvement": (1 - measured / estimated) if model and estimated else None,
        "build_time": {
            "measured_seconds": round(measured, 6),
            "estimated_bsr_seconds": round(estimated, 6) if model else None,
            "model": model.to_json() if model else None,
        },
        "shared_cache_efficiency": _shared_efficiency(log, team, selected),
        "storage": _storage(log, team, store_bytes or {}),
        "trends": _trends(daily, until),
        "top_modules": _top_modules(log, selected),
        "peak_hours": {"timezone": timezone, "heatmap": _heatmap(log, demand, params, zone)},
    }
    report["lines"] = trend_lines(report["trends"]["changes"])
    return report


def _empty_period() -> dict:
    return {
        "tiers": dict.fromkeys(TIERS, 0),
        "bytes": dict.fromkeys(TIERS, 0),
        "fetches": 0,
        "measured_seconds": 0.0,
        "estimated_bsr_seconds": 0.0,
    }


def _period_row(label: str, row: dict) -> dict:
    tiers = row["tiers"]
    return {
        "period": label,
        "requests": sum(tiers.values()),
        "tiers": dict(tiers),
        **_rates(tiers),
        "bandwidth_saved_bytes": sum(row["bytes"][t] for t in (LOCAL, TEAM, BUNDLE)),
        "fetches": row["fetches"],
        "mean_fetch_seconds": _ratio(row["measured_seconds"], row["fetches"]),
        "measured_seconds": round(row["measured_seconds"], 6),
        "estimated_bsr_seconds": round(row["estimated_bsr_seconds"], 6),
    }


def _add(into: dict, row: dict) -> None:
    for key in ("tiers", "bytes"):
        for t in TIERS:
            into[key][t] += row[key][t]
    for key in ("fetches", "measured_seconds", "estimated_bsr_seconds"):
        into[key] += row[key]


def _trends(daily: dict[int, dict], until: float) -> dict:
    """Per UTC day and ISO week; ``changes``: the last 7 days against the 7 before."""
    weekly: dict[str, dict] = {}
    for day in sorted(daily):
        date = datetime.fromtimestamp(day * DAY, UTC).date()
        year, week, _ = date.isocalendar()
        _add(weekly.setdefault(f"{year}-W{week:02d}", _empty_period()), daily[day])
    current, previous = _empty_period(), _empty_period()
    end = until / DAY
    for day, row in daily.items():
        if end - 7 <= day < end:
            _add(current, row)
        elif end - 14 <= day < end - 7:
            _add(previous, row)
    now, before = _period_row("last 7 days", current), _period_row("7 days before", previous)
    changes = {}
    for key in ("hit_rate", "team_hit_rate", "bundle_usage_rate", "mean_fetch_seconds"):
        a, b = now[key], before[key]
        changes[key] = {
            "current": a,
            "previous": b,
            "change": (a - b) if a is not None and b is not None else None,
        }
    return {
        "daily": [
            _period_row(datetime.fromtimestamp(d * DAY, UTC).date().isoformat(), daily[d])
            for d in sorted(daily)
        ],
        "weekly": [_period_row(label, row) for label, row in weekly.items()],
        "changes": changes,
    }


def trend_lines(changes: dict) -> list[str]:
    """The dashboard's "Recent Trends" lines, from the week-on-week changes."""
    lines = []
    hit = changes["hit_rate"]["change"]
    if hit is not None:
        verb = "improved" if hit >= 0 else "fell"
        lines.append(f"📈 Hit rate {verb} {abs(hit) * 100:.1f} points this week")
    bundle = changes["bundle_usage_rate"]["change"]
    if bundle is not None:
        verb = "increased" if bundle >= 0 else "decreased"
        lines.append(f"📊 Bundle usage {verb} {abs(bundle) * 100:.1f} points")
    fetch = changes["mean_fetch_seconds"]["change"]
    if fetch is not None:
        word = "down" if fetch <= 0 else "up"
        lines.append(f"⚡ Average fetch time {word} {abs(fetch):.2f} seconds")
    return lines


def _shared_efficiency(log: EventLog, team: str, selected: tuple[str, list]) -> float | None:
    """Of the demand requests the team registry served (``selected``: a WHERE on alias e),
    the share of modules another member asked for first (sharing between people, not one
    person's machines)."""
    team_where, team_params = log.where(team=team)
    where, params = selected
    codes = f"{TIER_CODE[TEAM]}, {TIER_CODE[BUNDLE]}"
    row = log.db.execute(
        "WITH first AS (SELECT module, commit_id, member, MIN(time) FROM events"
        f"{team_where} GROUP BY module, commit_id)"
        " SELECT COUNT(*), TOTAL(e.member != f.member) FROM events e JOIN first f"
        f" ON f.module = e.module AND f.commit_id = e.commit_id{where}"
        f" AND e.operation = {_FETCH} AND e.tier IN ({codes})",
        [*team_params, *params],
    ).fetchone()
    return _ratio(row[1], row[0])


def _storage(log: EventLog, team: str, store_bytes: dict[str, int]) -> dict:
    """What the team registry holds (each module commit the team's events name, at its
    largest recorded size) against the sum of the machines' local stores."""
    where, params = log.where(team=team)
    (registry,) = log.db.execute(
        f"SELECT TOTAL(b) FROM (SELECT MAX(bytes) b FROM events{where} GROUP BY module, commit_id)",
        params,
    ).fetchone()
    members = sum(store_bytes.values())
    return {
        "registry_bytes": int(registry),
        "member_store_bytes": members,
        "machines": len(store_bytes),
        "ratio": _ratio(registry, members),
    }


def _top_modules(log: EventLog, selected: tuple[str, list]) -> list[dict]:
    where, params = selected
    rows = log.db.execute(
        "SELECT s.text, COUNT(*), TOTAL(e.bytes) FROM events e JOIN strings s ON s.id = e.module"
        f"{where} AND e.operation = {_FETCH} GROUP BY e.module ORDER BY 2 DESC, 1"
        f" LIMIT {TOP_MODULES}",
        params,
    ).fetchall()
    return [{"module": m, "requests": n, "bytes": int(b)} for m, n, b in rows]


def _heatmap(log: EventLog, demand: str, params: list, zone: ZoneInfo) -> list[list[int]]:
    """Requests per weekday (Monday first) and hour of day, in ``zone``."""
    grid = [[0] * 24 for _ in WEEKDAYS]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for hour, n in log.db.execute(
        f"SELECT CAST(time / 3600 AS INTEGER), COUNT(*) FROM events{demand} GROUP BY 1", params
    ):
        local = (epoch + timedelta(hours=hour)).astimezone(zone)
        grid[local.weekday()][local.hour] += n
    return grid


def dashboard_lines(report: dict) -> list[str]:
    """The design document's dashboard: five figures, then the recent trends."""
    model = report["build_time"]["model"]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    who = f" (member {report['member']})" if report["member"] else ""
    improvement = pct(report["build_time_improvement"])
    if model:
        n = model["samples"]
        improvement += f" (against the BSR, modelled on {n} cold fetch{'' if n == 1 else 'es'})"
    else:
        improvement += " (no cold fetch from the BSR recorded to estimate from)"
    lines = [
        f"Cache Performance for team {report['team']}{who}:",
        f"  Hit Rate: {pct(report['hit_rate'])}",
        f"  Build Time Improvement: {improvement}",
        f"  Bandwidth Saved: {report['bandwidth_saved_bytes'] / 1e6:,.1f}MB",
        f"  Shared Cache Efficiency: {pct(report['shared_cache_efficiency'])}",
        f"  Bundle Usage Rate: {pct(report['bundle_usage_rate'])}",
        f"  Team Hit Rate: {pct(report['team_hit_rate'])} (of what machines lacked, served by"
        " the team registry)",
        f"  Requests: {report['requests']} in {report['fetches']} fetches,"
        f" {len(report['members'])} members, {report['hosts']} machines"
        f" ({report['since'][:10]} to {report['until'][:10]})",
        "",
        "Recent Trends:",
    ]
    if report["lines"]:
        lines += [f"  {line}" for line in report["lines"]]
    else:
        lines.append("  not enough data for week-on-week trends yet")
    return lines


def top_commits(
    log: EventLog, *, team: str, limit: int, since: float | None = None
) -> list[tuple[str, str]]:
    """The team's most requested (module, commit)s by demand requests (last 30 days)."""
    since = time.time() - WINDOW if since is None else since
    where, params = log.where(team=team, since=since, alias="e")
    return log.db.execute(
        "SELECT m.text, c.text FROM events e JOIN strings m ON m.id = e.module"
        f" JOIN strings c ON c.id = e.commit_id{where} AND e.operation = {_FETCH}"
        " GROUP BY e.module, e.commit_id ORDER BY COUNT(*) DESC, 1, 2 LIMIT ?",
        [*params, limit],
    ).fetchall()


class CacheMetrics:
    """What the design document's ``monitor_cache_performance()`` returns: the report of
    ``compute`` (``report``, ``to_json()``) with the document's attribute names."""

    def __init__(self, report: dict, warnings: list[str]) -> None:
        self.report = report
        self.warnings = warnings

    team = property(lambda self: self.report["team"])
    cache_hit_rate = property(lambda self: self.report["hit_rate"] or 0.0)
    team_hit_rate = property(lambda self: self.report["team_hit_rate"] or 0.0)
    build_time_improvement = property(lambda self: self.report["build_time_improvement"] or 0.0)
    bandwidth_saved_mb = property(lambda self: self.report["bandwidth_saved_bytes"] / 1e6)
    shared_cache_efficiency = property(lambda self: self.report["shared_cache_efficiency"] or 0.0)
    bundle_usage_rate = property(lambda self: self.report["bundle_usage_rate"] or 0.0)
    fetches = property(lambda self: self.report["fetches"])
    modules_fetched = property(lambda self: self.report["requests"])
    local_store_mb = property(lambda self: self.report.get("local_store_bytes", 0) / 1e6)

    def to_json(self) -> dict:
        return self.report

    def dashboard_lines(self) -> list[str]:
        return dashboard_lines(self.report)
