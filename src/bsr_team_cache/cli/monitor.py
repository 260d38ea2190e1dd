"""``bsr-team-cache monitor``: the team cache's metrics as this member sees them."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.command("monitor")
@team_options(member=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
def command(options: TeamOptions, as_json: bool) -> None:
    """Hit rate, bandwidth saved, shared-cache and bundle use (last 30 days)."""
    metrics = options.open_cache().metrics()
    for warning in metrics.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(metrics.to_json(), indent=2))
        return
    for line in metrics.dashboard_lines():
        click.echo(line)
