"""``bsr-team-cache serve-metrics``: answer Prometheus' scrapes of this machine's metrics."""

from __future__ import annotations

import signal

import click

from bsr_team_cache.cli.options import TeamOptions, team_options

DEFAULT_PORT = 9464


@click.command("serve-metrics")
@team_options(registry=False)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The default answers only this machine; 0.0.0.0 (or ::)"
    " exposes the metrics to every host that can reach this one.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0: any free port; the URL printed names it).",
)
def command(options: TeamOptions, host: str, port: int) -> None:
    """Serve this machine's cache metrics on /metrics for Prometheus (the same metrics as
    `bsr-team-cache metrics`, read afresh at each scrape). Prints the URL, then runs until
    interrupted (Ctrl-C or SIGTERM)."""
    from bsr_team_cache.usage.prometheus import serve

    # SIGTERM (systemd, docker stop) ends it as Ctrl-C does: the port is closed cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    serve(options.store_dir, host, port, ready=lambda url: click.echo(f"serving {url}"))
    click.echo("stopped")
