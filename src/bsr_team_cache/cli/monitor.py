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
    click.echo(f"Cache Performance for team {metrics.team}:")
    click.echo(f"  Hit Rate: {metrics.cache_hit_rate:.1%}")
    click.echo(f"  Bandwidth Saved: {metrics.bandwidth_saved_mb:,.1f}MB")
    click.echo(f"  Shared Cache Efficiency: {metrics.shared_cache_efficiency:.1%}")
    click.echo(f"  Bundle Usage Rate: {metrics.bundle_usage_rate:.1%}")
    tiers = ", ".join(f"{n} {t}" for t, n in sorted(metrics.hits.items()))
    click.echo(
        f"  Fetches: {metrics.fetches} ({metrics.modules_fetched} modules"
        + (f": {tiers})" if tiers else ")")
    )
    click.echo(f"  Local store: {metrics.local_store_mb:,.1f}MB")
    click.echo(
        f"  Team: {metrics.members_reporting} members reporting,"
        f" {metrics.team_modules_fetched} module fetches"
    )
