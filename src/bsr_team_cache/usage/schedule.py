"""Warming on a schedule: the analysis' warming schedule (daily an hour before the first peak,
a weekly full refresh at the quietest hour of the quietest weekday) as a crontab and a GitHub
Actions workflow, and what ``warm --scheduled`` does when cron or CI runs it (the team layer
runs it: team/scheduled.py; the choices are made here):

- every run warms the team's N most requested module commits (N = the strategy's
  ``preload_top``, the list sync's hot set pulls) and the modules of the daily schedule (the
  most requested in the peak hours), and pulls each team bundle this store lacks a module of;
- the first run after the weekly refresh time (and a machine's first run) also does the full
  refresh: a sync (labels re-resolved against the BSR, the team's hot set pulled, local-only
  modules pushed, the store trimmed to ``max_cache_size_mb``).

Cron runs in the machine's time zone, so the crontab sets ``CRON_TZ`` to the schedule's
(cronie and systemd-cron honour it); GitHub's schedules are in UTC only, so the workflow's
times are converted, with the other half of the year's time noted where the zone has daylight
saving time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

from bsr_team_cache.usage.analysis import WEEKDAYS, analyze, parse_timezone
from bsr_team_cache.usage.log import EventLog
from bsr_team_cache.usage.metrics import top_commits

WINDOW = 30 * 24 * 3600.0
WORKFLOW_FILE = ".github/workflows/bsr-team-cache-warm.yml"


@dataclass(frozen=True)
class Schedule:
    """When to warm (local times in ``timezone``), from ``requests`` demand requests."""

    timezone: str
    daily: str | None  # HH:MM; None without requests
    weekly_day: str | None  # monday .. sunday
    weekly_time: str | None  # HH:MM
    dependencies: tuple[str, ...]  # module:commit the daily warm adds to the team's top
    requests: int

    @classmethod
    def from_analysis(cls, analysis: dict) -> Schedule:
        warming = analysis["warming_schedule"]
        return cls(
            timezone=warming["daily"]["timezone"],
            daily=warming["daily"]["time"],
            weekly_day=warming["weekly"]["day"],
            weekly_time=warming["weekly"]["time"],
            dependencies=tuple(warming["daily"]["dependencies"]),
            requests=analysis["requests"],
        )

    @property
    def zone(self) -> ZoneInfo:
        return parse_timezone(self.timezone)

    def to_json(self) -> dict:
        return {
            "timezone": self.timezone,
            "daily": {"time": self.daily, "dependencies": list(self.dependencies)},
            "weekly": {
                "day": self.weekly_day,
                "time": self.weekly_time,
                "action": "full_cache_refresh",
            },
            "requests": self.requests,
        }


def team_schedule(log: EventLog, *, team: str, timezone: str, now: float) -> Schedule:
    """The team's schedule from its demand requests of the last 30 days."""
    return Schedule.from_analysis(
        analyze(log, team=team, since=now - WINDOW, until=now, timezone=timezone)
    )


def scheduled_refs(
    log: EventLog, *, team: str, schedule: Schedule, preload_top: int, now: float
) -> list[str]:
    """What a scheduled run warms (module:commit, each once): the team's ``preload_top`` most
    requested module commits of the last 30 days, then the daily schedule's."""
    top = top_commits(log, team=team, limit=preload_top, since=now - WINDOW)
    return list(dict.fromkeys([f"{m}:{c}" for m, c in top] + list(schedule.dependencies)))


def _hour_minute(text: str) -> tuple[int, int]:
    hours, minutes = text.split(":")
    return int(hours), int(minutes)


def _cron_weekday(day: str) -> int:
    """cron's day of week: 0 is Sunday."""
    return (WEEKDAYS.index(day) + 1) % 7


