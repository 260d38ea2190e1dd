"""``bsr-team-cache setup``: create or update the team configuration in the team registry."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options
from bsr_team_cache.oci.url import redact
from bsr_team_cache.team.config import STRATEGIES


@click.command("setup")
@team_options(member=True)
@click.option("--members", multiple=True, help="Members to add (repeat, or several after one).")
@click.option(
    "--strategy",
    "cache_strategy",
    type=click.Choice(sorted(STRATEGIES)),
    help="aggressive / balanced / conservative: 2000 / 1000 / 500 MB per member, preload the"
    " top 20 / 10 / 5 modules, sync every 30 / 60 / 120 minutes.",
)
@click.option("--max-cache-size-mb", type=int, help="Per-member local store limit.")
@click.option("--sync-frequency-minutes", type=int, help="How often members' sync --if-due runs.")
@click.option(
    "--shared-cache/--no-shared-cache",
    default=None,
    help="Publish BSR downloads to the team registry (on by default).",
)
@click.option(
    "--bundle-auto-creation/--no-bundle-auto-creation",
    default=None,
    help="Let sync bundle modules that members' builds keep fetching together.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
@click.argument("more_members", nargs=-1)
def command(
    options: TeamOptions,
    members: tuple[str, ...],
    cache_strategy: str | None,
    max_cache_size_mb: int | None,
    sync_frequency_minutes: int | None,
    shared_cache: bool | None,
    bundle_auto_creation: bool | None,
    as_json: bool,
    more_members: tuple[str, ...],
) -> None:
    """Create or update TEAM's configuration (stored in the team registry, so every member and
    CI job sees the same)."""
    cache = options.open_cache()
    config = cache.setup(
        [*members, *more_members],
        cache_strategy=cache_strategy,
        shared_cache=shared_cache,
        bundle_auto_creation=bundle_auto_creation,
        max_cache_size_mb=max_cache_size_mb,
        sync_frequency_minutes=sync_frequency_minutes,
    )
    if as_json:
        click.echo(json.dumps(config.to_json(), indent=2))
        return
    click.echo(f"team {config.team} in {redact(options.registry)}")
    click.echo(f"  members: {', '.join(config.members) or '(none)'}")
    click.echo(
        f"  strategy: {config.cache_strategy} (max {config.max_cache_size_mb} MB per member,"
        f" preload top {config.preload_top}, sync every {config.sync_frequency_minutes} min)"
    )
    click.echo(
        f"  shared cache: {'on' if config.shared_cache else 'off'}, bundle auto-creation:"
        f" {'on' if config.bundle_auto_creation else 'off'}"
    )
