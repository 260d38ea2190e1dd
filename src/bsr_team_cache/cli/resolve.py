"""``bsr-team-cache resolve REF...``: resolve module refs to commits on their BSR."""

from __future__ import annotations

import json

import click

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.domain.moduleref import parse_module_ref


@click.command("resolve")
@click.argument("refs", nargs=-1, required=True)
@click.option("--graph", is_flag=True, help="Also list every transitive dependency.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def command(refs: tuple[str, ...], graph: bool, as_json: bool) -> None:
    """Resolve REFS (registry/owner/module[:label-or-commit]) to commits and b5 digests."""
    parsed = [parse_module_ref(r) for r in refs]
    with BSRModuleClient() as client:
        commits = list(client.graph(parsed).commits.values()) if graph else client.resolve(parsed)
    rows = [
        {"name": str(c.module), "commit": c.commit_id, "digest": str(c.digest)} for c in commits
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}:{row['commit']}  {row['digest']}")
