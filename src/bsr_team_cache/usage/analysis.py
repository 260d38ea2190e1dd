"""Usage analysis: which modules builds use together, when the team fetches, which bundles
would pay, and when to warm the cache. Everything is computed from demand requests (events of
operation ``fetch``); warm, bundle and sync runs are prefetches and do not count.

The log is read in a few passes that SQLite aggregates (requests per quarter hour, the peak
hours' modules, the latency fit) and two that Python folds into one bitset per module over the
builds (every demand request's build and module; the build and seconds of those the team
registry or the BSR served), so a million events need no object per event.
"""

from __future__ import annotations

import hashlib
import math
import re
from array import array
from collections import defaultdict, deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import compress, count, repeat
from pathlib import Path
from statistics import fmean, pstdev
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bsr_team_cache.errors import UsageError
from bsr_team_cache.usage.events import TIERS
from bsr_team_cache.usage.itemsets import Itemset, maximal_itemsets
from bsr_team_cache.usage.log import OPERATION_CODE, EventLog
from bsr_team_cache.usage.model import TransferModel, fit_tier

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
BUCKET = 900  # seconds: every time zone's offset is a multiple of a quarter hour
MIN_SUPPORT = 0.02  # of the builds, for a bundle opportunity (and at least MIN_BUILDS)
MIN_BUILDS = 3
MIN_CO_OCCURRENCE = 0.5  # builds with all of a set / builds with any, for a bundle
MIN_RELATED_SCORE = 0.5  # of the primary's builds, for a related dependency
ACTIVE_HOUR_SHARE = 0.1  # of the busiest hour's requests: hours the peak rule compares
MAX_BUNDLE_NAME = 100
LATEST_SCAN = 50_000  # events walked back from the newest before asking SQLite for the rest
_NAME_PART = re.compile(r"[^a-z0-9]+")
_DEMAND = OPERATION_CODE["fetch"]
_LOCAL = TIERS.index("local")


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA time zone (``Europe/Berlin``, ``UTC``), or a UsageError saying what is
    expected."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError(
            f"unknown time zone {name!r}: expected an IANA name such as Europe/Berlin or UTC"
        ) from None


def analyze(
    log: EventLog,
    *,
    team: str | None = None,
    member: str | None = None,
    since: float | None = None,
    until: float | None = None,
    timezone: str = "UTC",
    top: int = 10,
    bundles: Iterable[Iterable[str]] | None = None,
    min_support: float = MIN_SUPPORT,
    min_builds: int = MIN_BUILDS,
    min_co_occurrence: float = MIN_CO_OCCURRENCE,
) -> dict:
    """The analysis of the demand requests that ``log.where``'s filters select: co-occurrence,
    peak hours, bundle opportunities and the warming schedule derived from the peaks.

    A build is the events' ``build`` (a CI build's jobs share one). The minimum support is
    max(``min_builds``, ceil(``min_support`` * builds)) builds. Bundle opportunities are the
    maximal sets of ``itemsets.maximal_itemsets`` over the builds with that support and
    ``min_co_occurrence``, of two modules or more, without those inside one of ``bundles``
    (sets of module names: the team's existing bundles); ranked by saved requests, then
    builds, then module names; at most ``top``. Hours and weekdays are local to
    ``timezone``."""
    zone = parse_timezone(timezone)
    sel = Selection.demand(log, team=team, member=member, since=since, until=until)
    # SQLite's aggregates (the time profile, the peak hours' modules, the latency fit) run
    # on a second connection in a thread while this one folds the builds in Python:
    # sqlite3 lets go of the GIL while a statement runs, so the two overlap.
    with ThreadPoolExecutor(max_workers=1) as pool:
        timing = pool.submit(_time_side, log.path, sel, zone, team, since, until)
        demand = scan_demand(log, sel)
        support = max(min_builds, math.ceil(min_support * demand.builds))
        demand.keep_bitsets(support)
        mined = maximal_itemsets(
            demand.tidsets, min_support=support, min_co_occurrence=min_co_occurrence
        )
        profile, peaks, in_peaks, model, model_tier = timing.result()
    covered = [frozenset(b) for b in bundles or ()]
    opportunities = [
        s for s in mined.itemsets if not any(set(demand.names_of(s.items)) <= b for b in covered)
    ]
    ranked = rank_opportunities(demand, opportunities, model)[:top]
    warm_ids = sorted(in_peaks, key=lambda m: (-in_peaks[m], demand.names[m]))[:top]
    latest = latest_commits(log, sel, {m for s, _ in ranked for m in s.items} | set(warm_ids))
    return {
        "team": team or "",
        "member": member or "",
        "timezone": timezone,
        "requests": profile.requests,
        "builds": demand.builds,
        "co_occurrence": co_occurrence(demand, top),
        "peak_hours": peak_report(profile, peaks, team or "", timezone),
        "bundle_opportunities": [
            opportunity_json(demand, s, savings, latest) for s, savings in ranked
        ],
        "warming_schedule": warming_schedule(profile, peaks, timezone, warm_ids, demand, latest),
        "itemset_search": {
            "min_support_builds": support,
            "min_co_occurrence": min_co_occurrence,
            "branches": mined.nodes,
            "complete": mined.complete,
        },
        "latency_model": ({"tier": model_tier, **model.to_json()} if model is not None else None),
    }


