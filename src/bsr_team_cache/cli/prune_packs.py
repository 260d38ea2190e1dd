"""``bsr-team-cache prune-packs``: delete the team's lock packs made before a cut-off (admins)."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.command("prune-packs")
@team_options(member=True)
@click.option(
    "--older-than",
    default="30d",
    show_default=True,
    help="Delete packs made before this: an age like 30d or 12h, a date, or an RFC 3339 time.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
def command(options: TeamOptions, older_than: str, dry_run: bool, as_json: bool) -> None:
    """Delete lock packs made before --older-than from the team registry (team admins: the
    registry grants delete to them). A lock still in use gets a new pack from the next machine
    that fetches it from the team registry."""
    from bsr_team_cache.audit.log import record
    from bsr_team_cache.errors import RegistryError
    from bsr_team_cache.housekeeping.packs import prune_packs
    from bsr_team_cache.usage.events import parse_since

    made_before = parse_since(older_than, option="--older-than")
    team = options.team
    registry = options.open_registry()
    report = prune_packs(
        registry, team, made_before, namespace=options.settings.namespace, dry_run=dry_run
    )
    if not dry_run:  # what was deleted is recorded, also when a refusal stopped the prune
        record(
            options.store_dir,
            team=team,
            member=options.settings.member,
            operation="prune-packs",
            refs=[f"{report.repository}:{d}" for d in report.deleted],
            result=f"error: {report.error}" if report.error else "ok",
            warnings=report.warnings,
        )
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps({**report.__dict__, "dry_run": dry_run}, indent=2))
    else:
        verb = "would delete" if dry_run else "deleted"
        for name in report.deleted:
            click.echo(f"{verb} {report.repository}:{name}")
        freed = "" if report.freed_bytes is None else f", {report.freed_bytes:,} bytes freed"
        click.echo(f"{verb} {len(report.deleted)} packs, kept {report.kept}{freed}")
    if report.error:
        raise RegistryError(report.error)
