"""Recommendations from the team's recorded usage: every member's events (the team layer merges
them from the team registry first), so a member who fetched nothing gets the team's advice.
Each rule fires only on evidence in the window (30 days by default), and its expected
improvement is computed from those events, never copied. The inputs are plain: the event log,
the team's name, this machine's local store and the team's settings (``TeamPolicy``);
``TeamCache.advise`` gathers them.

Rules (``action``):

- ``preload_dependencies``: the team's N most requested module commits (N = the strategy's
  ``preload_top``; the list sync's hot set pulls) that this machine's store lacks. Improvement:
  the requests for them that missed a local store (across the team's machines, and on this
  one) and their measured seconds minus the estimated local time of the same requests (the
  local tier's fitted model, usage/model.py).
- ``create_bundle``: each bundle opportunity of the analysis (usage/analysis.py: frequent sets
  of modules across builds) that no bundle covers, with the requests and seconds it saves.
- ``increase_cache_size``: the team's requests replayed (usage/replay.py) through each
  machine's store at the configured ``max_cache_size_mb`` and at the smaller of twice that and
  the working set (the largest machine's modules: a store that holds it never evicts). Local
  hit rates of both, counted after a warm-up of WARM_UP (at most a quarter of the data's span);
  fires when the larger gains at least MIN_HIT_RATE_GAIN. Time saved: the extra local reads
  times the mean measured seconds of a request that missed a local store, less a local read
  of its mean size.
- ``schedule_warming``: the modules of the analysis' daily warming schedule. On the machines
  that keep a store (requests on two days or more), from each one's second day on (a warm job
  is installed after a machine's first build), its first request of a day for each of them
  (days starting at the warm time) that missed a local store: a daily warm would have had it.
- ``sync_members``: members of the team configuration with no event in the window: their
  builds are missing from every figure here.

Priority: the share of the team's measured fetch time (the seconds of its demand requests in
the window) that the action saves: HIGH from HIGH_SHARE, MEDIUM from MEDIUM_SHARE, else LOW;
LOW too when no time can be estimated. Recommendations are listed by priority, then by the
seconds they save.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.usage.events import LOCAL, format_time, host_name
from bsr_team_cache.usage.log import OPERATION_CODE, TIER_CODE, EventLog
from bsr_team_cache.usage.metrics import top_commits
from bsr_team_cache.usage.model import TransferModel, fit_tier
from bsr_team_cache.usage.replay import (
    ReplayReport,
    ReplayResult,
    fit_size_model,
    replay,
    whole_mib,
)

if TYPE_CHECKING:
    from bsr_team_cache.store import LocalStore

WINDOW = 30 * 24 * 3600.0
DAY = 86400.0
MIB = 1024 * 1024
HIGH_SHARE = 0.10
MEDIUM_SHARE = 0.02
PRIORITIES = ("HIGH", "MEDIUM", "LOW")
MIN_HIT_RATE_GAIN = 0.01  # below a point, the replay's answer is within the workload's noise
WARM_UP = 7 * DAY
MAX_BUNDLES = 3  # create_bundle recommendations, the largest savings first
MAX_LISTED = 5  # names quoted in a description
_FETCH = OPERATION_CODE["fetch"]
_LOCAL = TIER_CODE[LOCAL]
NO_USAGE = "no usage recorded for the team yet (fetch with this team, then sync)"
NOTHING_TO_DO = "the team's recorded usage shows nothing to improve"


class BundleSpec(Protocol):
    """A team bundle as the rules read it."""

    @property
    def modules(self) -> Sequence[str]:  # module:commit of every member
        ...


class TeamPolicy(Protocol):
    """The team's settings the rules read (the team configuration is one)."""

    @property
    def preload_top(self) -> int: ...

    @property
    def max_cache_size_mb(self) -> int: ...

    @property
    def members(self) -> Sequence[str]: ...

    @property
    def bundles(self) -> Sequence[BundleSpec]: ...


@dataclass(frozen=True)
class Recommendation:
    priority: str  # HIGH, MEDIUM, LOW
    action: str
    description: str
    expected_improvement: str
    details: tuple[str, ...] = ()  # lines printed between the two
    seconds_saved: float | None = None  # over the window, had the action been in place
    data: dict = field(default_factory=dict, compare=False)  # the figures, for --json

    def to_json(self) -> dict:
        return {
            "priority": self.priority,
            "action": self.action,
            "description": self.description,
            "details": list(self.details),
            "expected_improvement": self.expected_improvement,
            "seconds_saved": None if self.seconds_saved is None else round(self.seconds_saved, 3),
            "data": self.data,
        }


