"""``bsr-team-cache analyze``: the team's usage patterns (co-occurrence, peak hours, bundle
opportunities, warming schedule) from every member's events."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options, view_options


def _check_timezone(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from bsr_team_cache.errors import UsageError
    from bsr_team_cache.usage.analysis import parse_timezone

    try:
        parse_timezone(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


@click.command("analyze")
@team_options
@view_options
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON.")
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    callback=_check_timezone,
    help="Time zone of the peak hours and the warming schedule (IANA name: Europe/Berlin).",
)
@click.option(
    "--top",
    type=click.IntRange(1, 100),
    default=10,
    show_default=True,
    help="How many co-occurrences, bundle opportunities and modules to warm to list.",
)
def command(
    options: TeamOptions,
    as_json: bool,
    only_member: str | None,
    since: str | None,
    timezone: str,
    top: int,
    local_only: bool,
) -> None:
    """Modules used together across builds, peak hours, bundles worth creating (with the
    requests and time they would save) and a warming schedule. Only demand requests count
    (definitions: docs/metrics.md)."""
    from bsr_team_cache.usage.events import parse_since

    warnings: list[str] = []
    report = options.open_cache().analysis(
        warnings,
        member=only_member,
        since=parse_since(since or "30d"),
        timezone=timezone,
        top=top,
        merge=not local_only,
    )
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    for line in report_lines(report):
        click.echo(line)


def report_lines(report: dict) -> list[str]:
    """The analysis as text: the design document's sections, most useful first."""
    who = f" (member {report['member']})" if report["member"] else ""
    lines = [
        f"Usage analysis for team {report['team']}{who}: {report['requests']} demand requests"
        f" in {report['builds']} builds",
        "",
        "Bundle opportunities:",
    ]
    for o in report["bundle_opportunities"]:
        lines.append(
            f"  {o['name']}: {len(o['dependencies'])} modules, together in {o['builds']}"
            f" builds (co-occurrence {o['co_occurrence']:.0%})"
        )
        lines.append(f"    {o['potential_savings']['text']}")
        lines += [f"    {name}" for name in o["dependencies"]]
    if not report["bundle_opportunities"]:
        lines.append("  none: no set of modules is fetched together often enough")
    lines += ["", "Modules used together:"]
    for c in report["co_occurrence"]:
        related = ", ".join(
            f"{r['dependency']} ({r['co_occurrence_score']:.0%}, {r['usage_count']} builds)"
            for r in c["related_dependencies"]
        )
        lines.append(f"  {c['primary_dependency']} (bundle score {c['bundle_score']}): {related}")
    if not report["co_occurrence"]:
        lines.append("  none")
    peaks = report["peak_hours"]
    at = ", ".join(f"{h:02d}:00" for h in peaks["peak_hours"]) or "none"
    lines += [
        "",
        f"Peak hours ({peaks['timezone']}): {at}",
        f"  busy days: {', '.join(peaks['peak_weekdays']) or 'none'};"
        f" quietest: {peaks['quietest_weekday'] or '-'}",
    ]
    lines += [f"  - {r}" for r in peaks["recommendations"]]
    daily, weekly = report["warming_schedule"]["daily"], report["warming_schedule"]["weekly"]
    lines += ["", "Warming schedule:"]
    if daily["time"] is None:
        lines.append("  no demand requests to derive it from")
        return lines
    lines.append(f"  daily at {daily['time']} ({daily['timezone']}):")
    lines += [f"    {ref}" for ref in daily["dependencies"]]
    lines.append(
        f"  weekly on {weekly['day']} at {weekly['time']} ({weekly['timezone']}):"
        f" {weekly['action']}"
    )
    return lines
