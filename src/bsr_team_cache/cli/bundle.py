"""``bsr-team-cache bundle``: create a dependency bundle, or pull one into the local store."""

from __future__ import annotations

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.command("bundle")
@team_options(member=True, content=True)
@click.option("--name", required=True, help="Bundle name (lowercase, digits, . _ -).")
@click.option("--deps", multiple=True, help="registry/owner/module[:ref] (repeatable).")
@click.option("--description", default="", help="What the bundle is for.")
@click.option("--pull", is_flag=True, help="Pull the bundle into the local store instead.")
@click.option("--from-team", help="With --pull: the team that shared the bundle.")
@click.argument("more_deps", nargs=-1)
def command(
    options: TeamOptions,
    name: str,
    deps: tuple[str, ...],
    description: str,
    pull: bool,
    from_team: str | None,
    more_deps: tuple[str, ...],
) -> None:
    """Bundle modules (and their deps) under one artifact, pulled in one go."""
    cache = options.open_cache()
    if pull:
        bundle, artifacts = cache.pull_bundle(name, owner_team=from_team)
        size = sum(a.size for a in artifacts)
        click.echo(
            f"pulled {bundle.name}:{bundle.version} ({len(artifacts)} modules,"
            f" {size / 1024:.0f} KiB) into {options.store_dir}"
        )
        return
    refs = [*deps, *more_deps]
    if not refs:
        raise click.UsageError("give the modules to bundle with --deps REF [REF ...]")
    ref = cache.create_bundle(refs, name, description)
    click.echo(f"bundle {ref}")
