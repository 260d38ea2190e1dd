"""The ``bsr-team-cache`` command line. One module per command; no logic lives here."""

from __future__ import annotations

import sys

import click

from bsr_team_cache import __version__
from bsr_team_cache.errors import BSRTeamCacheError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bsr-team-cache")
def cli() -> None:
    """A team-shared cache of Buf Schema Registry modules, kept in an OCI registry."""


def _register() -> None:
    from bsr_team_cache.cli import check, demo, dev_bsr, digest, fetch, resolve

    for module in (check, demo, dev_bsr, digest, fetch, resolve):
        cli.add_command(module.command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one clear line and exit non-zero, never a traceback."""
    try:
        cli.main(args=argv, prog_name="bsr-team-cache", standalone_mode=False)
    except BSRTeamCacheError as exc:
        click.echo(f"bsr-team-cache: error: {exc}", err=True)
        return exc.exit_code
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
