"""``bsr-team-cache audit``: this machine's audit log (every fetch, publish, warm, bundle,
share, setup, sync, clear and eviction), filtered."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.command("audit")
@team_options
@click.option("--member", "only_member", help="Only this member's records.")
@click.option("--op", "operation", help="Only this operation (fetch, publish, warm, ...).")
@click.option("--since", help="From this time: RFC 3339, a date, or an age like 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
@click.option(
    "--local-only",
    is_flag=True,
    help="Do not merge the other machines' records from the team registry first.",
)
def command(
    options: TeamOptions,
    only_member: str | None,
    operation: str | None,
    since: str | None,
    as_json: bool,
    local_only: bool,
) -> None:
    """Who did what to the team's cache, on which module commits and digests, with what
    result: this machine's records and the ones other machines shipped with sync (the record
    format: docs/security.md). Without a team (--team, BSR_TEAM_CACHE_TEAM): this machine's
    records of every team."""
    from bsr_team_cache.audit.log import OPERATIONS, AuditQuery, read
    from bsr_team_cache.errors import UsageError
    from bsr_team_cache.usage.events import parse_since

    if operation is not None and operation not in OPERATIONS:
        raise UsageError(f"--op {operation!r}: expected one of {', '.join(OPERATIONS)}")
    team = options.settings.team
    if team and not local_only:
        warnings: list[str] = []
        options.open_cache().sync_audit(warnings, ship=False)
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
    query = read(
        options.store_dir,
        AuditQuery(
            since=parse_since(since) if since else None,
            team=team or None,
            member=only_member,
            operation=operation,
        ),
    )
    if query.skipped:
        click.echo(f"warning: {query.skipped} damaged audit lines skipped", err=True)
    if as_json:
        click.echo(json.dumps(query.records, indent=2, ensure_ascii=False))
        return
    for r in query.records:
        refs = ", ".join(r["refs"][:5]) + (
            f" (+{len(r['refs']) - 5})" if len(r["refs"]) > 5 else ""
        )
        click.echo(
            f"{r['time']}  {r['team']}  {r['member']}@{r['host']}  {r['operation']}"
            f"  {r['result']}  {refs}"
        )
