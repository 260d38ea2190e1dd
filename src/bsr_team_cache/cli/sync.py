"""``bsr-team-cache sync``: push local-only modules, pull the team's hot set, refresh labels,
evict above the team's size limit."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.command("sync")
@team_options
@click.option("--json", "as_json", is_flag=True)
def command(options: TeamOptions, as_json: bool) -> None:
    """Synchronize this machine's store with the team registry."""
    report = options.open_cache().sync()
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
        return
    click.echo(
        f"pushed {len(report.pushed)}, pulled {len(report.pulled)} (hot set), labels refreshed"
        f" {report.labels_refreshed}, evicted {len(report.evicted)}"
    )