def _time_side(
    path: Path,
    sel: Selection,
    zone: ZoneInfo,
    team: str | None,
    since: float | None,
    until: float | None,
) -> tuple[TimeProfile, list[int], dict[int, int], TransferModel | None, str]:
    """The time profile, its peak hours, the requests per module in them (in the busiest hour
    when no hour stands out), and the latency model: on a connection of its own."""
    with EventLog(path) as log:
        profile = time_profile(log, sel, zone)
        peaks = peak_hours(profile.hours)
        in_peaks = peak_modules(log, sel, profile, peaks or profile.busiest())
        model, tier = _latency_model(log, team=team, since=since, until=until)
    return profile, peaks, in_peaks, model, tier


@dataclass(frozen=True)
class Selection:
    """The events an analysis reads: ``conditions`` (SQL, with ``params``) on the events
    table's own columns."""

    conditions: str
    params: list

    @classmethod
    def demand(cls, log: EventLog, **filters) -> Selection:
        """Demand requests (operation ``fetch``) that ``log.where``'s filters select."""
        where, params = log.where(**filters)
        conditions = where.removeprefix(" WHERE ")
        demand = f"operation = {_DEMAND}"
        return cls(f"{conditions} AND {demand}" if conditions else demand, params)

    @property
    def where(self) -> str:
        return f" WHERE {self.conditions}"


# -- demand: one bitset per module over the builds ---------------------------------------------
@dataclass
class Demand:
    """Builds (numbered 0..builds-1 in the order first seen) and, per module id, the builds
    that asked for it. Bitsets hold one byte per build (byte i is 1 when build i is in it):
    a bytearray becomes the int in one call, and ``&``, ``|`` and ``bit_count`` still count
    builds."""

    builds: int
    names: dict[int, str]  # module id -> name
    module_builds: dict[int, int]  # module id -> builds that asked for it
    requests: dict[int, array]  # module id -> build of each request
    # module id -> (build, seconds) of each request the team registry or the BSR served
    remote: dict[int, tuple[array, array]]
    tidsets: dict[int, int] = field(default_factory=dict)  # module id -> builds bitset
    remote_sets: dict[int, int] = field(default_factory=dict)  # builds it was fetched remotely

    def bitset(self, builds: Iterable[int]) -> int:
        mask = bytearray(self.builds)
        # The loop over every request runs in C: map() sets the bytes, deque() drains it.
        deque(map(mask.__setitem__, builds, repeat(1)), maxlen=0)
        return int.from_bytes(mask, "little")

    def keep_bitsets(self, min_builds: int) -> None:
        """Bitsets of the modules asked for by at least ``min_builds`` builds (the others can
        neither be in a frequent set nor be a listed co-occurrence); then the request lists,
        and the remote requests of the other modules, are dropped."""
        for module, builds in self.requests.items():
            if len(builds) < min_builds:  # fewer requests than that: fewer builds too
                continue
            tidset = self.bitset(builds)
            if tidset.bit_count() >= min_builds:
                self.module_builds[module] = tidset.bit_count()
                self.tidsets[module] = tidset
                self.remote_sets[module] = self.bitset(self.remote.get(module, ((), ()))[0])
        self.requests.clear()
        self.remote = {m: pair for m, pair in self.remote.items() if m in self.tidsets}

    def names_of(self, modules: Iterable[int]) -> list[str]:
        return [self.names[m] for m in modules]

    def remote_seconds(self, module: int, tidset: int) -> float:
        """Seconds of the module's remote requests in the builds of ``tidset``."""
        builds, seconds = self.remote.get(module, ((), ()))
        member = tidset.to_bytes(self.builds, "little")
        return math.fsum(compress(seconds, map(member.__getitem__, builds)))


