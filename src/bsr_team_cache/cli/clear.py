"""``bsr-team-cache clear``: empty this machine's local store (the team registry is untouched)."""

from __future__ import annotations

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.command("clear")
@team_options(registry=False)
def command(options: TeamOptions) -> None:
    """Remove every module and label from the local store."""
    from bsr_team_cache.audit.log import record

    with options.open_store() as store:
        count = store.clear()
    record(
        options.store_dir,
        team=options.settings.team or "",
        member=options.settings.member,
        operation="clear",
        refs=[f"modules:{count}"],
    )
    click.echo(f"removed {count} modules from {options.store_dir}")