def crontab(schedule: Schedule, command: str) -> list[str]:
    """Crontab lines running ``command`` at the schedule's daily and weekly times."""
    if schedule.daily is None:
        return []
    hour, minute = _hour_minute(schedule.daily)
    lines = [
        "# bsr-team-cache: warm before the first peak daily, refresh weekly (warm --schedule).",
        f"# CRON_TZ makes these times {schedule.timezone} (cronie, systemd-cron); a cron that"
        " ignores it uses the machine's zone.",
        f"CRON_TZ={schedule.timezone}",
        f"{minute} {hour} * * * {command}",
    ]
    weekly = _weekly_cron(schedule)
    if weekly is not None and weekly[:2] != (minute, hour):  # else the daily run refreshes
        lines.append(f"{weekly[0]} {weekly[1]} * * {weekly[2]} {command}")
    return lines


def _weekly_cron(schedule: Schedule) -> tuple[int, int, int] | None:
    """(minute, hour, cron weekday) of the weekly refresh in the schedule's zone."""
    if schedule.weekly_day is None or schedule.weekly_time is None:
        return None
    hour, minute = _hour_minute(schedule.weekly_time)
    return minute, hour, _cron_weekday(schedule.weekly_day)


def github_workflow(
    schedule: Schedule, command: str, *, env: dict[str, str], now: float
) -> list[str]:
    """A GitHub Actions workflow running ``command`` at the schedule's times, in UTC (at the
    zone's offset of each time's next occurrence after ``now``). ``env``: the job's
    environment (the registry, its credentials)."""
    if schedule.daily is None:
        return []
    zone = schedule.zone
    daily = _next_local(zone, None, schedule.daily, now)
    crons = [(_utc_cron(daily, weekly=False), _utc_note(daily, "daily"))]
    if schedule.weekly_day is not None and schedule.weekly_time is not None:
        weekly = _next_local(zone, schedule.weekly_day, schedule.weekly_time, now)
        crons.append((_utc_cron(weekly, weekly=True), _utc_note(weekly, schedule.weekly_day)))
    lines = [
        f"# {WORKFLOW_FILE}",
        "# A runner's store is discarded after the job: this keeps the team registry warm (BSR",
        "# downloads are published to it) and its labels fresh.",
        "name: bsr-team-cache warm",
        "on:",
        "  schedule:",
    ]
    for cron, note in crons:
        lines += [f"    # {note}", f'    - cron: "{cron}"']
    lines += [
        "  workflow_dispatch: {}",
        "jobs:",
        "  warm:",
        "    runs-on: ubuntu-latest",
        "    steps:",
        "      - uses: actions/setup-python@v5",
        "        with:",
        '          python-version: "3.11"',
        "      - run: pip install bsr-team-cache  # or as your other jobs install it",
        f"      - run: {command}",
    ]
    if env:
        lines.append("        env:")
        lines += [f"          {name}: {value}" for name, value in env.items()]
    return lines


def _next_local(zone: ZoneInfo, weekday: str | None, at: str, now: float) -> datetime:
    """The next time (from ``now``) it is ``at`` (HH:MM) in ``zone``, on ``weekday`` if given."""
    hour, minute = _hour_minute(at)
    today = datetime.fromtimestamp(now, zone).date()
    for days in range(8):
        day = today + timedelta(days=days)
        if weekday is not None and WEEKDAYS[day.weekday()] != weekday:
            continue
        moment = datetime.combine(day, clock(hour, minute), tzinfo=zone)
        if moment.timestamp() >= now:
            return moment
    raise AssertionError("a weekday comes back within 8 days")


def _utc_cron(moment: datetime, *, weekly: bool) -> str:
    utc = moment.astimezone(ZoneInfo("UTC"))
    day = str((utc.weekday() + 1) % 7) if weekly else "*"
    return f"{utc.minute} {utc.hour} * * {day}"


def _utc_note(moment: datetime, what: str) -> str:
    """``08:00 Europe/Berlin is 07:00 UTC`` and, where the zone changes its offset within
    the year, the UTC time of the other half."""
    zone = moment.tzinfo
    assert isinstance(zone, ZoneInfo)
    utc = moment.astimezone(ZoneInfo("UTC"))
    if moment.utcoffset() == timedelta(0) and zone.key in ("UTC", "Etc/UTC"):
        return f"{what} {utc:%H:%M} UTC"
    note = f"{what} {moment:%H:%M} {zone.key} is {utc:%H:%M} UTC"
    other = moment + timedelta(days=182)  # the other half of the year, same local time
    other_utc = datetime.combine(other.date(), moment.time(), tzinfo=zone).astimezone(
        ZoneInfo("UTC")
    )
    if other_utc.time() != utc.time():
        note += f" now, {other_utc:%H:%M} UTC after the next daylight-saving change"
    return note


