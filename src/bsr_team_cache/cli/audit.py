"""``bsr-team-cache audit``: this machine's audit log (every fetch, publish, warm, bundle,
share, setup, sync, clear and eviction), filtered."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.command("audit")
@team_options(registry=False)
@click.option("--team", "only_team", help="Only this team's records [default: every team's].")
@click.option("--member", "only_member", help="Only this member's records.")
@click.option("--op", "operation", help="Only this operation (fetch, publish, warm, ...).")
@click.option("--since", help="From this time: RFC 3339, a date, or an age like 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
def command(
    options: TeamOptions,
    only_team: str | None,
    only_member: str | None,
    operation: str | None,
    since: str | None,
    as_json: bool,
) -> None:
    """Who did what to the cache on this machine, on which module commits and digests, with
    what result (the record format: docs/security.md)."""
    from bsr_team_cache.audit.log import OPERATIONS, AuditQuery, read
    from bsr_team_cache.errors import UsageError
    from bsr_team_cache.usage.events import parse_since

    if operation is not None and operation not in OPERATIONS:
        raise UsageError(f"--op {operation!r}: expected one of {', '.join(OPERATIONS)}")
    query = read(
        options.store_dir,
        AuditQuery(
            since=parse_since(since) if since else None,
            team=only_team,
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
