"""``bsr-team-cache usage export|import``: the event log as JSON lines (docs/usage-events.md),
to move history to another machine, to analyse it elsewhere, or to feed a test."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.group("usage")
def command() -> None:
    """Export or import usage events (JSON lines)."""


@command.command("export")
@team_options(registry=False)
@click.option("--team", "only_team", help="Only this team's events [default: every team's].")
@click.option("--member", "only_member", help="Only this member's events.")
@click.option("--since", help="From this time: RFC 3339, a date, or an age like 7d.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (atomically) instead of standard output.",
)
def export_command(
    options: TeamOptions,
    only_team: str | None,
    only_member: str | None,
    since: str | None,
    output: Path | None,
) -> None:
    """Write this machine's events (its own and the team's merged ones) as JSON lines."""
    import io

    from bsr_team_cache._fs import atomic_write
    from bsr_team_cache.usage.events import parse_since
    from bsr_team_cache.usage.log import open_event_log, write_jsonl

    start = parse_since(since) if since else None
    with open_event_log(options.store_dir) as log:
        events = log.events(team=only_team, member=only_member, since=start)
        if output is None:
            n = write_jsonl(events, sys.stdout)
        else:
            buffer = io.StringIO()
            n = write_jsonl(events, buffer)
            atomic_write(output, buffer.getvalue().encode())
    click.echo(f"exported {n} events", err=True)


@command.command("import")
@team_options(registry=False)
@click.option("--team", help="Team of the lines that name none [BSR_TEAM_CACHE_TEAM].")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_command(options: TeamOptions, file: Path) -> None:
    """Add the events of a JSON-lines FILE to this machine's log (all or none: a bad line is
    an error naming it). Events the log has already are skipped; the next sync ships the new
    ones to the team."""
    from bsr_team_cache.errors import ConfigError
    from bsr_team_cache.usage.log import open_event_log, read_jsonl

    events = read_jsonl(file)
    default_team = options.settings.team  # --team, else the environment or config file
    if any(not e.team for e in events):
        if not default_team:
            raise ConfigError(
                file, "some events name no team", hint="pass --team or set BSR_TEAM_CACHE_TEAM"
            )
        events = [e if e.team else e._replace(team=default_team) for e in events]
    with open_event_log(options.store_dir) as log:
        added = log.add(events)
    click.echo(f"imported {added} events ({len(events) - added} already there)")
