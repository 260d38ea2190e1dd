"""`bsr-team-cache fetch` runs without click: its fast parser reads argv as click would (both are
built from fetch.PARAMS), leaves everything else to click (help, mistakes: click's own
messages), and a warm fetch process loads none of the heavy modules."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from bsr_team_cache.cli import fetch, main
from bsr_team_cache.cli._fastpath import parse

DEFAULTS = {
    "project_dir": Path("."),
    "store_dir": None,
    "team": None,
    "registry": None,
    "insecure": False,
    "timeout": None,
    "store_max_mb": None,
    "max_module_mb": None,
    "buf_cache_dir_opt": None,
    "no_buf_cache": False,
    "export": None,
    "update_lock": False,
    "label_ttl": 24.0,
    "bundle": None,
    "no_bundles": False,
    "no_packs": False,
    "as_json": False,
    "quiet": False,
}

# argv -> what differs from DEFAULTS.
ACCEPTED = [
    ([], {}),
    (["proj"], {"project_dir": Path("proj")}),
    (["-q", "proj"], {"project_dir": Path("proj"), "quiet": True}),
    (["--quiet", "--json"], {"quiet": True, "as_json": True}),
    (["--team", "t", "--registry=oci-layout:/r"], {"team": "t", "registry": "oci-layout:/r"}),
    (["--team", "-q"], {"team": "-q"}),  # a value is taken whatever it looks like
    (["--team=a=b"], {"team": "a=b"}),
    (["--team="], {"team": ""}),
    (["--team", "a", "--team", "b"], {"team": "b"}),  # the last one counts
    (
        ["--insecure", "--no-buf-cache", "--no-bundles", "--no-packs"],
        {"insecure": True, "no_buf_cache": True, "no_bundles": True, "no_packs": True},
    ),
    (
        ["--timeout", "30", "--store-max-mb=1", "--max-module-mb", " 64 "],
        {"timeout": 30, "store_max_mb": 1, "max_module_mb": 64},
    ),
    (["--label-ttl", "0"], {"label_ttl": 0.0}),
    (["--label-ttl=1.5"], {"label_ttl": 1.5}),
    (["--label-ttl", "1e1"], {"label_ttl": 10.0}),
    (
        ["--store-dir", "s", "--buf-cache-dir", "c", "--export", "e"],
        {"store_dir": Path("s"), "buf_cache_dir_opt": Path("c"), "export": Path("e")},
    ),
    (
        ["--update-lock", "--bundle", "shop", "dir"],
        {"update_lock": True, "bundle": "shop", "project_dir": Path("dir")},
    ),
    ([""], {"project_dir": Path("")}),
]

# What the fast parser leaves to click: help, mistakes, and forms it does not read itself.
LEFT_TO_CLICK = [
    ["--help"],
    ["-h"],
    ["--version"],
    ["--bogus"],
    ["--tim", "1"],  # click takes no abbreviations either
    ["--timeout", "0"],
    ["--timeout", "x"],
    ["--timeout", "1.0"],
    ["--store-max-mb", "-3"],
    ["--label-ttl", "-1"],
    ["--label-ttl", "nan"],
    ["--label-ttl", "soon"],
    ["a", "b"],
    ["--json=1"],
    ["-q=1"],
    ["--team"],
    ["-qq"],
    ["--", "dir"],
    ["-"],
]


def _click_params(argv: list[str]) -> dict[str, object]:
    with fetch.command.make_context("fetch", list(argv)) as ctx:
        return dict(ctx.params)


@pytest.mark.parametrize(("argv", "changed"), ACCEPTED, ids=[" ".join(a) for a, _ in ACCEPTED])
def test_the_fast_parser_reads_argv_as_click_does(
    argv: list[str], changed: dict[str, object]
) -> None:
    expected = {**DEFAULTS, **changed}
    assert parse(fetch.PARAMS, argv) == expected
    assert _click_params(argv) == expected


@pytest.mark.parametrize("argv", LEFT_TO_CLICK, ids=" ".join)
def test_the_fast_parser_leaves_the_rest_to_click(argv: list[str]) -> None:
    assert parse(fetch.PARAMS, argv) is None


def test_every_option_of_the_click_command_is_in_the_table() -> None:
    declared = [(p.name, tuple(p.flags)) for p in fetch.PARAMS]
    built = [
        (p.name, tuple(p.opts + p.secondary_opts) if isinstance(p, click.Option) else ())
        for p in fetch.command.params
    ]
    assert built == declared


USAGE = (
    "Usage: bsr-team-cache fetch [OPTIONS] [PROJECT_DIR]\n"
    "Try 'bsr-team-cache fetch --help' for help.\n\n"
)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], USAGE + "Error: No such option '--bogus'.\n"),
        (
            ["--timeout", "0"],
            USAGE + "Error: Invalid value for '--timeout': 0 is not in the range x>=1.\n",
        ),
        (
            ["--label-ttl", "-1"],
            USAGE + "Error: Invalid value for '--label-ttl': -1.0 is not in the range x>=0.\n",
        ),
        (["a", "b"], USAGE + "Error: Got unexpected extra argument (b)\n"),
        (["--json=1"], "Error: Option '--json' does not take a value.\n"),
    ],
)
def test_a_mistake_gets_clicks_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", *argv]) == 2
    assert capsys.readouterr() == ("", message)


def test_help_is_clicks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "Usage: bsr-team-cache fetch [OPTIONS] [PROJECT_DIR]\n\n  Fetch PROJECT_DIR's"
    )
    flags = re.findall(r"^  (-q, )?(--[a-z-]+)", out, re.MULTILINE)
    assert [f for _, f in flags] == [p.flags[-1] for p in fetch.PARAMS if p.flags] + ["--help"]


def test_an_error_of_the_command_is_one_line_with_its_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Through the fast path (no click): the team is missing.
    assert main(["fetch", str(tmp_path), "--registry", f"oci-layout:{tmp_path / 'r'}"]) == 2
    assert capsys.readouterr() == (
        "",
        "bsr-team-cache: error: no team given: pass --team, set BSR_TEAM_CACHE_TEAM, or put"
        ' team = "..." in the config file\n',
    )


# Modules a warm fetch has no use for: the network stack, the BSR's client and protobuf
# messages, the team tier's, YAML (buf.lock in buf's own form is read without it), click,
# archives, subprocesses.
NOT_LOADED_BY_A_WARM_FETCH = [
    # what only the BSR tier, the team registry tier or the team's configuration need
    "bsr_team_cache.bsr.client",
    "bsr_team_cache.team.bundles",
    "bsr_team_cache.team.config",
    "bsr_team_cache.team.packs",
    "concurrent.futures",
    "asyncio",
    "click",
    "cryptography",
    "email",
    "google.protobuf",
    "http.client",
    "httpx",
    "socket",
    "ssl",
    "subprocess",
    "tarfile",
    "tomllib",
    "urllib.request",
    "uuid",
    "yaml",
]


def _imported(stderr: str) -> set[str]:
    """The modules a ``python -X importtime`` process imported."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and not line.endswith("| package")
    }


