"""A synthetic team, for tests and benchmarks: seeded, so the same scenario always gives the
same events, and with a known plant (groups of modules used together, peak hours) that the
analysis must find again.

What it simulates:
- projects, each needing one planted group of modules, one or two modules of its own, some of
  the team's common modules (googleapis, protovalidate), and on each fetch a few background
  modules drawn from a long tail; a gateway project needs two groups; now and then a fetch
  asks for only some of its project's modules;
- builds on members' laptops (one fetch per build, the build id is the fetch id) and in CI
  (``GITHUB_RUN_ID:<n>``, one to three jobs on runners, some of them fresh ephemeral ones),
  plus nightly CI builds and a weekday warm job (operation ``warm``);
- a daily rhythm in the team's time zone (work hours, a lunch dip, the planted peak hours) and
  a weekly one (quiet weekends);
- commits that change now and then, sizes from kilobytes to tens of megabytes, and seconds
  per tier (the BSR slower than the team registry, bundles, and the local store);
- tiers from a simulated cache: each host's local store is an LRU of a fixed size, the team
  registry has whatever someone already fetched, and a team bundle of the first group is
  created half-way through.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate, islice
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from bsr_team_cache.usage.events import (
    BSR,
    BUNDLE,
    FETCH,
    LOCAL,
    TEAM,
    WARM,
    UsageEvent,
)
from bsr_team_cache.usage.log import OWN, EventLog, write_jsonl

DAY = 86400.0
SLOT = 900.0  # time is drawn in quarter-hours: every zone's offset is a multiple of 15 min
WEEKDAY_WEIGHT = (1.0, 1.0, 1.0, 1.0, 0.85, 0.08, 0.05)  # Monday .. Sunday
# Requests per local hour of a working day, before the planted peaks are added.
HOUR_WEIGHT = (
    0.02, 0.02, 0.02, 0.02, 0.02, 0.03, 0.05, 0.2,  # 00-07
    0.7, 1.0, 1.0, 1.0, 0.6, 0.9, 1.0, 1.0, 1.0, 0.9, 0.5,  # 08-18
    0.25, 0.15, 0.1, 0.05, 0.03,  # 19-23
)  # fmt: skip
PEAK_WEIGHT = 2.6  # the hour weight of a planted peak hour
NIGHTLY_HOUR = 2  # nightly CI builds start in this local hour
WARM_HOUR = 7  # the weekday warm job runs in this local hour
WARM_TOP = 10  # modules the warm job warms
CI_SHARE = 0.45  # of the builds
NIGHTLY_SHARE = 0.04  # of the CI builds
EPHEMERAL_SHARE = 0.3  # of the CI jobs: a fresh runner with an empty store
CI_JOBS = ((1, 0.5), (2, 0.3), (3, 0.2))  # jobs per CI build, with their probabilities
CI_JOB_COUNTS = tuple(n for n, _ in CI_JOBS)
NOISE_PER_FETCH = ((0, 0.5), (1, 0.3), (2, 0.15), (3, 0.05))
NOISE_COUNTS = tuple(n for n, _ in NOISE_PER_FETCH)
PARTIAL_SHARE = 0.05  # of the fetches: only some of the project's modules
LAPTOP_STORE = 200_000_000  # bytes of a laptop's local store
RUNNER_STORE = 120_000_000  # bytes of a CI runner's local store
COMMIT_DAYS = 20.0  # mean days between two commits of a module
CI_MEMBER = "github-actions"
# (latency seconds, bytes per second) of a request to each tier.
TIER_SPEED = {
    LOCAL: (0.001, 400e6),
    TEAM: (0.045, 60e6),
    BUNDLE: (0.012, 80e6),
    BSR: (0.3, 12e6),
}
MEMBER_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe",
)  # fmt: skip
COMMON_MODULES = ("googleapis/googleapis", "bufbuild/protovalidate")
GROUP_OWNERS = ("payments", "identity", "logistics", "catalog", "billing", "search", "media")
GROUP_NAMES = ("core", "events", "api", "types", "rpc", "errors", "audit", "config")


@dataclass(frozen=True)
class Scenario:
    """What to simulate. ``events`` is exact: builds are planned with a margin, thinned at
    random across the whole span to fit, and the last fetch is cut."""

    events: int = 100_000
    seed: int = 1
    start: float = 1_767_571_200.0  # 2026-01-05T00:00:00Z, a Monday
    days: int = 56
    timezone: str = "Europe/Berlin"
    team: str = "platform-team"
    registry: str = "buf.build"
    members: int = 12
    ci_runners: int = 6
    group_sizes: tuple[int, ...] = (3, 4, 5)
    projects_per_group: int = 3
    peak_hours: tuple[int, ...] = (9, 14, 16)
    noise_modules: int = 30
    bundle_first_group: bool = True  # a team bundle of group 0 exists from half-way on


@dataclass(frozen=True)
class Plant:
    """What the generator planted, for tests to find again."""

    team: str
    timezone: str
    peak_hours: tuple[int, ...]  # local hours
    groups: tuple[tuple[str, ...], ...]  # module names of each group, sorted
    projects: dict[str, tuple[str, ...]]  # project -> the module names it always needs
    bundles: dict[str, tuple[str, ...]]  # "name:version" of a team bundle -> its module names
    common: tuple[str, ...]
    noise: tuple[str, ...]
    start: float
    end: float


@dataclass
class _Build:
    time: float
    kind: str  # laptop, ci, warm
    project: str
    member: str
    fetches: list[list[str]]  # per job (fetch), the module names it asks for
    build: str = ""


@dataclass
class _Host:
    capacity: int
    used: int = 0
    keys: dict[str, int] = field(default_factory=dict)  # commit -> bytes, oldest first


class SyntheticTeam:
    """One scenario: ``plant`` is known at once; ``fetches()`` yields the command runs build
    by build, the builds in time order (a CI build's jobs start within four minutes of it),
    ``rows()`` their events as tuples in ``UsageEvent``'s field order, and ``events()`` as
    objects."""

    def __init__(self, scenario: Scenario) -> None:
        if not all(2 <= n <= len(GROUP_NAMES) for n in scenario.group_sizes):
            raise ValueError(f"group sizes must be from 2 to {len(GROUP_NAMES)}")
        if not all(0 <= h <= 23 for h in scenario.peak_hours):
            raise ValueError("peak hours are hours of the day, 0 to 23")
        self.scenario = scenario
        self.zone = ZoneInfo(scenario.timezone)
        self.rng = random.Random(scenario.seed)
        self._plan_modules()
        self.plant = self._make_plant()

    # -- the plant -------------------------------------------------------------------------
    def _name(self, path: str) -> str:
        return f"{self.scenario.registry}/{path}"

    def _plan_modules(self) -> None:
        s, rng = self.scenario, self.rng
        self.groups: list[tuple[str, ...]] = []
        for g, size in enumerate(s.group_sizes):
            owner = GROUP_OWNERS[g % len(GROUP_OWNERS)] + ("" if g < len(GROUP_OWNERS) else str(g))
            self.groups.append(
                tuple(sorted(self._name(f"{owner}/{n}") for n in GROUP_NAMES[:size]))
            )
        self.common = tuple(self._name(m) for m in COMMON_MODULES)
        self.noise = tuple(self._name(f"vendor{i // 10}/lib{i}") for i in range(s.noise_modules))
        # Background modules follow Zipf: a few are common, most are rare.
        self.noise_weights = list(accumulate(1.0 / (i + 1) for i in range(len(self.noise))))
        self.noise_count_weights = list(accumulate(w for _, w in NOISE_PER_FETCH))
        self.ci_job_weights = list(accumulate(w for _, w in CI_JOBS))
        self.projects: dict[str, tuple[str, ...]] = {}
        for g, group in enumerate(self.groups):
            for k in range(s.projects_per_group):
                j = g * s.projects_per_group + k
                project = f"services/{GROUP_OWNERS[g % len(GROUP_OWNERS)]}-{k}"
                own = [self._name(f"{project.split('/')[1]}/api")]
                if j % 3 == 0:
                    own.append(self._name(f"{project.split('/')[1]}/internal"))
                # Common modules cross the groups (every project but one in five takes
                # googleapis, every other one protovalidate): they join no group.
                common = [self.common[0]] * (j % 5 != 4) + [self.common[1]] * (j % 2 == 0)
                self.projects[project] = tuple(sorted({*group, *own, *common}))
        if len(self.groups) >= 2:
            # A gateway needs the first two groups: a set across groups that is no group.
            gateway = {*self.groups[0], *self.groups[1], self._name("gateway/api"), self.common[0]}
            self.projects["services/gateway"] = tuple(sorted(gateway))
        self.project_names = list(self.projects)
        every = {m for p in self.projects.values() for m in p} | set(self.noise)
        self.modules = tuple(sorted(every))
        # Sizes: log-uniform from 8 KB to 40 MB, googleapis a large one.
        self.base_size = {
            m: int(math.exp(rng.uniform(math.log(8e3), math.log(40e6)))) for m in self.modules
        }
        self.base_size[self.common[0]] = 9_500_000
        span = s.days * DAY
        self.commit_times: dict[str, list[float]] = {}
        for m in self.modules:
            times, t = [], s.start
            while True:
                t += rng.expovariate(1.0 / (COMMIT_DAYS * DAY))
                if t >= s.start + span:
                    break
                times.append(t)
            self.commit_times[m] = times
        self.members = [
            MEMBER_NAMES[i] if i < len(MEMBER_NAMES) else f"member{i}" for i in range(s.members)
        ]
        # Each project has the members who work on it (every member on one or two).
        names = list(self.projects)
        self.project_members = {p: [] for p in names}
        for i, member in enumerate(self.members):
            self.project_members[names[i % len(names)]].append(member)
            if i % 2:
                self.project_members[names[(i * 7 + 3) % len(names)]].append(member)
        for i, p in enumerate(names):
            if not self.project_members[p]:
                self.project_members[p].append(self.members[i % len(self.members)])

    def _make_plant(self) -> Plant:
        s = self.scenario
        bundles = {}
        if s.bundle_first_group and self.groups:
            bundles[f"{GROUP_OWNERS[0]}-core:v1"] = self.groups[0]
        return Plant(
            team=s.team,
            timezone=s.timezone,
            peak_hours=tuple(sorted(s.peak_hours)),
            groups=tuple(self.groups),
            projects=dict(self.projects),
            bundles=bundles,
            common=self.common,
            noise=self.noise,
            start=s.start,
            end=s.start + s.days * DAY,
        )

    # -- time ------------------------------------------------------------------------------
    def _slots(self) -> tuple[list[float], list[float], list[float], list[float]]:
        """Quarter-hour slots of the span with their cumulative weights for work builds, and
        the slots of the nightly builds and of the warm job."""
        s = self.scenario
        hours = list(HOUR_WEIGHT)
        for h in s.peak_hours:
            hours[h] = PEAK_WEIGHT
        starts, cumulative, nightly, warm = [], [], [], []
        total = 0.0
        for i in range(int(s.days * DAY / SLOT)):
            t = s.start + i * SLOT
            local = datetime.fromtimestamp(t, self.zone)
            total += WEEKDAY_WEIGHT[local.weekday()] * hours[local.hour]
            starts.append(t)
            cumulative.append(total)
            if local.hour == NIGHTLY_HOUR and local.minute == 0:
                nightly.append(t)
            if local.hour == WARM_HOUR and local.minute == 0 and local.weekday() < 5:
                warm.append(t)
        return starts, cumulative, nightly, warm

    # -- builds ----------------------------------------------------------------------------
    def _noise(self) -> list[str]:
        rng = self.rng
        k = rng.choices(NOISE_COUNTS, cum_weights=self.noise_count_weights)[0]
        return (
            sorted(set(rng.choices(self.noise, cum_weights=self.noise_weights, k=k))) if k else []
        )

    def _plan_build(self, t: float, kind: str) -> _Build:
        rng = self.rng
        project = rng.choice(self.project_names)
        needs = self.projects[project]
        if kind == "laptop":
            member = rng.choice(self.project_members[project])
            return _Build(t, kind, project, member, [self._job(needs)])
        jobs = rng.choices(CI_JOB_COUNTS, cum_weights=self.ci_job_weights)[0]
        return _Build(t, kind, project, CI_MEMBER, [self._job(needs) for _ in range(jobs)])

    def _job(self, needs: tuple[str, ...]) -> list[str]:
        """What one fetch asks for: the project's modules (now and then only some of them:
        a build of one directory, a lock being updated) and a few background modules."""
        rng = self.rng
        if len(needs) > 1 and rng.random() < PARTIAL_SHARE:
            needs = tuple(rng.sample(needs, rng.randrange(1, len(needs))))
        return [*needs, *self._noise()]

    def _builds(self) -> list[_Build]:
        """Every build of the span, in time order: planned until their fetches ask for at
        least ``events`` modules, then thinned at random (across the whole span) to fit."""
        s, rng = self.scenario, self.rng
        starts, cumulative, nightly, warm_slots = self._slots()
        builds = [_Build(t + rng.uniform(0, 600), "warm", "", CI_MEMBER, [[]]) for t in warm_slots]
        warm_size = len(self._warm_list())
        total = warm_size * len(builds)
        while total < s.events:
            more = math.ceil((s.events - total) / self._mean_modules_per_build() * 1.1) + 20
            for _ in range(more):
                kind = "ci" if rng.random() < CI_SHARE else "laptop"
                if kind == "ci" and nightly and rng.random() < NIGHTLY_SHARE:
                    t = rng.choice(nightly) + rng.uniform(0, 1800)
                else:
                    slot = bisect.bisect_left(cumulative, rng.uniform(0, cumulative[-1]))
                    t = starts[min(slot, len(starts) - 1)] + rng.uniform(0, SLOT)
                build = self._plan_build(t, kind)
                builds.append(build)
                total += sum(len(f) for f in build.fetches)
        order = list(range(len(builds)))
        rng.shuffle(order)
        dropped = set()
        for i in order:
            size = sum(len(f) for f in builds[i].fetches) if builds[i].kind != "warm" else 0
            if size and total - size >= s.events:
                dropped.add(i)
                total -= size
        kept = [b for i, b in enumerate(builds) if i not in dropped]
        kept.sort(key=lambda b: b.time)
        run = 7_000_000_000
        for b in kept:
            if b.kind == "ci":
                run += 1 + rng.randrange(3)  # other workflows' runs in between
                b.build = f"GITHUB_RUN_ID:{run}"
        return kept

    def _mean_modules_per_build(self) -> float:
        project = sum(len(m) for m in self.projects.values()) / len(self.projects)
        noise = sum(n * w for n, w in NOISE_PER_FETCH)  # at most: duplicates are merged
        jobs = sum(n * w for n, w in CI_JOBS)
        return (project + noise) * (CI_SHARE * jobs + 1 - CI_SHARE)

    # -- the simulated cache ---------------------------------------------------------------
    def fetches(self) -> Iterator[Fetch]:
        """The fetches (and warm runs), build by build, with the tier that served each module.
        Every call gives the same fetches (the plan has a random stream of its own)."""
        s = self.scenario
        rng = self.rng = random.Random(f"{s.seed}/events")
        builds = self._builds()
        versions = self._versions()
        hosts: dict[str, _Host] = {}
        team_keys: set[str] = set()  # commits someone already fetched
        bundle_name, bundle_keys, bundle_time = "", set(), math.inf
        if self.plant.bundles:
            bundle_name = next(iter(self.plant.bundles))
            bundle_time = s.start + s.days * DAY / 2
        runners = [f"ci-runner-{i}" for i in range(s.ci_runners)]
        random_ = rng.random
        left = s.events
        for b in builds:
            if b.kind == "warm":
                b.fetches = [self._warm_list()]
            if b.time >= bundle_time and not bundle_keys:
                # Creating the bundle pushed its members' current commits to the registry.
                bundle_keys = {versions[m].at(b.time)[0] for m in self.groups[0]}
                team_keys |= bundle_keys
            for job in b.fetches:
                if left <= 0:
                    return
                if b.kind == "laptop":
                    host, capacity = f"{b.member}-laptop", LAPTOP_STORE
                elif b.kind == "warm" or random_() >= EPHEMERAL_SHARE:
                    host, capacity = rng.choice(runners), RUNNER_STORE
                else:
                    host, capacity = f"gha-{rng.getrandbits(32):08x}", RUNNER_STORE
                store = hosts.get(host)
                if store is None:
                    store = hosts[host] = _Host(capacity)
                fetch = f"{rng.getrandbits(128):032x}"
                t = b.time + (rng.uniform(0, 240) if b.kind == "ci" else 0.0)
                served = []
                for module in job[:left]:
                    commit, size = versions[module].at(t)
                    tier = _serve(store, commit, size, team_keys, bundle_keys)
                    latency, rate = TIER_SPEED[tier]
                    seconds = (latency + size / rate) * (0.75 + 0.5 * random_())
                    bundle = bundle_name if tier == BUNDLE else ""
                    served.append((module, commit, tier, size, seconds, bundle))
                left -= len(served)
                yield Fetch(
                    time=t,
                    member=b.member,
                    build=b.build or fetch,
                    host=host,
                    fetch=fetch,
                    project=b.project,
                    fetch_seconds=0.08 + 0.6 * sum(x[4] for x in served),
                    operation=WARM if b.kind == "warm" else FETCH,
                    served=served,
                )

    def rows(self) -> Iterator[tuple]:
        """The events of ``fetches()``, as tuples in ``UsageEvent``'s field order."""
        team = self.scenario.team
        for f in self.fetches():
            for module, commit, tier, size, seconds, bundle in f.served:
                yield (
                    f.time, f.member, f.build, module, commit, tier, size, seconds, team, f.host,
                    f.fetch, f.project, bundle, f.fetch_seconds, f.operation,
                )  # fmt: skip

    def events(self) -> Iterator[UsageEvent]:
        for row in self.rows():
            yield UsageEvent(*row)

    def _warm_list(self) -> list[str]:
        """The warm job's modules: the planted groups and the common modules, at most
        WARM_TOP (what a team's top-N list would hold)."""
        every = [m for g in self.groups for m in g] + list(self.common)
        return every[:WARM_TOP]

    def _versions(self) -> dict[str, _Versions]:
        """Each module's commits (a made-up id per version) and sizes (a version grows a
        little), with the times they appeared."""
        out = {}
        for m, times in self.commit_times.items():
            commits = [hashlib.md5(f"{m}@{v}".encode()).hexdigest() for v in range(len(times) + 1)]
            sizes = [int(self.base_size[m] * (1 + 0.02 * (v % 7))) for v in range(len(times) + 1)]
            out[m] = _Versions(times, commits, sizes)
        return out