def scan_demand(log: EventLog, sel: Selection) -> Demand:
    """The builds each module was asked for in, and the builds and seconds of the requests
    the team registry or the BSR served: two passes, with as little Python per row as can be
    (builds are numbered by a defaultdict whose factory is a counter, in C)."""
    index: defaultdict[int, int] = defaultdict(count().__next__)
    requests: defaultdict[int, array] = defaultdict(lambda: array("l"))
    for build, module in log.db.execute(f"SELECT build, module FROM events{sel.where}", sel.params):
        requests[module].append(index[build])
    remote: defaultdict[int, tuple[array, array]] = defaultdict(lambda: (array("l"), array("d")))
    query = f"SELECT build, module, seconds FROM events{sel.where} AND tier != {_LOCAL}"
    for build, module, seconds in log.db.execute(query, sel.params):
        pair = remote[module]
        pair[0].append(index[build])
        pair[1].append(seconds)
    names = log.strings(requests)
    return Demand(len(index), names, {}, dict(requests), dict(remote))


# -- co-occurrence ---------------------------------------------------------------------------
def co_occurrence(demand: Demand, top: int) -> list[dict]:
    """For each of the ``top`` modules used by the most builds (by name, all commits):

    - ``related_dependencies``: the modules used in at least MIN_RELATED_SCORE of its builds,
      each with ``co_occurrence_score`` = builds that used both / builds that used the primary,
      and ``usage_count`` = builds that used both; by score, then usage count, then name, at
      most ``top``;
    - ``bundle_score`` = the sum of the listed usage counts: the module requests a bundle of
      the primary and its related dependencies would have merged into the primary's request,
      over all its builds.

    Only modules used by at least the minimum support's number of builds take part. Primaries
    without a related dependency are left out; the rest are ordered by bundle score."""
    ranked = sorted(demand.tidsets, key=lambda m: (-demand.module_builds[m], demand.names[m]))
    out = []
    for primary in ranked[:top]:
        tidset, builds = demand.tidsets[primary], demand.module_builds[primary]
        related = []
        for other, other_set in demand.tidsets.items():
            if other == primary:
                continue
            both = (tidset & other_set).bit_count()
            if both >= MIN_RELATED_SCORE * builds:
                related.append((both / builds, both, demand.names[other]))
        if not related:
            continue
        related.sort(key=lambda r: (-r[0], -r[1], r[2]))
        related = related[:top]
        out.append(
            {
                "primary_dependency": demand.names[primary],
                "builds": builds,
                "related_dependencies": [
                    {"dependency": name, "co_occurrence_score": round(score, 4), "usage_count": n}
                    for score, n, name in related
                ],
                "bundle_score": sum(n for _, n, _ in related),
            }
        )
    out.sort(key=lambda e: (-e["bundle_score"], e["primary_dependency"]))
    return out


