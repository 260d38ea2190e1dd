"""The team's cache metrics, computed in SQL from the event log (definitions: docs/metrics.md).

Only demand requests count toward rates (operation ``fetch``: a build asked for the module);
warms, bundle pulls and syncs fill caches ahead of demand and would flatter every rate.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bsr_team_cache.usage.events import BUNDLE, LOCAL, TEAM, TIERS, format_time
from bsr_team_cache.usage.log import OPERATION_CODE, EventLog
from bsr_team_cache.usage.model import TransferModel, fit

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
    local-store size of each machine of the team (for storage against the registry).

    Read from the log's aggregates (usage/rollups.py): a row per fetch and per module
    commit; only the top modules' window edges and the team registry's hits read events."""
    until = time.time() if until is None else until
    since = until - WINDOW if since is None else since
    zone = ZoneInfo(timezone)
    team_id = log.string_id(team) or -1
    member_id = None if member is None else (log.string_id(member) or -1)
    fetch_rows = log.db.execute(
        "SELECT time, operation, member, host, build, r0, r1, r2, r3, b0, b1, b2, b3,"
        " fetch_seconds, seconds FROM fetch_rollup WHERE team = ?",
        (team_id,),
    ).fetchall()
    model = _bsr_model(fetch_rows)
    latency = model.latency_seconds if model else 0.0
    per_byte = 1.0 / model.bytes_per_second if model and model.bytes_per_second else 0.0

    daily: dict[int, dict] = {}
    grid = [[0] * 24 for _ in WEEKDAYS]
    local_hour: dict[int, tuple[int, int]] = {}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    builds, hosts, members = set(), set(), set()
    fetches = 0
    for t, op, who, host, build, *counts, wall, seconds in fetch_rows:
        if not since <= t < until or (member_id is not None and who != member_id):
            continue
        members.add(who)
        if op != _FETCH:
            continue
        fetches += 1
        builds.add(build)
        hosts.add(host)
        row = daily.setdefault(int(t // DAY), _empty_period())
        for i, name in enumerate(TIERS):
            row["tiers"][name] += counts[i]
            row["bytes"][name] += counts[4 + i]
        row["fetches"] += 1
        # Its wall time, else the sum of its modules' times (imported events).
        row["measured_seconds"] += wall if wall > 0 else seconds
        hour = int(t // 3600)
        if hour not in local_hour:
            moment = (epoch + timedelta(hours=hour)).astimezone(zone)
            local_hour[hour] = (moment.weekday(), moment.hour)
        weekday, at = local_hour[hour]
        grid[weekday][at] += sum(counts[:4])
    tiers = {t: {"requests": 0, "bytes": 0} for t in TIERS}
    for row in daily.values():
        for name in TIERS:
            tiers[name]["requests"] += row["tiers"][name]
            tiers[name]["bytes"] += int(row["bytes"][name])
        # The same fetches from the BSR: one BSR fetch each, of all their bytes.
        row["estimated_bsr_seconds"] = (
            row["fetches"] * latency + sum(row["bytes"].values()) * per_byte
        )
    requests = sum(t["requests"] for t in tiers.values())
    counts = {t: v["requests"] for t, v in tiers.items()}
    measured = sum(r["measured_seconds"] for r in daily.values())
    estimated = sum(r["estimated_bsr_seconds"] for r in daily.values())
    commits = _Commits(log, team_id, member_id, since, until)
    report: dict = {
        "team": team,
        "member": member,
        "since": format_time(since),
        "until": format_time(until),
        "timezone": timezone,
        "requests": requests,
        "fetches": fetches,
        "builds": len(builds),
        "members": sorted(log.strings(members).values()),
        "hosts": len(hosts),
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
        "shared_cache_efficiency": commits.shared_efficiency(),
        "storage": commits.storage(store_bytes or {}),
        "trends": _trends(daily, until),
        "top_modules": commits.top_modules(),
        "peak_hours": {"timezone": timezone, "heatmap": grid},
    }
    report["lines"] = trend_lines(report["trends"]["changes"])
    return report


def _bsr_model(fetch_rows: list[tuple]) -> TransferModel | None:
    """``model.fit`` over the fetches the BSR served entirely (all their requests of tier
    bsr): wall time (else summed module times) by bytes, one sample per fetch."""
    n = 0
    sx = sy = sxx = sxy = 0.0
    for _, _, _, _, _, r0, r1, r2, r3, _, _, _, size, wall, seconds in fetch_rows:
        if r3 and not (r0 or r1 or r2):
            y = wall if wall > 0 else seconds
            n += 1
            sx += size
            sy += y
            sxx += size * size
            sxy += size * y
    return fit(n, sx, sy, sxx, sxy)


class _Commits:
    """What ``compute`` needs per module commit: the first requester and size of each (from
    the aggregates), the team registry's hits and the top modules in the window."""

    def __init__(
        self, log: EventLog, team_id: int, member_id: int | None, since: float, until: float
    ) -> None:
        self.log, self.team_id, self.member_id = log, team_id, member_id
        self.since, self.until = since, until
        rows = log.db.execute(
            "SELECT module, commit_id, first_member, max_bytes FROM commit_rollup WHERE team = ?",
            (team_id,),
        ).fetchall()
        self.first = {(m, c): who for m, c, who, _ in rows}
        self.registry_bytes = sum(size for _, _, _, size in rows)

    def _member(self) -> tuple[str, list]:
        return ("", []) if self.member_id is None else (" AND member = ?", [self.member_id])

    def shared_efficiency(self) -> float | None:
        """Of the demand requests the team registry served, the share of modules another
        member asked for first (sharing between people, not one person's machines)."""
        extra, params = self._member()
        served = shared = 0
        for module, commit, who, n in self.log.db.execute(
            "SELECT module, commit_id, member, COUNT(*) FROM events WHERE team = ?"
            f" AND time >= ? AND time < ? AND operation = 0 AND tier IN (1, 2){extra}"
            " GROUP BY 1, 2, 3",
            [self.team_id, self.since, self.until, *params],
        ):
            served += n
            shared += n if self.first.get((module, commit)) != who else 0
        return _ratio(shared, served)

    def storage(self, store_bytes: dict[str, int]) -> dict:
        """What the team registry holds (each module commit the team's events name, at its
        largest recorded size) against the sum of the machines' local stores."""
        members = sum(store_bytes.values())
        return {
            "registry_bytes": self.registry_bytes,
            "member_store_bytes": members,
            "machines": len(store_bytes),
            "ratio": _ratio(self.registry_bytes, members),
        }

    def top_modules(self) -> list[dict]:
        """The window's most requested modules: whole UTC days from the aggregates, the
        partial days at its edges (and any member's own) from the events."""
        requests: dict[int, int] = {}
        size: dict[int, float] = {}

        def add(rows) -> None:
            for module, n, total in rows:
                requests[module] = requests.get(module, 0) + n
                size[module] = size.get(module, 0.0) + total

        first_day, end_day = math.ceil(self.since / DAY), math.floor(self.until / DAY)
        extra, params = self._member()
        raw = (
            "SELECT module, COUNT(*), TOTAL(bytes) FROM events WHERE team = ? AND time >= ?"
            f" AND time < ? AND operation = 0{extra} GROUP BY module"
        )
        if self.member_id is not None or first_day >= end_day:
            add(self.log.db.execute(raw, [self.team_id, self.since, self.until, *params]))
        else:
            add(
                self.log.db.execute(
                    "SELECT module, TOTAL(requests), TOTAL(bytes) FROM module_days"
                    " WHERE team = ? AND day >= ? AND day < ? GROUP BY module",
                    (self.team_id, first_day, end_day),
                )
            )
            for low, high in ((self.since, first_day * DAY), (end_day * DAY, self.until)):
                add(self.log.db.execute(raw, [self.team_id, low, high]))
        names = self.log.strings(requests)
        ranked = sorted(requests, key=lambda m: (-requests[m], names[m]))[:TOP_MODULES]
        return [
            {"module": names[m], "requests": int(requests[m]), "bytes": int(size[m])}
            for m in ranked
        ]


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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('h') else 's'}"


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
        f"  Requests: {report['requests']} in {_count(report['fetches'], 'fetch')},"
        f" {_count(len(report['members']), 'member')}, {_count(report['hosts'], 'machine')}"
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