@pytest.mark.slow
def test_a_warm_fetch_process_loads_none_of_the_heavy_modules(bsr_env, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "buf.yaml").write_text(f"version: v2\ndeps:\n  - {bsr_env.host}/acme/orders\n")
    env = {
        **os.environ,
        "BSR_TEAM_CACHE_REGISTRY": f"oci-layout:{tmp_path / 'registry'}",
        "BSR_TEAM_CACHE_TEAM": "platform-team",
        "BSR_TEAM_CACHE_DIR": str(tmp_path / "store"),
        "BUF_CACHE_DIR": str(tmp_path / "buf-cache"),
    }
    fetch_argv = [sys.executable, "-m", "bsr_team_cache", "fetch", str(project)]
    # The first fetch writes buf.lock; the second reads it (and keeps its parse): then warm.
    for extra in (["--update-lock"], []):
        done = subprocess.run(
            [*fetch_argv, *extra, "-q"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr

    warm = subprocess.run(
        [sys.executable, "-X", "importtime", *fetch_argv[1:], "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert warm.returncode == 0, warm.stderr
    report = json.loads(warm.stdout)
    # acme/orders and its closure: common, money, pets, googleapis.
    assert report["hits"] == {"local": 5, "team": 0, "bsr": 0}
    imported = _imported(warm.stderr)
    assert "bsr_team_cache.team.fetch" in imported  # the probe sees the fetch's imports
    assert sorted(m for m in NOT_LOADED_BY_A_WARM_FETCH if m in imported) == []


def test_a_fetch_process_exits_with_its_code_and_every_byte_it_printed() -> None:
    """The console script's fetch ends with os._exit (no teardown): the standard streams are
    flushed first, whatever their size, and the command's exit code is the process's."""
    probe = (
        "import sys\n"
        "from bsr_team_cache.cli._fastpath import exit_now\n"
        "sys.stdout.write('o' * 1_000_000)\n"
        "sys.stderr.write('e' * 200_000)\n"
        "exit_now(3)\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == b"o" * 1_000_000
    assert done.stderr == b"e" * 200_000