@dataclass
class Advice:
    """The recommendations and what they rest on."""

    team: str
    member: str | None
    since: float
    requests: int  # demand requests in the window
    fetch_seconds: float  # their measured seconds
    recommendations: list[Recommendation]
    warnings: list[str]

    def to_json(self) -> dict:
        return {
            "team": self.team,
            "member": self.member,
            "since": format_time(self.since),
            "requests": self.requests,
            "fetch_seconds": round(self.fetch_seconds, 3),
            "recommendations": [r.to_json() for r in self.recommendations],
            "warnings": self.warnings,
        }


def advise(
    log: EventLog,
    *,
    team: str,
    store: LocalStore,
    policy: TeamPolicy,
    member: str | None = None,
    since: float | None = None,
    timezone: str = "UTC",
    now: float | None = None,
    warnings: list[str] | None = None,
) -> Advice:
    """Recommendations from ``team``'s events in ``log`` since ``since`` (default: the last 30
    days), for this machine's ``store``. ``warnings``: those said so far (the advice's list,
    added to). A ``member`` without requests gets the team's, with a warning saying so."""
    now = time.time() if now is None else now
    since = now - WINDOW if since is None else since
    warnings = [] if warnings is None else warnings
    requests, seconds = _demand(log, team=team, member=member, since=since)
    if member is not None and requests == 0:
        warnings.append(f"member {member!r} has no requests in the window: the team's shown")
        member = None
        requests, seconds = _demand(log, team=team, since=since)
    advice = Advice(team, member, since, requests, seconds, [], warnings)
    if requests:
        advice.recommendations = _Rules(log, store, policy, advice, timezone, now).all()
    return advice


def auto_bundle_candidates(
    log: EventLog, *, team: str, bundles: Iterable[BundleSpec], now: float | None = None
) -> list[str]:
    """What sync's automatic bundle holds: the refs (module:commit) of ``team``'s bundle
    opportunity of the last 30 days that saves the most requests and none of ``bundles``
    covers; none without one."""
    from bsr_team_cache.usage.analysis import analyze

    now = time.time() if now is None else now
    found = analyze(log, team=team, since=now - WINDOW, top=1, bundles=_bundled_names(bundles))
    best = [o for o in found["bundle_opportunities"] if o["potential_savings"]["requests"] > 0]
    return sorted(best[0]["refs"]) if best else []


def format_recommendations(
    team: str, found: Sequence[Recommendation], *, none: str = NOTHING_TO_DO
) -> list[str]:
    """The design document's text: a numbered entry per recommendation, blank lines between."""
    lines = [f"Cache Recommendations for team {team}:"]
    if not found:
        lines.append(f"  none: {none}")
    for number, r in enumerate(found, 1):
        if number > 1:
            lines.append("")
        lines.append(f"{number}. [{r.priority}] {r.action}")
        lines.append(f"   {r.description}")
        lines.extend(f"   {line}" for line in r.details)
        lines.append(f"   Expected improvement: {r.expected_improvement}")
    return lines


def format_advice(advice: Advice) -> list[str]:
    return format_recommendations(
        advice.team, advice.recommendations, none=NOTHING_TO_DO if advice.requests else NO_USAGE
    )


def priority(seconds_saved: float | None, fetch_seconds: float) -> str:
    """HIGH, MEDIUM or LOW from the share of the team's fetch time an action saves."""
    if seconds_saved is None or fetch_seconds <= 0:
        return "LOW"
    share = seconds_saved / fetch_seconds
    return "HIGH" if share >= HIGH_SHARE else "MEDIUM" if share >= MEDIUM_SHARE else "LOW"


def _demand(log: EventLog, **filters) -> tuple[int, float]:
    """Demand requests and their measured seconds."""
    where, params = log.where(**filters)
    clause = f"{where} AND" if where else " WHERE"
    count, seconds = log.db.execute(
        f"SELECT COUNT(*), TOTAL(seconds) FROM events{clause} operation = {_FETCH}", params
    ).fetchone()
    return count, seconds


