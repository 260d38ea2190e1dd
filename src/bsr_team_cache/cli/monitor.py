"""``bsr-team-cache monitor``: the team cache's metrics from every member's events."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bsr_team_cache.cli.options import TeamOptions, team_options, view_options


@click.command("monitor")
@team_options
@view_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a self-contained HTML dashboard (plots; opens without network) here.",
)
def command(
    options: TeamOptions,
    as_json: bool,
    only_member: str | None,
    since: str | None,
    html_file: Path | None,
    local_only: bool,
) -> None:
    """Hit rate, build-time improvement, bandwidth saved, shared-cache and bundle use, and
    their trends, from the events every member shipped with sync (definitions:
    docs/metrics.md)."""
    from bsr_team_cache.usage.events import parse_since

    start = parse_since(since) if since else None
    metrics = options.open_cache().metrics(member=only_member, since=start, merge=not local_only)
    for warning in metrics.warnings:
        click.echo(f"warning: {warning}", err=True)
    if html_file is not None:
        from bsr_team_cache._fs import atomic_write
        from bsr_team_cache.usage.dashboard import render_dashboard

        atomic_write(html_file, render_dashboard(metrics.report).encode())
        if not as_json:
            click.echo(f"wrote {html_file}")
    if as_json:
        click.echo(json.dumps(metrics.to_json(), indent=2, ensure_ascii=False))
        return
    for line in metrics.dashboard_lines():
        click.echo(line)
