"""``bsr-team-cache warm``: prefetch modules into the local store and the team registry."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options
from bsr_team_cache.team.fetch import TIERS


@click.command("warm")
@team_options(content=True)
@click.option("--deps", multiple=True, help="registry/owner/module[:ref] (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.argument("more_deps", nargs=-1)
def command(
    options: TeamOptions, deps: tuple[str, ...], as_json: bool, more_deps: tuple[str, ...]
) -> None:
    """Fetch modules (and their deps) ahead of time, e.g. before peak hours."""
    refs = [*deps, *more_deps]
    if not refs:
        raise click.UsageError("give the modules to warm with --deps REF [REF ...]")
    report = options.open_cache().warm(refs)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    parts = ", ".join(f"{report.count(t)} {t}" for t in TIERS)
    click.echo(f"warmed {len(report.modules)} modules ({parts})")
