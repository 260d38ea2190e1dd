"""``bsr-team-cache demo``: run the self-contained demo (no network, no registry server)."""

from __future__ import annotations

from pathlib import Path

import click

from bsr_team_cache.demo import run_demo


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    help="Keep the demo's files here instead of a temporary directory.",
)
def command(workdir: Path | None) -> None:
    """Two members share BSR modules through the embedded team registry; B builds offline."""
    run_demo(workdir, say=click.echo)
