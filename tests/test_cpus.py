"""The CPUs parallel work is sized to (_cpus.py): affinity, within the cgroup's CPU quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from bsr_team_cache import _cpus
from bsr_team_cache._cpus import cgroup_cpu_quota


def _cgroups(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[str, str]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    (tmp_path / "self").write_text(membership)
    return str(root), str(tmp_path / "self")


@pytest.mark.parametrize(
    ("membership", "files", "quota"),
    [
        # cgroup v2: the least limit along the path, the path's own or an ancestor's
        ("0::/ci/job\n", {"ci/job/cpu.max": "150000 100000\n"}, 1.5),
        ("0::/ci/job\n", {"ci/job/cpu.max": "max 100000\n", "ci/cpu.max": "50000 100000"}, 0.5),
        ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),  # a container's own root
        ("0::/ci/job\n", {"ci/job/cpu.max": "max 100000\n"}, None),  # unlimited
        # cgroup v1: the cpu controller's hierarchy
        (
            "5:cpu,cpuacct:/docker/abc\n2:memory:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            3.0,
        ),
        (
            "5:cpu,cpuacct:/\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            None,
        ),
        # no limit can be read: none assumed
        ("0::/x\n", {"x/cpu.max": "lots 100000\n"}, None),
        ("0::/x\n", {"x/cpu.max": "100000 0\n"}, None),
        ("garbage\n", {}, None),
        ("0::/x\n", {}, None),
    ],
)
def test_the_cgroup_cpu_quota_is_read_as_the_kernel_applies_it(tmp_path, membership, files, quota):
    assert cgroup_cpu_quota(*_cgroups(tmp_path, membership, files)) == quota


def test_no_cgroup_file_system_means_no_quota(tmp_path):
    assert cgroup_cpu_quota(str(tmp_path / "absent"), str(tmp_path / "no-such-file")) is None


@pytest.mark.parametrize(("quota", "expected"), [(None, 4), (1.5, 2), (0.5, 1), (16.0, 4)])
def test_usable_cpus_is_the_affinity_within_the_quota(monkeypatch, quota, expected):
    monkeypatch.setattr(_cpus.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(_cpus, "cgroup_cpu_quota", lambda: quota)
    _cpus.usable_cpus.cache_clear()
    try:
        assert _cpus.usable_cpus() == expected
    finally:
        _cpus.usable_cpus.cache_clear()
