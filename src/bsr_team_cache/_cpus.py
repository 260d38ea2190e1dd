"""How many CPUs this process may keep busy: what parallel work is sized to.

``os.cpu_count()`` counts the machine's. A process may be held to fewer: by its CPU affinity
(``taskset``, a CI runner's cpuset), and by its cgroup's CPU quota (a container limited to one
CPU on a 16-core host), which the kernel enforces by pausing the group, so that a second busy
process or thread only takes turns with the first. Asked only where work may be split (it reads
a few small files, once per process).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

_CGROUP_ROOT = "/sys/fs/cgroup"
_SELF_CGROUP = "/proc/self/cgroup"


@functools.cache
def usable_cpus() -> int:
    """The CPUs this process may use at once: its affinity, within its cgroup's quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(root: str = _CGROUP_ROOT, self_cgroup: str = _SELF_CGROUP) -> float | None:
    """The CPUs' worth of time this process's cgroup may use (the least along its path, cgroup
    v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None if unlimited
    or unknown (no cgroup file system, an unreadable or malformed file: no limit is assumed)."""
    try:
        with open(self_cgroup, encoding="ascii", errors="replace") as lines:
            memberships = [line.rstrip("\n").split(":", 2) for line in lines]
    except OSError:
        return None
    limits: list[float] = []
    for fields in memberships:
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: one hierarchy
            limits += _along(root, path, _v2_limit)
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's hierarchy
            limits += _along(os.path.join(root, controllers), path, _v1_limit)
            if not os.path.isdir(os.path.join(root, controllers)):
                limits += _along(os.path.join(root, "cpu"), path, _v1_limit)
    return min(limits) if limits else None


def _along(hierarchy: str, path: str, limit_at: Callable[[str], float | None]) -> list[float]:
    """The limits set in ``hierarchy`` at the cgroup ``path`` and at each of its ancestors (in
    a container the path is often "/", the container's own root)."""
    found = []
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    for depth in range(len(parts), -1, -1):
        limit = limit_at(os.path.join(hierarchy, *parts[:depth]))
        if limit is not None:
            found.append(limit)
    return found


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as file:
            return file.read(256)
    except (OSError, UnicodeDecodeError):
        return None


def _v2_limit(directory: str) -> float | None:
    text = _read(os.path.join(directory, "cpu.max"))  # "max 100000" or "150000 100000"
    fields = text.split() if text else []
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1_limit(directory: str) -> float | None:
    quota = _read(os.path.join(directory, "cpu.cfs_quota_us"))  # "-1": no limit
    period = _read(os.path.join(directory, "cpu.cfs_period_us"))
    if quota is None or period is None:
        return None
    return _ratio(quota.strip(), period.strip())


def _ratio(quota: str, period: str) -> float | None:
    if not (quota.isdigit() and period.isdigit()) or int(period) == 0 or int(quota) == 0:
        return None
    return int(quota) / int(period)