def _bundled_names(bundles: Iterable[BundleSpec]) -> list[set[str]]:
    """The module names of each bundle (its records name module:commit)."""
    return [{key.rpartition(":")[0] for key in b.modules} for b in bundles]


def _seconds(value: float) -> str:
    return f"{value:,.1f} s" if value >= 10 else f"{value:.2f} s"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


class _Rules:
    """The rules over one log: each returns its recommendations (none without evidence)."""

    def __init__(
        self,
        log: EventLog,
        store: LocalStore,
        policy: TeamPolicy,
        advice: Advice,
        timezone: str,
        now: float,
    ) -> None:
        self.log = log
        self.now = now
        self.team = advice.team
        self.store = store
        self.policy = policy
        self.advice = advice
        self.timezone = timezone
        self.filters = {
            "team": advice.team,
            "member": advice.member,
            "since": advice.since,
            "until": time.time(),
        }
        self.local_model = fit_tier(log, (LOCAL,), team=advice.team, since=advice.since)
        self._analysis: dict | None = None

    def all(self) -> list[Recommendation]:
        found = [
            *self.preload(),
            *self.bundles(),
            *self.cache_size(),
            *self.warming(),
            *self.sync_members(),
        ]
        rank = {p: i for i, p in enumerate(PRIORITIES)}
        found.sort(key=lambda r: (rank[r.priority], -(r.seconds_saved or 0.0), r.action))
        return found

    def make(
        self,
        action: str,
        description: str,
        improvement: str,
        seconds_saved: float | None,
        details: Iterable[str] = (),
        **data,
    ) -> Recommendation:
        """A recommendation whose priority and share follow from ``seconds_saved``."""
        total = self.advice.fetch_seconds
        if seconds_saved is not None and total > 0:
            improvement += f"; {seconds_saved / total:.1%} of the team's fetch time"
        return Recommendation(
            priority(seconds_saved, total),
            action,
            description,
            improvement,
            tuple(details),
            seconds_saved,
            data,
        )

    @property
    def analysis(self) -> dict:
        if self._analysis is None:
            from bsr_team_cache.usage.analysis import analyze

            self._analysis = analyze(
                self.log,
                timezone=self.timezone,
                top=10,
                bundles=_bundled_names(self.policy.bundles),
                **self.filters,
            )
        return self._analysis

    def local_seconds(self, size: float, requests: int) -> float:
        """Estimated seconds of ``requests`` local reads of ``size`` bytes in all (0 without
        recorded local reads to fit)."""
        model: TransferModel | None = self.local_model
        return model.seconds(size, requests) if model is not None else 0.0

    # -- preload -----------------------------------------------------------------------------
    def preload(self) -> list[Recommendation]:
        top = top_commits(
            self.log, team=self.team, limit=self.policy.preload_top, since=self.advice.since
        )
        missing = [
            (name, commit)
            for name, commit in top
            if not self.store.contains(parse_module_name(name), commit)
        ]
        misses, measured, size, here = self._remote_requests(missing)
        if not misses:
            return []
        local = self.local_seconds(size, misses)
        saved = max(0.0, measured - local)
        return [
            self.make(
                "preload_dependencies",
                f"Preload top {len(top)} dependencies for faster access: {len(missing)} of"
                " them are not in this machine's store (warm --scheduled or sync pulls them)",
                f"{_seconds(saved)} of fetch time: {_count(misses, 'request')} for them missed a"
                f" local store ({here} on this machine) and took {_seconds(measured)}, local"
                f" reads an estimated {_seconds(local)}",
                saved,
                missing=[f"{n}:{c}" for n, c in missing],
                misses=misses,
                misses_here=here,
                measured_seconds=round(measured, 3),
                local_seconds=round(local, 3),
            )
        ]

    def _remote_requests(self, keys: list[tuple[str, str]]) -> tuple[int, float, int, int]:
        """Demand requests for ``keys`` (module, commit) that a local store did not serve:
        (count, seconds, bytes, of them on this machine)."""
        ids = [(self.log.string_id(m), self.log.string_id(c)) for m, c in keys]
        pairs = [(m, c) for m, c in ids if m is not None and c is not None]
        if not pairs:
            return 0, 0.0, 0, 0
        where, params = self.log.where(**self.filters)
        here = self.log.string_id(host_name()) or -1
        values = ", ".join(["(?, ?)"] * len(pairs))
        row = self.log.db.execute(
            "SELECT COUNT(*), TOTAL(seconds), TOTAL(bytes), TOTAL(host = ?) FROM events"
            f"{where} AND operation = {_FETCH} AND tier != {_LOCAL}"
            f" AND (module, commit_id) IN (VALUES {values})",
            [here, *params, *(x for pair in pairs for x in pair)],
        ).fetchone()
        return row[0], row[1], int(row[2]), int(row[3])

    # -- bundles -----------------------------------------------------------------------------
    def bundles(self) -> list[Recommendation]:
        out = []
        for opportunity in self.analysis["bundle_opportunities"]:
            savings = opportunity["potential_savings"]
            if savings["requests"] <= 0 or len(opportunity["refs"]) < 2:
                continue
            names = opportunity["dependencies"]
            refs = " ".join(opportunity["refs"])
            out.append(
                self.make(
                    "create_bundle",
                    f"Create bundle for {len(names)} frequently used dependencies"
                    f" ({_listed(names)}): fetched together in {opportunity['builds']} builds,"
                    f" co-occurrence {opportunity['co_occurrence']:.0%}",
                    savings["text"],
                    savings["seconds"],
                    (f"bsr-team-cache bundle --name {opportunity['name']} --deps {refs}",),
                    name=opportunity["name"],
                    refs=opportunity["refs"],
                    requests_saved=savings["requests"],
                )
            )
            if len(out) == MAX_BUNDLES:
                break
        return out

    # -- cache size --------------------------------------------------------------------------
    def cache_size(self) -> list[Recommendation]:
        current_mb = self.policy.max_cache_size_mb
        current = current_mb * MIB
        first, last = self._span()
        count_since = first + min(WARM_UP, (last - first) / 4)
        sizes = fit_size_model(self.store)
        report = replay(
            self.log, [current, 2 * current], sizes=sizes, count_since=count_since, **self.filters
        )
        target_mb, predicted = _target(report, current_mb)
        now = report.results[0]
        gain = predicted.hit_rate - now.hit_rate
        if target_mb <= current_mb or gain < MIN_HIT_RATE_GAIN:
            return []
        extra = predicted.hits - now.hits
        saved = extra * self._seconds_per_remote_request()
        size_note = (
            f"stored sizes fitted on {sizes.samples} entries of this machine's store"
            if sizes.samples
            else "sizes as recorded (this machine's store has no entries to fit stored sizes)"
        )
        return [
            self.make(
                "increase_cache_size",
                f"Increase cache size to improve hit rate: max_cache_size_mb {current_mb} ->"
                f" {target_mb} (setup --max-cache-size-mb {target_mb})",
                f"local hit rate {now.hit_rate:.1%} -> {predicted.hit_rate:.1%} at"
                f" {target_mb} MB, {extra} more local reads, about {_seconds(saved)}",
                saved,
                (
                    f"Current hit rate: {report.measured_hit_rate:.1%} (requests served by a"
                    f" local store; the replay at {current_mb} MB gives {now.hit_rate:.1%})",
                    f"Replayed: {_count(report.requests, 'request')} on"
                    f" {_count(report.hosts, 'machine')} through an LRU of each size, after a"
                    f" warm-up; {size_note}",
                ),
                current_mb=current_mb,
                target_mb=target_mb,
                replay=report.to_json(),
            )
        ]

    def _span(self) -> tuple[float, float]:
        where, params = self.log.where(**self.filters)
        first, last = self.log.db.execute(
            f"SELECT MIN(time), MAX(time) FROM events{where}", params
        ).fetchone()
        return first, last

    def _seconds_per_remote_request(self) -> float:
        """Mean measured seconds of a demand request a local store did not serve, less the
        estimated local read of its mean size."""
        where, params = self.log.where(**self.filters)
        count, seconds, size = self.log.db.execute(
            f"SELECT COUNT(*), TOTAL(seconds), TOTAL(bytes) FROM events{where}"
            f" AND operation = {_FETCH} AND tier != {_LOCAL}",
            params,
        ).fetchone()
        if not count:
            return 0.0
        return max(0.0, seconds / count - self.local_seconds(size / count, 1))

    # -- warming -----------------------------------------------------------------------------
    def warming(self) -> list[Recommendation]:
        daily = self.analysis["warming_schedule"]["daily"]
        names = sorted({ref.rpartition(":")[0] for ref in daily["dependencies"]})
        if daily["time"] is None or not names:
            return []
        firsts = self._first_requests_of_day(names, daily["time"])
        days_seen: dict[int, set[int]] = {}
        for host, day, _, _, _ in firsts:
            days_seen.setdefault(host, set()).add(day)
        # Machines that keep a store, from their second day on: a warm job is not installed
        # on a machine before its first build.
        first_day = {h: min(days) for h, days in days_seen.items() if len(days) >= 2}
        missed = [
            (s, b)
            for h, day, tier, s, b in firsts
            if h in first_day and day > first_day[h] and tier != _LOCAL
        ]
        if not missed:
            return []
        measured = sum(s for s, _ in missed)
        local = self.local_seconds(sum(b for _, b in missed), len(missed))
        saved = max(0.0, measured - local)
        peaks = self.analysis["peak_hours"]["peak_hours"]
        at = f"{daily['time']} ({daily['timezone']})"
        return [
            self.make(
                "schedule_warming",
                f"Warm the cache daily at {at}, before the first peak"
                + (f" (peak hours {', '.join(f'{h:02d}:00' for h in peaks)})" if peaks else "")
                + ": warm --schedule prints the crontab line and a CI workflow",
                f"{_seconds(saved)} of fetch time: on {_count(len(first_day), 'machine')}"
                f" keeping a store, {_count(len(missed), 'first request')} of a day for the"
                f" {_count(len(names), 'module')} it warms missed the local store and took"
                f" {_seconds(measured)}",
                saved,
                time=daily["time"],
                timezone=daily["timezone"],
                modules=names,
                missed=len(missed),
                machines=len(first_day),
            )
        ]

    def _first_requests_of_day(
        self, names: list[str], at: str
    ) -> list[tuple[int, int, int, float, int]]:
        """(host, day, tier, seconds, bytes) of each machine's first demand request of a day
        for each module of ``names``, days starting at ``at`` (HH:MM) in the schedule's zone
        (at its offset at the window's end: across a daylight-saving change the boundary is
        an hour off)."""
        ids = [i for i in (self.log.string_id(n) for n in names) if i is not None]
        if not ids:
            return []
        hours, minutes = (int(x) for x in at.split(":"))
        offset = datetime.fromtimestamp(self.now, ZoneInfo(self.timezone)).utcoffset()
        shift = (offset.total_seconds() if offset else 0.0) - hours * 3600 - minutes * 60
        where, params = self.log.where(**self.filters)
        # SQLite takes the other columns of a MIN() aggregate from the row with the minimum.
        rows = self.log.db.execute(
            "SELECT host, CAST((time + ?) / 86400 AS INTEGER) AS day, MIN(time), tier, seconds,"
            f" bytes FROM events{where} AND operation = {_FETCH}"
            f" AND module IN ({', '.join('?' * len(ids))}) GROUP BY host, module, day",
            [shift, *params, *ids],
        ).fetchall()
        return [(h, d, tier, s, b) for h, d, _, tier, s, b in rows]

    # -- members -----------------------------------------------------------------------------
    def sync_members(self) -> list[Recommendation]:
        if self.advice.member is not None:
            return []
        where, params = self.log.where(team=self.team, since=self.advice.since)
        query = f"SELECT DISTINCT member FROM events{where}"
        ids = [m for (m,) in self.log.db.execute(query, params)]
        seen = set(self.log.strings(ids).values())
        silent = sorted(set(self.policy.members) - seen)
        if not silent:
            return []
        reporting = len(set(self.policy.members) & seen)
        return [
            self.make(
                "sync_members",
                f"{_count(len(silent), 'team member')} shared no usage in the window"
                f" ({_listed(silent)}):"
                " run sync on their machines (sync --if-due from cron or CI)",
                f"the figures here cover {reporting} of the {len(self.policy.members)} members"
                f" ({self.advice.requests} requests); their builds would count in bundles,"
                " preloading and cache sizes",
                None,
                members=silent,
            )
        ]


def _target(report: ReplayReport, current_mb: int) -> tuple[int, ReplayResult]:
    """The size to recommend and the replay's result there: the working set when it is
    smaller than twice the current size (a store that holds it never evicts, so the unbounded
    result is the result at that size), else twice the current size."""
    working_set_mb = whole_mib(report.working_set_bytes)
    if working_set_mb < 2 * current_mb:
        return working_set_mb, report.unbounded
    return 2 * current_mb, report.results[1]
