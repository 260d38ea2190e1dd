"""``bsr-team-cache share``: share a bundle with other teams."""

from __future__ import annotations

import click

from bsr_team_cache.cli.options import TeamOptions, team_options
from bsr_team_cache.team.cache import PERMISSIONS


@click.command("share")
@team_options(member=True, content=True)
@click.option("--name", required=True, help="The bundle to share.")
@click.option("--with", "targets", multiple=True, required=True, help="Target team (repeatable).")
@click.option(
    "--permissions",
    type=click.Choice(PERMISSIONS),
    default="read-only",
    show_default=True,
    help="read-only: other teams may pull it; only this team may replace it.",
)
def command(options: TeamOptions, name: str, targets: tuple[str, ...], permissions: str) -> None:
    """Publish a bundle at shared/organization/bundles/NAME for the target teams."""
    ref = options.open_cache().share_bundle(name, list(targets), permissions)
    click.echo(f"shared {ref} with {', '.join(targets)} ({permissions})")
