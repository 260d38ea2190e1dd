"""``bsr-team-cache fetch``: get a project's deps from the local store, the team registry or
the BSR, fill buf's cache, optionally export them for protoc.

The hot command: ``PARAMS`` declares its argument and options once; ``_fastpath`` parses argv
with them and calls ``fetch_command`` without importing click, and the click command (for
``--help`` and for click's messages about wrong arguments) is built from the same PARAMS when
the CLI group asks for ``command``. Nothing here writes through click."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bsr_team_cache.cli.options import (
    FLAG,
    NON_NEGATIVE_FLOAT,
    PATH,
    TEXT,
    Param,
    TeamOptions,
    click_params,
    run_with_team_options,
    team_params,
)
from bsr_team_cache.errors import StoreError
from bsr_team_cache.team import DEFAULT_LABEL_TTL

# The fetch machinery (store, registry, BSR client, YAML) is imported when the command runs, so
# that `fetch --help` and a mistyped option answer at once.
if TYPE_CHECKING:
    from bsr_team_cache.bufcache.layout import LayoutCheck
    from bsr_team_cache.usage.record import ModuleResult

PARAMS = (
    Param("project_dir", (), PATH, default="."),
    *team_params(content=True),
    Param(
        "buf_cache_dir_opt",
        ("--buf-cache-dir",),
        PATH,
        help="buf's cache to fill (default: as buf chooses: $BUF_CACHE_DIR, ...).",
    ),
    Param("no_buf_cache", ("--no-buf-cache",), FLAG, help="Do not write buf's cache."),
    Param(
        "export",
        ("--export",),
        PATH,
        help="Also write the deps' .proto files, for protoc -I, into this directory (never"
        " overwriting files it did not write).",
    ),
    Param(
        "update_lock",
        ("--update-lock",),
        FLAG,
        help="Resolve buf.yaml's deps and write buf.lock (of buf.yaml's version, as buf does).",
    ),
    Param(
        "label_ttl",
        ("--label-ttl",),
        NON_NEGATIVE_FLOAT,
        default=DEFAULT_LABEL_TTL / 3600,
        show_default=True,
        help="Hours a label index entry may be used for when the BSR is unreachable.",
    ),
    Param(
        "bundle",
        ("--bundle",),
        TEXT,
        help="Pull this team bundle first (saves asking the team configuration which bundle fits).",
    ),
    Param(
        "no_bundles",
        ("--no-bundles",),
        FLAG,
        help="Never use bundles (lock packs included); pull modules one by one.",
    ),
    Param(
        "no_packs",
        ("--no-packs",),
        FLAG,
        help="Do not read or make the lock's pack (one artifact with every module buf.lock"
        " pins, read in one request by a machine new to the lock).",
    ),
    Param("as_json", ("--json",), FLAG, help="Print a JSON summary."),
    Param("quiet", ("-q", "--quiet"), FLAG, help="Print only warnings and errors."),
)


def _echo(text: str, *, err: bool = False, end: str = "\n") -> None:
    """Write and flush, as click.echo does (the streams are looked up at each call)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + end)
    stream.flush()


