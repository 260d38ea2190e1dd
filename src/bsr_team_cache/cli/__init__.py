"""The ``bsr-team-cache`` command line. One module per command; no logic lives here.

click is imported only when a command other than a plain ``fetch`` runs: ``fetch``'s argv is
read by ``_fastpath`` first, and handed to click only for what click must answer (--help, a
wrong option or value)."""

from __future__ import annotations

import functools
import sys

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
    "prune-packs": "prune_packs",
    "recommend": "recommend",
    "resolve": "resolve",
    "serve-metrics": "serve_metrics",
    "setup": "setup",
    "share": "share",
    "sync": "sync",
    "usage": "usage",
    "warm": "warm",
}


@functools.cache
def _click_group():
    """The click group of every command (built on first use)."""
    import importlib

    import click

    from bsr_team_cache import __version__

    class LazyGroup(click.Group):
        def list_commands(self, ctx: click.Context) -> list[str]:
            return sorted(COMMANDS)

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            module = COMMANDS.get(cmd_name)
            if module is None:
                return None
            return importlib.import_module(f"bsr_team_cache.cli.{module}").command

    @click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="bsr-team-cache")
    def cli() -> None:
        """A team-shared cache of Buf Schema Registry modules, kept in an OCI registry."""

    return cli


def __getattr__(name: str) -> object:
    # ``cli`` (the click group) is made when asked for, so that importing this package, as the
    # fetch fast path does, does not import click.
    if name != "cli":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _click_group()


def main(argv: list[str] | None = None, *, whole_process: bool = False) -> int:
    """Run the CLI; user errors print one clear line and exit non-zero, never a traceback.
    ``whole_process``: this process exits after the command (see _fastpath.run_fetch)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["fetch"]:
        from bsr_team_cache.cli._fastpath import run_fetch

        code = run_fetch(args[1:], whole_process=whole_process)
        if code is not None:
            return code
    return _click_main(args)


def _click_main(args: list[str]) -> int:
    import click

    from bsr_team_cache.cli._fastpath import error_exit_code
    from bsr_team_cache.errors import BSRTeamCacheError

    try:
        _click_group().main(args=args, prog_name="bsr-team-cache", standalone_mode=False)
    except (BSRTeamCacheError, OSError) as exc:
        return error_exit_code(exc)
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
    """The console script's (and ``python -m bsr_team_cache``'s) entry point."""
    sys.exit(main(whole_process=True))