def last_weekly_refresh(schedule: Schedule, now: float) -> float | None:
    """The latest weekly refresh time at or before ``now`` (None without a weekly time)."""
    if schedule.weekly_day is None or schedule.weekly_time is None:
        return None
    zone = schedule.zone
    hour, minute = _hour_minute(schedule.weekly_time)
    today = datetime.fromtimestamp(now, zone).date()
    for days in range(8):
        day = today - timedelta(days=days)
        if WEEKDAYS[day.weekday()] != schedule.weekly_day:
            continue
        moment = datetime.combine(day, clock(hour, minute), tzinfo=zone).timestamp()
        if moment <= now:
            return moment
    raise AssertionError("a weekday comes back within 8 days")


def refresh_due(schedule: Schedule, last_refresh: float | None, now: float) -> bool:
    """Whether the weekly refresh time passed since ``last_refresh`` (never: due)."""
    latest = last_weekly_refresh(schedule, now)
    return latest is not None and (last_refresh is None or last_refresh < latest)


# -- warm --scheduled --------------------------------------------------------------------------
@dataclass
class ScheduledRun:
    """What ``warm --scheduled`` did."""

    schedule: Schedule
    refs: list[str]  # module:commit warmed
    modules: dict[str, int] = field(default_factory=dict)  # tier -> modules the warm obtained
    bundles_pulled: list[str] = field(default_factory=list)  # name:version
    bundles_current: list[str] = field(default_factory=list)  # already all in the store
    refreshed: bool = False
    next_refresh: str | None = None  # "monday 03:00 (Europe/Berlin)"
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "schedule": self.schedule.to_json(),
            "refs": self.refs,
            "modules": self.modules,
            "bundles_pulled": self.bundles_pulled,
            "bundles_current": self.bundles_current,
            "refreshed": self.refreshed,
            "next_refresh": self.next_refresh,
            "warnings": self.warnings,
        }

    def lines(self) -> list[str]:
        warmed = sum(self.modules.values())
        tiers = ", ".join(f"{n} {tier}" for tier, n in self.modules.items())
        out = [
            f"warmed {warmed} modules ({tiers}): the team's {len(self.refs)} most requested"
            " module commits and their deps"
            if self.refs
            else "warmed nothing: no requests recorded for the team in the last 30 days",
        ]
        if self.bundles_pulled:
            out.append(f"pulled bundles: {', '.join(self.bundles_pulled)}")
        if self.bundles_current:
            out.append(f"bundles already here: {', '.join(self.bundles_current)}")
        if self.refreshed:
            out.append("weekly refresh: done (sync)")
        elif self.next_refresh is not None:
            out.append(f"weekly refresh: not due (next: {self.next_refresh})")
        return out


def schedule_lines(
    schedule: Schedule, team: str, crontab_lines: list[str], workflow: list[str]
) -> list[str]:
    """``warm --schedule``'s text: the schedule, the crontab, the workflow."""
    if schedule.daily is None:
        return [f"no warming schedule for team {team}: no requests in the last 30 days"]
    out = [
        f"Warming schedule for team {team} ({schedule.requests} requests of the last 30 days,"
        f" times in {schedule.timezone}):",
        f"  daily at {schedule.daily}: the team's most requested modules"
        f" ({len(schedule.dependencies)} from the peak hours) and its bundles",
    ]
    if schedule.weekly_day is not None:
        out.append(
            f"  weekly on {schedule.weekly_day} at {schedule.weekly_time}: full refresh (sync:"
            " labels re-resolved, hot set, store trimmed)"
        )
    out += ["", "crontab (crontab -e):", *crontab_lines, "", "GitHub Actions:", *workflow]
    return out