@dataclass(frozen=True, slots=True)
class Fetch:
    """One command run: who, where, and per module (name, commit, tier, bytes, seconds,
    bundle)."""

    time: float
    member: str
    build: str
    host: str
    fetch: str
    project: str
    fetch_seconds: float
    operation: str
    served: list[tuple[str, str, str, int, float, str]]


@dataclass(frozen=True, slots=True)
class _Versions:
    times: list[float]  # when each commit after the first appeared
    commits: list[str]
    sizes: list[int]

    def at(self, t: float) -> tuple[str, int]:
        v = bisect.bisect_right(self.times, t)
        return self.commits[v], self.sizes[v]


def _serve(store: _Host, commit: str, size: int, team_keys: set[str], bundle_keys: set[str]) -> str:
    """The tier that serves ``commit`` on this host, updating the host's LRU store and the
    team registry."""
    keys = store.keys
    if commit in keys:
        keys[commit] = keys.pop(commit)  # now the most recently used
        return LOCAL
    if commit in bundle_keys:
        tier = BUNDLE
    elif commit in team_keys:
        tier = TEAM
    else:
        tier = BSR
        team_keys.add(commit)
    keys[commit] = size
    store.used += size
    while store.used > store.capacity and len(keys) > 1:
        store.used -= keys.pop(next(iter(keys)))
    return tier


