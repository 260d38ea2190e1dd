"""``bsr-team-cache demo``: run the self-contained demo (no network, no registry server)."""

from __future__ import annotations

from pathlib import Path

import click

from bsr_team_cache.demo import run_demo
from bsr_team_cache.errors import BSRTeamCacheError


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    help="Keep the demo's files here instead of a temporary directory.",
)
def command(workdir: Path | None) -> None:
    """Start a dev BSR with sample modules and fetch them as a team member would."""
    report = run_demo(workdir, say=click.echo)
    if report.buf_agrees is False:
        raise BSRTeamCacheError("the real buf CLI computed different digests")
