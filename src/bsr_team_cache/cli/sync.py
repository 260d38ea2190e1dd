"""``bsr-team-cache sync``: push local-only modules, pull the team's hot set, refresh labels,
evict above the team's size limit."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.command("sync")
@team_options(member=True, content=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.option(
    "--if-due",
    is_flag=True,
    help="Only if the team's sync_frequency_minutes have passed since the last sync (for cron"
    " or every CI job).",
)
def command(options: TeamOptions, as_json: bool, if_due: bool) -> None:
    """Synchronize this machine's store with the team registry."""
    cache = options.open_cache()
    if if_due and not cache.sync_due():
        if not as_json:
            click.echo("sync not due yet (see the team's sync_frequency_minutes)")
        else:
            click.echo(json.dumps({"skipped": True}))
        return
    report = cache.sync()
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
        return
    click.echo(
        f"pushed {len(report.pushed)}, pulled {len(report.pulled)} (hot set), labels refreshed"
        f" {report.labels_refreshed}, evicted {len(report.evicted)}; usage events: shipped"
        f" {report.events_shipped}, merged {report.events_merged} from the team; audit records:"
        f" shipped {report.audit_shipped}, merged {report.audit_merged}"
    )
    if report.bundle_created:
        click.echo(f"created bundle {report.bundle_created} (modules this member fetches together)")
