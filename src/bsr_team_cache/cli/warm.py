"""``bsr-team-cache warm``: prefetch modules into the local store and the team registry, by
name, or on the team's warming schedule (``--schedule`` prints it for cron and CI,
``--scheduled`` is what they run)."""

from __future__ import annotations

import json
import shlex

import click

from bsr_team_cache.cli.options import TeamOptions, team_options
from bsr_team_cache.errors import UsageError
from bsr_team_cache.team.fetch import TIERS

NETWORK_SCHEMES = ("https://", "http://", "oci://")


@click.command("warm")
@team_options(content=True)
@click.option("--deps", multiple=True, help="registry/owner/module[:ref] (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.option(
    "--schedule",
    "print_schedule",
    is_flag=True,
    help="Print the team's warming schedule (from its last 30 days of requests) as crontab"
    " lines and a GitHub Actions workflow that run `warm --scheduled`; warms nothing.",
)
@click.option(
    "--scheduled",
    is_flag=True,
    help="Do what the schedule says now (for cron or CI): warm the team's most requested"
    " modules (the strategy's preload_top, and the peak hours' modules) and pull the team's"
    " bundles this store lacks; on the first run after the weekly refresh time (and a"
    " machine's first run), also a full refresh: a sync (labels re-resolved against the BSR,"
    " the hot set pulled, the store trimmed to max_cache_size_mb).",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="With --schedule/--scheduled: the IANA time zone of the schedule (e.g. Europe/Berlin).",
)
@click.argument("more_deps", nargs=-1)
def command(
    options: TeamOptions,
    deps: tuple[str, ...],
    as_json: bool,
    print_schedule: bool,
    scheduled: bool,
    timezone: str,
    more_deps: tuple[str, ...],
) -> None:
    """Fetch modules (and their deps) ahead of time, e.g. before peak hours."""
    refs = [*deps, *more_deps]
    if print_schedule and scheduled:
        raise UsageError("--schedule prints the schedule, --scheduled runs it: give one")
    if (print_schedule or scheduled) and refs:
        flag = "--schedule" if print_schedule else "--scheduled"
        raise UsageError(f"{flag} takes no modules: the team's events choose them")
    if print_schedule:
        _print_schedule(options, timezone, as_json)
    elif scheduled:
        _run_scheduled(options, timezone, as_json)
    else:
        _warm(options, refs, as_json)


def _warm(options: TeamOptions, refs: list[str], as_json: bool) -> None:
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


def _print_schedule(options: TeamOptions, timezone: str, as_json: bool) -> None:
    import shutil
    import time

    from bsr_team_cache.usage.analysis import parse_timezone
    from bsr_team_cache.usage.schedule import (
        crontab,
        github_workflow,
        schedule_lines,
        team_schedule,
    )

    parse_timezone(timezone)
    cache = options.open_cache()
    warnings: list[str] = []
    now = time.time()
    with cache.events(warnings) as log:
        schedule = team_schedule(log, team=cache.team, timezone=timezone, now=now)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    program = shutil.which("bsr-team-cache") or "bsr-team-cache"
    cron = crontab(schedule, shlex.join(_cron_args(options, program, timezone)))
    ci_args = ["bsr-team-cache", "warm", "--scheduled", "--team", cache.team]
    if timezone != "UTC":
        ci_args += ["--timezone", timezone]
    workflow = github_workflow(
        schedule, shlex.join(ci_args), env=_ci_env(options.registry), now=now
    )
    if as_json:
        document = {"schedule": schedule.to_json(), "crontab": cron, "github_actions": workflow}
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    for line in schedule_lines(schedule, cache.team, cron, workflow):
        click.echo(line)


def _cron_args(options: TeamOptions, program: str, timezone: str) -> list[str]:
    """The command cron runs: this team, registry and store, whatever cron's environment."""
    from bsr_team_cache.oci.url import redact
    from bsr_team_cache.store import default_store_dir

    args = [program, "warm", "--scheduled", "--team", options.team]
    if redact(options.registry) == options.registry:  # a password stays out of the crontab
        args += ["--registry", options.registry]
    if options.store_dir != default_store_dir({}):
        args += ["--store-dir", str(options.store_dir)]
    if timezone != "UTC":
        args += ["--timezone", timezone]
    return args


def _ci_env(registry: str) -> dict[str, str]:
    """The workflow job's environment: the registry if CI can reach it (else a repository
    variable to set) and its credentials from the repository's secrets."""
    from bsr_team_cache.oci.url import redact

    if not registry.startswith(NETWORK_SCHEMES):
        return {"BSR_TEAM_CACHE_REGISTRY": "${{ vars.BSR_TEAM_CACHE_REGISTRY }}"}
    return {
        "BSR_TEAM_CACHE_REGISTRY": redact(registry),
        "BSR_TEAM_CACHE_REGISTRY_USERNAME": "${{ secrets.BSR_TEAM_CACHE_REGISTRY_USERNAME }}",
        "BSR_TEAM_CACHE_REGISTRY_PASSWORD": "${{ secrets.BSR_TEAM_CACHE_REGISTRY_PASSWORD }}",
    }


def _run_scheduled(options: TeamOptions, timezone: str, as_json: bool) -> None:
    from bsr_team_cache.team.scheduled import run_scheduled
    from bsr_team_cache.usage.analysis import parse_timezone

    parse_timezone(timezone)
    run = run_scheduled(options.open_cache(), timezone=timezone)
    for warning in run.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(run.to_json(), indent=2, ensure_ascii=False))
        return
    for line in run.lines():
        click.echo(line)
