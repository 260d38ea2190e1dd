"""The ``bsr-team-cache`` command line. One module per command; no logic lives here."""

from __future__ import annotations

import importlib
import sys

import click

from bsr_team_cache import __version__
from bsr_team_cache.errors import BSRTeamCacheError

# Command name -> module. Modules are imported only when their command runs, so that a
# warm `fetch` does not pay for the demo's or dev-bsr's imports at start-up.
COMMANDS = {
    "analyze": "analyze",
    "audit": "audit",
    "auth": "auth",
    "auth-server": "auth_server",
    "bundle": "bundle",
    "check": "check",
    "clear": "clear",
    "demo": "demo",
    "dev-bsr": "dev_bsr",
    "digest": "digest",
    "fetch": "fetch",
    "keys": "keys",
    "metrics": "metrics",
    "monitor": "monitor",
    "recommend": "recommend",
    "resolve": "resolve",
    "serve-metrics": "serve_metrics",
    "setup": "setup",
    "share": "share",
    "sync": "sync",
    "usage": "usage",
    "warm": "warm",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        return importlib.import_module(f"bsr_team_cache.cli.{module}").command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bsr-team-cache")
def cli() -> None:
    """A team-shared cache of Buf Schema Registry modules, kept in an OCI registry."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one clear line and exit non-zero, never a traceback."""
    try:
        cli.main(args=argv, prog_name="bsr-team-cache", standalone_mode=False)
    except BSRTeamCacheError as exc:
        click.echo(f"bsr-team-cache: error: {exc}", err=True)
        return exc.exit_code
    except OSError as exc:  # a file or directory we were given cannot be used
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"bsr-team-cache: error: {where}{exc.strerror or exc}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("bsr-team-cache: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    sys.exit(main())
