"""``bsr-team-cache fetch``: get a project's deps from the local store, the team registry or
the BSR, fill buf's cache, optionally export them for protoc."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bsr_team_cache.cli.options import TeamOptions, team_options
from bsr_team_cache.errors import StoreError
from bsr_team_cache.team import DEFAULT_LABEL_TTL

# The fetch machinery (store, registry, BSR client, YAML) is imported when the command runs, so
# that `fetch --help` and a mistyped option answer at once.
if TYPE_CHECKING:
    from bsr_team_cache.team.fetch import FetchReport, ModuleResult


def _summary(report: FetchReport) -> str:
    from bsr_team_cache.team.fetch import TIERS

    parts = [f"{report.count(tier)} {tier}" for tier in TIERS]
    total = report.bytes()
    return (
        f"{len(report.modules)} modules ({', '.join(parts)}), {total / 1024:.0f} KiB,"
        f" {report.seconds * 1000:.0f} ms"
    )


class _Progress:
    """A one-line progress bar on stderr (used only when stderr is a terminal)."""

    def __init__(self) -> None:
        self.width = 0

    def __call__(self, result: ModuleResult, done: int, total: int) -> None:
        filled = int(20 * done / max(1, total))
        line = (
            f"[{'#' * filled}{' ' * (20 - filled)}] {done}/{total} {result.tier:<5} {result.name}"
        )
        self.width = max(self.width, len(line))
        click.echo("\r" + line.ljust(self.width), nl=False, err=True)

    def close(self) -> None:
        if self.width:
            click.echo("\r" + " " * self.width + "\r", nl=False, err=True)


@click.command("fetch")
@click.argument("project_dir", type=click.Path(path_type=Path), default=".")
@team_options(content=True)
@click.option(
    "--buf-cache-dir",
    "buf_cache_dir_opt",
    type=click.Path(path_type=Path),
    help="buf's cache to fill (default: as buf chooses: $BUF_CACHE_DIR, ...).",
)
@click.option("--no-buf-cache", is_flag=True, help="Do not write buf's cache.")
@click.option(
    "--export",
    type=click.Path(path_type=Path),
    help="Also write the deps' .proto files, for protoc -I, into this directory (never"
    " overwriting files it did not write).",
)
@click.option(
    "--update-lock",
    is_flag=True,
    help="Resolve buf.yaml's deps and write buf.lock (of buf.yaml's version, as buf does).",
)
@click.option(
    "--label-ttl",
    type=click.FloatRange(min=0),
    default=DEFAULT_LABEL_TTL / 3600,
    show_default=True,
    help="Hours a label index entry may be used for when the BSR is unreachable.",
)
@click.option(
    "--bundle",
    help="Pull this team bundle first (saves asking the team configuration which bundle fits).",
)
@click.option("--no-bundles", is_flag=True, help="Never use bundles; pull modules one by one.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("-q", "--quiet", is_flag=True, help="Print only warnings and errors.")
def command(
    project_dir: Path,
    options: TeamOptions,
    buf_cache_dir_opt: Path | None,
    no_buf_cache: bool,
    export: Path | None,
    update_lock: bool,
    label_ttl: float,
    bundle: str | None,
    no_bundles: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Fetch PROJECT_DIR's dependencies: local store, team registry, then the BSR (published
    back to the team registry). Fills buf's cache so that `buf build` needs no network."""
    from bsr_team_cache.bsr.client import BSRModuleClient
    from bsr_team_cache.bufcache.v3 import buf_cache_dir, check_buf_layout
    from bsr_team_cache.team.fetch import FetchReport, fetch

    cache = None if no_buf_cache else (buf_cache_dir_opt or buf_cache_dir(dict(os.environ)))
    if cache is not None:
        check_buf_layout(memo=options.store_dir / "buf-version.json")
    progress = _Progress() if not (as_json or quiet) and sys.stderr.isatty() else None
    report = FetchReport()
    team, registry = options.team, options.open_registry()
    try:
        local = options.open_store()
    except StoreError as exc:  # the store is an optimisation: fetch without it
        report.warnings.append(f"{exc}; going on without the local store")
        local = None
    with BSRModuleClient() as bsr, contextlib.closing(local) if local else contextlib.nullcontext():
        try:
            fetch(
                project_dir,
                team=team,
                registry=registry,
                namespace=options.settings.namespace,
                bsr=bsr,
                store=local,
                buf_cache=cache,
                export=export,
                update_lock=update_lock,
                label_ttl=label_ttl * 3600,
                on_module=progress,
                report=report,
                use_bundles=not no_bundles,
                bundle=bundle,
                timeout=options.timeout,
                member=options.settings.member,
            )
        finally:
            if progress is not None:
                progress.close()
            for warning in report.warnings:  # also when the fetch failed: they explain why
                click.echo(f"warning: {warning}", err=True)
    if as_json:
        import json

        click.echo(json.dumps(report.to_json(), indent=2))
        return
    if quiet:
        return
    for m in report.modules:
        note = " (published)" if m.published else ""
        click.echo(f"{m.tier:<5} {m.name}:{m.commit}  {m.bytes} B{note}")
    click.echo(_summary(report))