# -- time: requests per local hour and weekday -----------------------------------------------
@dataclass
class TimeProfile:
    requests: int
    hours: list[int]  # requests per local hour of day
    weekdays: list[int]  # requests per local weekday, Monday first
    weekday_days: list[int]  # how many of each weekday the observed dates span
    offsets: list[tuple[float, float, int]]  # (from, to, UTC offset in seconds): the zone's
    # offset over the span of the requests, one entry per stretch without a change

    def busiest(self) -> list[int]:
        """The busiest hour (as a one-hour list), or none without requests."""
        return [self.hours.index(max(self.hours))] if self.requests else []

    def per_day(self) -> dict[int, float]:
        """Mean requests per day of each weekday the observed dates hold (a span may hold
        five Mondays and four Sundays; a weekday it does not hold is left out)."""
        return {d: self.weekdays[d] / n for d, n in enumerate(self.weekday_days) if n}

    def busy_weekdays(self) -> list[int]:
        """Weekdays whose mean requests per day is above the mean over the observed ones."""
        per_day = self.per_day()
        if not per_day:
            return []
        mean = fmean(per_day.values())
        return [d for d, n in per_day.items() if n > mean]

    def quietest_weekday(self) -> int | None:
        """The observed weekday with the lowest mean requests per day (the first in the week,
        from Monday, among equals)."""
        per_day = self.per_day()
        return min(per_day, key=lambda d: (per_day[d], d)) if per_day else None

    def busiest_weekday(self) -> int | None:
        per_day = self.per_day()
        return min(per_day, key=lambda d: (-per_day[d], d)) if per_day else None


class LocalClock:
    """UTC offsets of a zone, looked up once per UTC day: a day whose offset is the same at
    its start and its end needs no other lookup (DST changes happen on a few days a year)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._days: dict[int, int | None] = {}

    def _offset_at(self, t: int) -> int:
        offset = datetime.fromtimestamp(t, self.zone).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def offset(self, t: int) -> int:
        """The zone's offset from UTC, in seconds, at ``t`` (seconds since the epoch)."""
        day = t // 86400
        if day not in self._days:
            start, end = self._offset_at(day * 86400), self._offset_at(day * 86400 + 86399)
            self._days[day] = start if start == end else None
        offset = self._days[day]
        return offset if offset is not None else self._offset_at(t)


