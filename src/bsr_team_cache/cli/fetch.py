"""``bsr-team-cache fetch``: get a project's deps from the team registry or the BSR."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bufcache.v3 import buf_cache_dir
from bsr_team_cache.oci import open_registry
from bsr_team_cache.team.fetch import BSR, TEAM, fetch


@click.command("fetch")
@click.argument("project_dir", type=click.Path(path_type=Path), default=".")
@click.option("--team", required=True, envvar="BSR_TEAM_CACHE_TEAM", help="Team name.")
@click.option(
    "--registry",
    required=True,
    envvar="BSR_TEAM_CACHE_REGISTRY",
    help="Team registry URL: oci-layout:PATH.",
)
@click.option(
    "--buf-cache-dir",
    "buf_cache_dir_opt",
    type=click.Path(path_type=Path),
    help="buf's cache to fill (default: as buf chooses: $BUF_CACHE_DIR, ...).",
)
@click.option("--no-buf-cache", is_flag=True, help="Do not write buf's cache.")
@click.option(
    "--export", type=click.Path(path_type=Path), help="Also write an include tree for protoc -I."
)
@click.option(
    "--update-lock", is_flag=True, help="Resolve buf.yaml's deps and write a v2 buf.lock."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def command(
    project_dir: Path,
    team: str,
    registry: str,
    buf_cache_dir_opt: Path | None,
    no_buf_cache: bool,
    export: Path | None,
    update_lock: bool,
    as_json: bool,
) -> None:
    """Fetch PROJECT_DIR's dependencies: team registry first, then the BSR (published back)."""
    cache = None if no_buf_cache else (buf_cache_dir_opt or buf_cache_dir(dict(os.environ)))
    with BSRModuleClient() as bsr:
        report = fetch(
            project_dir,
            team=team,
            registry=open_registry(registry),
            bsr=bsr,
            buf_cache=cache,
            export=export,
            update_lock=update_lock,
        )
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    for m in report.modules:
        note = " (published)" if m.published else ""
        click.echo(f"{m.tier:<5} {m.name}:{m.commit}  {m.bytes} B{note}")
    click.echo(
        f"{len(report.modules)} modules: {report.count(TEAM)} from the team registry,"
        f" {report.count(BSR)} from the BSR, {report.seconds * 1000:.0f} ms"
    )
