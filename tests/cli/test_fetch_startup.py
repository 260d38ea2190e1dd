"""`bsr-team-cache fetch` starts fast: importing the command, parsing its argv, or answering
--help, loads none of the fetch machinery, which is imported when the command runs; only --help
(and a mistake in argv) loads click."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Each was imported by `import bsr_team_cache.cli.fetch` before (the network stack never was,
# and must not start to be).
LOADED_WHEN_FETCH_RUNS = [
    "yaml",
    "sqlite3",
    "tarfile",
    "gzip",
    "tomllib",
    "subprocess",
    "concurrent.futures",
    "httpx",
    "google.protobuf",
    "bsr_team_cache.team.fetch",
    "bsr_team_cache.store",
    "bsr_team_cache.domain",
]


@pytest.mark.parametrize(
    ("start", "not_loaded"),
    [
        ("import bsr_team_cache.cli.fetch", [*LOADED_WHEN_FETCH_RUNS, "click"]),
        (  # what `bsr-team-cache fetch ...` does before the command runs: no click either
            "from bsr_team_cache.cli import fetch\n"
            "from bsr_team_cache.cli._fastpath import parse\n"
            "assert parse(fetch.PARAMS, ['-q', '--team', 't', '.']) is not None",
            [*LOADED_WHEN_FETCH_RUNS, "click"],
        ),
        (  # --help is click's
            "from bsr_team_cache.cli import main\nassert main(['fetch', '--help']) == 0",
            LOADED_WHEN_FETCH_RUNS,
        ),
    ],
    ids=["import", "parse", "help"],
)
def test_fetch_start_up_loads_no_fetch_machinery(start: str, not_loaded: list[str]) -> None:
    probe = (  # what the start-up itself imports, whatever the interpreter loaded before
        f"import sys\nbefore = set(sys.modules)\n{start}\nimport json\n"
        f"print(json.dumps([m for m in {not_loaded!r}"
        " if m in sys.modules and m not in before]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