def time_profile(log: EventLog, sel: Selection, zone: ZoneInfo) -> TimeProfile:
    """Requests per local hour and weekday. SQLite counts them per UTC quarter hour; each
    bucket is converted to local time here, so DST and half-hour zones are exact."""
    rows = log.db.execute(
        f"SELECT CAST(time / {BUCKET} AS INTEGER) AS q, COUNT(*) FROM events{sel.where}"
        " GROUP BY q ORDER BY q",
        sel.params,
    )
    clock = LocalClock(zone)
    hours, weekdays = [0] * 24, [0] * 7
    offsets: list[tuple[float, float, int]] = []
    first_day = last_day = 0
    for q, n in rows:
        t = q * BUCKET
        offset = clock.offset(t)
        local = t + offset
        hours[local // 3600 % 24] += n
        weekdays[(local // 86400 + 3) % 7] += n  # 1970-01-01 was a Thursday
        if not offsets:
            first_day = local // 86400
        last_day = local // 86400
        if offsets and offsets[-1][2] == offset:
            offsets[-1] = (offsets[-1][0], t + BUCKET, offset)
        else:
            offsets.append((t, t + BUCKET, offset))
    days = [0] * 7
    if offsets:
        epoch = date(1970, 1, 1)
        days = weekday_counts(epoch + timedelta(days=first_day), epoch + timedelta(days=last_day))
    return TimeProfile(sum(hours), hours, weekdays, days, offsets)


def weekday_counts(first: date, last: date) -> list[int]:
    """How many Mondays, Tuesdays, ... the dates from ``first`` to ``last`` (inclusive) hold."""
    total = (last - first).days + 1
    counts = [total // 7] * 7
    for k in range(total % 7):
        counts[(first + timedelta(days=k)).weekday()] += 1
    return counts


def peak_hours(hours: list[int]) -> list[int]:
    """The peak hours of a day's 24 request counts: hours whose count is above the mean plus
    one population standard deviation of the active hours (those with at least
    ACTIVE_HOUR_SHARE of the busiest hour's count, so that quiet nights do not lower the bar),
    and at least the count of both neighbouring hours (a local maximum, so that a peak's
    shoulder is not a second peak). A flat day has none."""
    busiest = max(hours)
    if busiest == 0:
        return []
    active = [n for n in hours if n >= ACTIVE_HOUR_SHARE * busiest]
    bar = fmean(active) + pstdev(active)
    return [
        h for h, n in enumerate(hours) if n > bar and n >= hours[h - 1] and n >= hours[(h + 1) % 24]
    ]


def quietest_hour(hours: list[int]) -> int:
    """The hour with the fewest requests. Among several, the middle one (the earlier of two
    middles) of the longest run of such hours around the clock; among runs of one length,
    the run that starts earliest in the day. Midnight when every hour is alike."""
    low = min(hours)
    if all(n == low for n in hours):
        return 0
    pivot = next(h for h in range(24) if hours[h] != low)  # no run crosses it
    runs: list[tuple[int, int]] = []  # (start, length)
    start, length = 0, 0
    for k in range(1, 25):
        h = (pivot + k) % 24
        if hours[h] == low:
            start, length = (h, 1) if length == 0 else (start, length + 1)
        elif length:
            runs.append((start, length))
            length = 0
    start, length = min(runs, key=lambda r: (-r[1], r[0]))
    return (start + (length - 1) // 2) % 24


def peak_report(profile: TimeProfile, peaks: list[int], team: str, timezone: str) -> dict:
    """The design document's peak-usage analysis: ``peak_hours`` (see ``peak_hours``),
    requests per local hour and weekday, ``peak_weekdays`` (``TimeProfile.busy_weekdays``)
    and ``quietest_weekday`` (``TimeProfile.quietest_weekday``)."""
    quiet = profile.quietest_weekday()
    return {
        "team": team,
        "timezone": timezone,
        "peak_hours": peaks,
        "hours": profile.hours,
        "weekdays": dict(zip(WEEKDAYS, profile.weekdays, strict=True)),
        "peak_weekdays": [WEEKDAYS[d] for d in profile.busy_weekdays()],
        "quietest_weekday": WEEKDAYS[quiet] if quiet is not None else None,
        "recommendations": peak_recommendations(profile, peaks, timezone),
    }


def peak_recommendations(profile: TimeProfile, peaks: list[int], timezone: str) -> list[str]:
    if not profile.requests:
        return []
    out = []
    hours = profile.hours
    if peaks:
        at = ", ".join(f"{h:02d}:00" for h in peaks)
        share = sum(hours[h] for h in peaks) / profile.requests
        out.append(
            f"Pre-warm cache at {(peaks[0] - 1) % 24:02d}:00 daily ({timezone}), an hour"
            f" before the first peak: peak hours {at} carry {share:.0%} of demand requests"
        )
    quiet = quietest_hour(hours)
    out.append(
        f"Schedule maintenance during off-peak hours: {quiet:02d}:00 ({timezone}),"
        f" {hours[quiet]} requests in that hour against {max(hours)} in the busiest"
    )
    per_day = profile.per_day()
    quiet_day, busy_day = profile.quietest_weekday(), profile.busiest_weekday()
    out.append(
        f"Refresh the whole cache weekly on {WEEKDAYS[quiet_day]} at {quiet:02d}:00"
        f" ({timezone}): {per_day[quiet_day]:.0f} requests a day against"
        f" {per_day[busy_day]:.0f} on {WEEKDAYS[busy_day]}"
    )
    return out


# -- bundle opportunities ----------------------------------------------------------------------
@dataclass(frozen=True)
class Savings:
    requests: int
    seconds: float | None  # None: no recorded team or BSR request to price them
    measured_seconds: float  # the set's remote requests in its builds, as recorded


def bundle_savings(demand: Demand, itemset: Itemset, model: TransferModel | None) -> Savings:
    """What a bundle of the set would have saved in the builds that used all of it. In each
    such build, the set's modules that the team registry or the BSR served (each module
    counted once per build) would have come in one bundle request instead: saved requests =
    the sum over those builds of (remote modules - 1), for builds with at least one. Seconds =
    saved requests * the fitted per-request latency (the team registry tier's, else the BSR
    tier's). The measured seconds are those of the set's remote requests in those builds
    (every request, in every job), so percent = seconds / measured seconds errs low when a
    build's jobs fetch the same modules."""
    tidset = itemset.tidset
    remote_pairs = 0
    any_remote = 0
    measured = 0.0
    for module in itemset.items:
        remote = demand.remote_sets[module] & tidset
        remote_pairs += remote.bit_count()
        any_remote |= remote
        if remote:
            measured += demand.remote_seconds(module, tidset)
    saved = remote_pairs - any_remote.bit_count()
    seconds = model.latency_seconds * saved if model is not None else None
    return Savings(saved, seconds, measured)


def rank_opportunities(
    demand: Demand, itemsets: list[Itemset], model: TransferModel | None
) -> list[tuple[Itemset, Savings]]:
    """By saved requests, then builds, then module names."""
    scored = [(s, bundle_savings(demand, s, model)) for s in itemsets]
    scored.sort(key=lambda p: (-p[1].requests, -p[0].support, demand.names_of(p[0].items)))
    return scored


def opportunity_json(
    demand: Demand, itemset: Itemset, savings: Savings, latest: dict[int, str]
) -> dict:
    """One bundle opportunity: a maximal set of modules (by name) such that at least the
    minimum support's number of builds used every one of them (``builds``) and
    ``co_occurrence`` = builds that used all of them / builds that used any is at least the
    minimum co-occurrence (MIN_CO_OCCURRENCE unless told); adding any other module would
    break one of the two. ``name`` comes
    from the modules (``bundle_name``), ``refs`` pin each module at the commit of its latest
    demand request, ``potential_savings`` is ``bundle_savings`` with ``percent`` = seconds /
    measured seconds * 100 (null when either is unknown or nothing was measured)."""
    names = sorted(demand.names_of(itemset.items))
    by_name = {demand.names[m]: m for m in itemset.items}
    percent = (
        100.0 * savings.seconds / savings.measured_seconds
        if savings.seconds is not None and savings.measured_seconds > 0
        else None
    )
    return {
        "name": bundle_name(names),
        "dependencies": names,
        "refs": [f"{n}:{latest[by_name[n]]}" for n in names if by_name[n] in latest],
        "builds": itemset.support,
        "co_occurrence": round(itemset.co_occurrence, 4),
        "potential_savings": {
            "requests": savings.requests,
            "seconds": round(savings.seconds, 3) if savings.seconds is not None else None,
            "percent": round(percent, 1) if percent is not None else None,
            "text": savings_text(savings, percent, itemset.support),
        },
    }


def savings_text(savings: Savings, percent: float | None, builds: int) -> str:
    if savings.requests == 0:
        return (
            f"no request saved: in each of its {builds} builds at most one of these modules"
            " came from the team registry or the BSR"
        )
    if savings.seconds is None:
        return (
            f"{savings.requests} requests saved over {builds} builds (no team or BSR request"
            " recorded to price them)"
        )
    text = f"{savings.requests} requests saved over {builds} builds, {savings.seconds:.1f} s"
    if percent is not None:
        text += f" ({percent:.0f}% of the {savings.measured_seconds:.1f} s they took)"
    return text


def bundle_name(modules: list[str]) -> str:
    """A stable bundle name from the modules' owners (``googleapis-grpc-bundle-1a2b3c``): at
    most three owners, then how many more, and six hex digits of a hash of the sorted module
    names, so that two sets practically never share a name."""
    owners = sorted({m.split("/")[1] for m in modules if m.count("/") == 2})
    parts = [_NAME_PART.sub("-", o.lower()).strip("-") for o in owners[:3]]
    parts = [p for p in parts if p]
    if len(owners) > 3:
        parts.append(f"and-{len(owners) - 3}-more")
    digest = hashlib.blake2b("\n".join(sorted(modules)).encode(), digest_size=3).hexdigest()
    stem = "-".join(parts)[: MAX_BUNDLE_NAME - len("-bundle-") - 6].strip("-")
    return f"{stem}-bundle-{digest}" if stem else f"bundle-{digest}"


def _latency_model(
    log: EventLog, *, team: str | None, since: float | None, until: float | None
) -> tuple[TransferModel | None, str]:
    """The per-request latency that prices a saved request: the team registry tier's fit
    (every member, every operation, in the window), else the BSR tier's."""
    for tier in ("team", "bsr"):
        model = fit_tier(log, (tier,), team=team, since=since, until=until)
        if model is not None:
            return model, tier
    return None, ""


# -- warming ---------------------------------------------------------------------------------
def peak_modules(
    log: EventLog, sel: Selection, profile: TimeProfile, hours: list[int]
) -> dict[int, int]:
    """Requests per module (id) in ``hours`` (local). One query per stretch of the span
    with one UTC offset (a year has three), each a range of the time index in which SQLite
    computes the local hour."""
    if not hours:
        return {}
    marks = ",".join(str(h) for h in sorted(set(hours)))
    query = (
        f"SELECT module, COUNT(*) FROM events WHERE time >= ? AND time < ? AND {sel.conditions}"
        f" AND CAST((time + ?) / 3600 AS INTEGER) % 24 IN ({marks}) GROUP BY module"
    )
    counts: dict[int, int] = {}
    for start, end, offset in profile.offsets:
        for module, n in log.db.execute(query, [start, end, *sel.params, offset]):
            counts[module] = counts.get(module, 0) + n
    return counts


def latest_commits(log: EventLog, sel: Selection, modules: set[int]) -> dict[int, str]:
    """The commit of each module's latest demand request. The modules asked for are frequent,
    so walking the time index back from the newest event finds them at once; any still
    missing after LATEST_SCAN events are looked up in one aggregate query."""
    found: dict[int, int] = {}
    if modules:
        cursor = log.db.execute(
            f"SELECT module, commit_id FROM events{sel.where} ORDER BY time DESC LIMIT ?",
            [*sel.params, LATEST_SCAN],
        )
        for module, commit in cursor:
            if module in modules and module not in found:
                found[module] = commit
                if len(found) == len(modules):
                    break
        cursor.close()
    missing = sorted(modules - found.keys())
    for start in range(0, len(missing), 500):
        part = missing[start : start + 500]
        marks = ",".join("?" * len(part))
        # SQLite takes a bare column from the row that holds the MAX().
        rows = log.db.execute(
            f"SELECT module, commit_id, MAX(time) FROM events{sel.where} AND module IN ({marks})"
            " GROUP BY module",
            [*sel.params, *part],
        )
        found.update((module, commit) for module, commit, _ in rows)
    texts = log.strings(found.values())
    return {m: texts[c] for m, c in found.items()}


def warming_schedule(
    profile: TimeProfile,
    peaks: list[int],
    timezone: str,
    warm_ids: list[int],
    demand: Demand,
    latest: dict[int, str],
) -> dict:
    """``daily``: an hour before the first peak of the day (the busiest hour when no hour
    stands out), the modules most requested in the peak hours at their latest commit;
    ``weekly``: a full refresh on the quietest weekday at the quietest hour."""
    first = (peaks or profile.busiest() or [None])[0]
    refs = [f"{demand.names[m]}:{latest[m]}" for m in warm_ids if m in latest]
    quiet_day = profile.quietest_weekday()
    return {
        "daily": {
            "time": f"{(first - 1) % 24:02d}:00" if first is not None else None,
            "timezone": timezone,
            "dependencies": refs,
        },
        "weekly": {
            "day": WEEKDAYS[quiet_day] if quiet_day is not None else None,
            "time": f"{quietest_hour(profile.hours):02d}:00" if profile.requests else None,
            "timezone": timezone,
            "action": "full_cache_refresh",
        },
    }