def synthetic_team(scenario: Scenario | None = None, **changes) -> SyntheticTeam:
    """A synthetic team for ``scenario`` (default: ``Scenario()`` with ``changes``)."""
    from dataclasses import replace

    return SyntheticTeam(replace(scenario or Scenario(), **changes))


# -- writing -------------------------------------------------------------------------------
BATCH = 50_000  # events per transaction
WRITE_CACHE_KIB = 128 * 1024


def write_log(log: EventLog, team: SyntheticTeam, *, source: int = OWN) -> int:
    """Write the team's events into ``log`` through ``EventLog.add``, a batch per transaction
    (an executemany of rows built here instead of events was measured no faster: SQLite's
    inserts dominate). Returns how many were new."""
    # The event-id index takes random inserts: with SQLite's default 2 MB page cache a
    # million events keep reading its pages back.
    (cache_size,) = log.db.execute("PRAGMA cache_size").fetchone()
    log.db.execute(f"PRAGMA cache_size = {-WRITE_CACHE_KIB}")
    added = 0
    try:
        events = team.events()
        while batch := list(islice(events, BATCH)):
            added += log.add(batch, source)
    finally:
        log.db.execute(f"PRAGMA cache_size = {int(cache_size)}")
    return added


def write_jsonl_file(out: IO[str] | Path, team: SyntheticTeam) -> int:
    """Write the team's events as JSON lines (``usage import``'s input). Returns how many."""
    if isinstance(out, Path):
        with open(out, "w", encoding="utf-8") as f:
            return write_jsonl(team.events(), f)
    return write_jsonl(team.events(), out)
