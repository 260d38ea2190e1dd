"""Options shared by the commands that use a team registry and the local store. Values come
from the options, else the environment, else the config file, else defaults (settings.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bsr_team_cache._deadline import deadline_scope
from bsr_team_cache.errors import UsageError
from bsr_team_cache.limits import MiB, configure, limits

# Settings and the store are imported when a command runs, not when its options are declared:
# --help needs neither.
if TYPE_CHECKING:
    from bsr_team_cache.settings import Settings
    from bsr_team_cache.store import LocalStore

DEFAULT_STORE_MAX_MB = 2048


class TeamOptions:
    """What a team command runs with. (A plain class, as limits.Limits: it is defined at every
    start-up, and a dataclass would compile its methods each time.)"""

    __slots__ = ("settings", "store_dir", "store_max_mb", "timeout")

    def __init__(
        self, settings: Settings, store_dir: Path, store_max_mb: int, timeout: float
    ) -> None:
        self.settings = settings
        self.store_dir = store_dir
        self.store_max_mb = store_max_mb
        self.timeout = timeout

    @property
    def team(self) -> str:
        if not self.settings.team:
            raise UsageError(
                'no team given: pass --team, set BSR_TEAM_CACHE_TEAM, or put team = "..." in'
                " the config file"
            )
        return self.settings.team

    @property
    def registry(self) -> str:
        return self.settings.registry

    def open_store(self) -> LocalStore:
        from bsr_team_cache.store import LocalStore

        return LocalStore(self.store_dir, max_bytes=self.store_max_mb * 1024 * 1024)

    def open_registry(self):
        from bsr_team_cache.oci import open_registry

        return open_registry(self.settings.registry, insecure=self.settings.insecure)

    def open_cache(self, bsr=None):
        from bsr_team_cache.bsr.client import BSRModuleClient
        from bsr_team_cache.team.cache import TeamCache

        return TeamCache(
            self.team,
            registry=self.open_registry(),
            bsr=bsr or BSRModuleClient(),
            store=self.open_store(),
            member=self.settings.member,
            namespace=self.settings.namespace,
        )


_REGISTRY_OPTIONS = [
    click.option("--team", help="Team name [env BSR_TEAM_CACHE_TEAM, config file]."),
    click.option(
        "--registry",
        help="Team registry: oci-layout:PATH, https://HOST[:PORT][/NAMESPACE] or oci://HOST/NS"
        " [env BSR_TEAM_CACHE_REGISTRY, config file; default: the embedded on-disk registry].",
    ),
    click.option(
        "--insecure",
        is_flag=True,
        default=None,
        help="Allow plain http to a registry that is not on loopback [BSR_TEAM_CACHE_INSECURE].",
    ),
    click.option(
        "--timeout",
        type=click.IntRange(min=1),
        help="Give up after this many seconds [BSR_TEAM_CACHE_TIMEOUT;"
        f" default {limits().command_seconds:g}].",
    ),
]
_MEMBER_OPTION = click.option(
    "--member", help="Who you are in the team [BSR_TEAM_CACHE_MEMBER; $USER]."
)
_STORE_DIR_OPTION = click.option(
    "--store-dir",
    type=click.Path(path_type=Path),
    help="Local store [BSR_TEAM_CACHE_DIR; default ~/.cache/bsr-team-cache].",
)
_CONTENT_OPTIONS = [
    click.option(
        "--store-max-mb",
        type=click.IntRange(min=1),
        help=f"Evict least-recently-used modules above this size [default {DEFAULT_STORE_MAX_MB}].",
    ),
    click.option(
        "--max-module-mb",
        type=click.IntRange(min=1),
        help="Refuse modules larger than this (decompressed) from the registry or the BSR"
        f" [BSR_TEAM_CACHE_MAX_MODULE_MB; default {limits().max_module_bytes // MiB}].",
    ),
]


def _default_store_dir() -> Path:
    from bsr_team_cache.store import default_store_dir

    return default_store_dir()


def team_options(
    func: Callable | None = None,
    *,
    registry: bool = True,
    member: bool = False,
    content: bool = False,
) -> Callable:
    """The options a command that uses the team (``registry``), says who the member is
    (``member``), or moves modules (``content``: store size, module size limit) takes; only
    those, so that no command accepts an option it would ignore."""

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            from bsr_team_cache.settings import load_settings

            chosen = {
                name: kwargs.pop(name, None)
                for name in (
                    "team",
                    "registry",
                    "insecure",
                    "member",
                    "store_dir",
                    "store_max_mb",
                    "max_module_mb",
                    "timeout",
                )
            }
            settings = load_settings(
                registry=chosen["registry"],
                team=chosen["team"],
                member=chosen["member"],
                insecure=chosen["insecure"] or None,
            )
            module_mb = chosen["max_module_mb"] or settings.max_module_mb
            if module_mb:
                configure(max_module_bytes=module_mb * MiB)
            options = TeamOptions(
                settings,
                chosen["store_dir"] or settings.store_dir or _default_store_dir(),
                chosen["store_max_mb"] or settings.store_max_mb or DEFAULT_STORE_MAX_MB,
                float(chosen["timeout"] or settings.timeout or limits().command_seconds),
            )
            # Every request the command makes ends by then, in every thread it starts.
            with deadline_scope(options.timeout):
                return command(*args, options=options, **kwargs)

        decorators = [_STORE_DIR_OPTION]
        if registry:
            decorators += _REGISTRY_OPTIONS
        if member:
            decorators.append(_MEMBER_OPTION)
        if content:
            decorators += _CONTENT_OPTIONS
        for option in reversed(decorators):
            wrapper = option(wrapper)
        return wrapper

    return decorate(func) if func is not None else decorate


def view_options(command: Callable) -> Callable:
    """``--member NAME`` (one member's requests), ``--since`` and ``--local-only``: how
    monitor, analyze and recommend choose the events they show."""
    for option in reversed(
        [
            click.option(
                "--member", "only_member", help="Only this member's requests (default: the team)."
            ),
            click.option(
                "--since",
                help="From this time: RFC 3339, a date, or an age like 7d [default: 30d].",
            ),
            click.option(
                "--local-only",
                is_flag=True,
                help="Do not merge the team's events from the registry first (this machine's"
                " copy).",
            ),
        ]
    ):
        command = option(command)
    return command
