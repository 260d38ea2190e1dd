"""``bsr-team-cache metrics``: this machine's cache metrics in Prometheus' text format."""

from __future__ import annotations

import click

from bsr_team_cache.cli.options import TeamOptions, team_options


@click.command("metrics")
@team_options(registry=False)
def command(options: TeamOptions) -> None:
    """Print this machine's cache metrics in Prometheus' text format: module requests and
    bytes by tier, fetch durations, local store size, evictions and errors. Reads only the
    local store and its usage log (works offline); counts only this machine's own events.

    For node_exporter's textfile collector, write a temporary file in the collector's
    directory and rename it, so that node_exporter never reads a half-written file (it
    ignores names not ending in .prom), for example from cron:

    \b
      DIR=/var/lib/node_exporter/textfile_collector
      bsr-team-cache metrics > "$DIR/bsr_team_cache.prom.tmp" \\
        && mv "$DIR/bsr_team_cache.prom.tmp" "$DIR/bsr_team_cache.prom"
    """
    from bsr_team_cache.usage.log import open_event_log
    from bsr_team_cache.usage.prometheus import exposition

    with options.open_store() as store, open_event_log(options.store_dir) as log:
        text = exposition(store, log)
    click.echo(text, nl=False)
