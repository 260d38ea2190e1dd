"""``bsr-team-cache recommend``: what the team should change, from every member's events."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options, view_options


@click.command("recommend")
@team_options
@view_options
@click.option("--json", "as_json", is_flag=True, help="Print the recommendations as JSON.")
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="IANA time zone of the peak hours and the warming time (e.g. Europe/Berlin).",
)
def command(
    options: TeamOptions,
    as_json: bool,
    only_member: str | None,
    since: str | None,
    timezone: str,
    local_only: bool,
) -> None:
    """[HIGH]/[MEDIUM]/[LOW] recommendations (preload, bundles, cache size, warming, members
    who do not sync), each with the improvement the team's recorded requests show."""
    from bsr_team_cache.usage.analysis import parse_timezone
    from bsr_team_cache.usage.events import parse_since
    from bsr_team_cache.usage.recommend import format_advice

    parse_timezone(timezone)  # a bad zone is a usage error before any work
    start = parse_since(since) if since else None
    advice = options.open_cache().advise(
        member=only_member,
        since=start,
        timezone=timezone,
        merge=not local_only,
    )
    for warning in advice.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(advice.to_json(), indent=2, ensure_ascii=False))
        return
    for line in format_advice(advice):
        click.echo(line)