def _print_modules(modules: Sequence[ModuleResult], seconds: float) -> None:
    """A line per module, then the summary."""
    for m in modules:
        note = " (published)" if m.published else ""
        _echo(f"{m.tier:<5} {m.name}:{m.commit}  {m.bytes} B{note}")
    from bsr_team_cache.usage.record import FETCH_TIERS

    parts = [f"{sum(1 for m in modules if m.tier == tier)} {tier}" for tier in FETCH_TIERS]
    total = sum(m.bytes for m in modules)
    _echo(
        f"{len(modules)} modules ({', '.join(parts)}), {total / 1024:.0f} KiB,"
        f" {seconds * 1000:.0f} ms"
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
        _echo("\r" + line.ljust(self.width), end="", err=True)

    def close(self) -> None:
        if self.width:
            _echo("\r" + " " * self.width + "\r", end="", err=True)


def import_machinery() -> None:
    """Import what a full fetch runs (see _startup: the process may keep it until exit)."""
    from bsr_team_cache._startup import loading

    with loading():
        import bsr_team_cache.bsr.on_demand
        import bsr_team_cache.bufcache.v3
        import bsr_team_cache.team.fetch  # noqa: F401
        from bsr_team_cache.oci.compression import zstd_module

        zstd_module()  # the layers' decoder (~3 ms), loaded before the first layer is in


def fetch_command(**values: object) -> None:
    """Fetch PROJECT_DIR's dependencies: local store, team registry, then the BSR (published
    back to the team registry). Fills buf's cache so that `buf build` needs no network."""
    run_with_team_options(_fetch, **values)


def _answered_in_place(
    project_dir: Path,
    options: TeamOptions,
    team: str,
    cache: Path,
    layout: LayoutCheck | None,
    quiet: bool,
) -> bool:
    """Every module in place already (a build's every run after its first): printed and
    recorded without loading the fetch machinery (placed.py); False if the full fetch must run.
    buf's answer is awaited once every dep is found in place, before the use is recorded."""
    from bsr_team_cache._startup import loading

    with loading():
        from bsr_team_cache.placed import fetch_if_placed

    placed = fetch_if_placed(
        project_dir,
        store_root=options.store_dir,
        buf_cache=cache,
        team=team,
        member=options.settings.member,
        before_use=layout,
    )
    if placed is None:
        return False
    for warning in placed.warnings:
        _echo(f"warning: {warning}", err=True)
    if not quiet:
        _print_modules(placed.modules, placed.seconds)
    return True


def _fetch(
    project_dir: Path,
    options: TeamOptions,
    buf_cache_dir_opt: Path | None,
    no_buf_cache: bool,
    export: Path | None,
    update_lock: bool,
    label_ttl: float,
    bundle: str | None,
    no_bundles: bool,
    no_packs: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    from bsr_team_cache._startup import loading
    from bsr_team_cache.bufcache.layout import buf_cache_dir, start_layout_check
    from bsr_team_cache.store import INDEX_FILE

    cache = None if no_buf_cache else (buf_cache_dir_opt or buf_cache_dir(dict(os.environ)))
    team = options.team
    options.check_registry()  # a bad URL is an error even when nothing would be fetched
    # Which cache layout the installed buf reads: known at once when remembered (in the store);
    # else `buf --version` runs while the fetch goes on, and is awaited before any write.
    memo = options.store_dir / "buf-version.json"
    layout: LayoutCheck | None = None
    try:
        # With no store yet (a new machine; also False for a path refused), nothing is in place.
        new_machine = not os.path.exists(options.store_dir / INDEX_FILE)
        if cache is not None and not (update_lock or export or as_json or new_machine):
            layout = start_layout_check(memo=memo)
            if _answered_in_place(project_dir, options, team, cache, layout, quiet):
                return
        registry = options.open_registry()
        preconnect = getattr(type(registry), "preconnect", None)  # a registry at a URL
        if preconnect is not None and new_machine:
            # Nothing is here: the registry will be read. Its first connection is opened now,
            # its handshake overlapping what the first request waits for (oci/_connect.py).
            preconnect(registry)
        pack_read = None
        if not (bundle or update_lock):
            # A cold fetch's first request, made while the rest of the fetch loads (pack_read.py).
            with loading():
                from bsr_team_cache.team.pack_read import start_pack_read

            pack_read = start_pack_read(
                project_dir,
                team=team,
                namespace=options.settings.namespace,
                registry=registry,
                store_root=options.store_dir,
                packs=not (no_packs or no_bundles),
            )
        if cache is not None and layout is None:
            # After the pack's request: on a new machine, starting buf takes ~4 ms.
            layout = start_layout_check(memo=memo)
        import_machinery()
        if layout is not None:
            layout()  # before anything is written to buf's cache
        from bsr_team_cache.bsr.on_demand import OnDemandBSRClient
        from bsr_team_cache.team.fetch import FetchReport, fetch

        progress = _Progress() if not (as_json or quiet) and sys.stderr.isatty() else None
        report = FetchReport()
        try:
            local = options.open_store()
        except StoreError as exc:  # the store is an optimisation: fetch without it
            report.warnings.append(f"{exc}; going on without the local store")
            local = None
        # The BSR client is made only if the BSR is asked (a fetch the store or the team serves
        # does not load it).
        with (
            OnDemandBSRClient() as bsr,
            contextlib.closing(local) if local else contextlib.nullcontext(),
        ):
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
                    packs=not no_packs,
                    bundle=bundle,
                    timeout=options.timeout,
                    member=options.settings.member,
                    pack_read=pack_read,
                )
            finally:
                if progress is not None:
                    progress.close()
                for warning in report.warnings:  # also when the fetch failed: they explain why
                    _echo(f"warning: {warning}", err=True)
        if as_json:
            import json

            _echo(json.dumps(report.to_json(), indent=2))
            return
        if not quiet:
            _print_modules(report.modules, report.seconds)
    finally:
        if layout is not None:
            layout.discard()  # not awaited (the fetch failed first): its buf is stopped


def __getattr__(name: str) -> object:
    """``command``, the click command, is built on first use (by the CLI group: --help, or an
    argv the fast path leaves to click), so that a fetch never imports click."""
    if name != "command":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import click

    built = click.command("fetch")(click_params(PARAMS)(fetch_command))
    globals()["command"] = built
    return built
