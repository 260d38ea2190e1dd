"""Options shared by the commands that use a team registry and the local store. Values come
from the options, else the environment, else the config file, else defaults (settings.py).

Options are declared once, as :class:`Param` tables: click's options are built from them for
every command, and ``fetch``'s fast start-up (``_fastpath``) parses argv with the same tables.
This module imports click only when a command's click options are built, never for the tables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bsr_team_cache._deadline import deadline_scope
from bsr_team_cache.errors import UsageError
from bsr_team_cache.limits import MiB, configure, limits

# Settings and the store are imported when a command runs, not when its options are declared:
# --help needs neither.
if TYPE_CHECKING:
    from bsr_team_cache.settings import Settings
    from bsr_team_cache.store import LocalStore

DEFAULT_STORE_MAX_MB = 2048

# What a Param's value is (click's type; what the fast parser converts and checks).
FLAG = "flag"  # an is_flag option: True when given
TEXT = "text"
PATH = "path"  # click.Path(path_type=Path)
POSITIVE_INT = "int>=1"  # click.IntRange(min=1)
NON_NEGATIVE_FLOAT = "float>=0"  # click.FloatRange(min=0)


class Param:
    """One option (``flags`` given) or the positional argument (``flags`` empty) of a command.
    ``name`` is the command function's parameter; a FLAG is False unless given. (A plain
    class, as TeamOptions.)"""

    __slots__ = ("default", "flags", "help", "kind", "name", "show_default")

    def __init__(
        self,
        name: str,
        flags: tuple[str, ...],
        kind: str,
        *,
        default: object = None,
        help: str = "",
        show_default: bool = False,
    ) -> None:
        self.name = name
        self.flags = flags
        self.kind = kind
        self.default = False if kind == FLAG else default
        self.help = help
        self.show_default = show_default

    def click_decorator(self) -> Callable[[Callable], Callable]:
        """click's ``argument`` or ``option`` for this Param."""
        import click

        types = {
            TEXT: None,
            PATH: click.Path(path_type=Path),
            POSITIVE_INT: click.IntRange(min=1),
            NON_NEGATIVE_FLOAT: click.FloatRange(min=0),
        }
        if not self.flags:
            return click.argument(self.name, type=types[self.kind], default=self.default)
        if self.kind == FLAG:
            return click.option(*self.flags, self.name, is_flag=True, help=self.help)
        return click.option(
            *self.flags,
            self.name,
            type=types[self.kind],
            default=self.default,
            show_default=self.show_default,
            help=self.help,
        )


def click_params(params: Iterable[Param]) -> Callable[[Callable], Callable]:
    """A decorator adding ``params`` to a click command, in this order (in --help too)."""

    def decorate(command: Callable) -> Callable:
        for param in reversed(list(params)):
            command = param.click_decorator()(command)
        return command

    return decorate


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

    def check_registry(self) -> None:
        """UsageError now if the registry URL is not one open_registry can open (without
        loading the registry adapters)."""
        from bsr_team_cache.oci.url import check_registry_url

        check_registry_url(self.settings.registry, insecure=self.settings.insecure)

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


REGISTRY_PARAMS = (
    Param("team", ("--team",), TEXT, help="Team name [env BSR_TEAM_CACHE_TEAM, config file]."),
    Param(
        "registry",
        ("--registry",),
        TEXT,
        help="Team registry: oci-layout:PATH, https://HOST[:PORT][/NAMESPACE] or oci://HOST/NS"
        " [env BSR_TEAM_CACHE_REGISTRY, config file; default: the embedded on-disk registry].",
    ),
    Param(
        "insecure",
        ("--insecure",),
        FLAG,
        help="Allow plain http to a registry that is not on loopback [BSR_TEAM_CACHE_INSECURE].",
    ),
    Param(
        "timeout",
        ("--timeout",),
        POSITIVE_INT,
        help="Give up after this many seconds [BSR_TEAM_CACHE_TIMEOUT;"
        f" default {limits().command_seconds:g}].",
    ),
)
MEMBER_PARAM = Param(
    "member", ("--member",), TEXT, help="Who you are in the team [BSR_TEAM_CACHE_MEMBER; $USER]."
)
STORE_DIR_PARAM = Param(
    "store_dir",
    ("--store-dir",),
    PATH,
    help="Local store [BSR_TEAM_CACHE_DIR; default ~/.cache/bsr-team-cache].",
)
CONTENT_PARAMS = (
    Param(
        "store_max_mb",
        ("--store-max-mb",),
        POSITIVE_INT,
        help=f"Evict least-recently-used modules above this size [default {DEFAULT_STORE_MAX_MB}].",
    ),
    Param(
        "max_module_mb",
        ("--max-module-mb",),
        POSITIVE_INT,
        help="Refuse modules larger than this (decompressed) from the registry or the BSR"
        f" [BSR_TEAM_CACHE_MAX_MODULE_MB; default {limits().max_module_bytes // MiB}].",
    ),
)


def team_params(
    *, registry: bool = True, member: bool = False, content: bool = False
) -> tuple[Param, ...]:
    """The options a command that uses the team (``registry``), says who the member is
    (``member``), or moves modules (``content``: store size, module size limit) takes; only
    those, so that no command accepts an option it would ignore."""
    params = [STORE_DIR_PARAM]
    if registry:
        params += REGISTRY_PARAMS
    if member:
        params.append(MEMBER_PARAM)
    if content:
        params += CONTENT_PARAMS
    return tuple(params)


TEAM_PARAM_NAMES = frozenset(p.name for p in team_params(registry=True, member=True, content=True))


def _default_store_dir() -> Path:
    from bsr_team_cache.store import default_store_dir

    return default_store_dir()


def resolve_team_options(chosen: Mapping[str, object]) -> TeamOptions:
    """TeamOptions from the team options given (by name; missing or None: not given), the
    environment, the config file and the defaults; sets the process's module size limit and
    how it compresses the layers it makes."""
    from bsr_team_cache.settings import load_settings

    settings = load_settings(
        registry=chosen.get("registry"),
        team=chosen.get("team"),
        member=chosen.get("member"),
        insecure=chosen.get("insecure") or None,
    )
    module_mb = chosen.get("max_module_mb") or settings.max_module_mb
    if module_mb:
        configure(max_module_bytes=module_mb * MiB)
    if settings.layer_compression:
        from bsr_team_cache.oci.compression import write_layers_as

        write_layers_as(settings.layer_compression)
    return TeamOptions(
        settings,
        chosen.get("store_dir") or settings.store_dir or _default_store_dir(),
        chosen.get("store_max_mb") or settings.store_max_mb or DEFAULT_STORE_MAX_MB,
        float(chosen.get("timeout") or settings.timeout or limits().command_seconds),
    )


def run_with_team_options(command: Callable, **kwargs: object) -> object:
    """Call ``command`` with ``options=`` (TeamOptions made of the team options in ``kwargs``)
    and its other ``kwargs``, within the command's deadline."""
    chosen = {name: kwargs.pop(name) for name in TEAM_PARAM_NAMES if name in kwargs}
    options = resolve_team_options(chosen)
    # Every request the command makes ends by then, in every thread it starts.
    with deadline_scope(options.timeout):
        return command(options=options, **kwargs)


def team_options(
    func: Callable | None = None,
    *,
    registry: bool = True,
    member: bool = False,
    content: bool = False,
) -> Callable:
    """Decorate a click command function with the team options (see ``team_params``); it is
    called with ``options=TeamOptions`` in their stead."""

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            return run_with_team_options(functools.partial(command, *args), **kwargs)

        params = team_params(registry=registry, member=member, content=content)
        return click_params(params)(wrapper)

    return decorate(func) if func is not None else decorate


VIEW_PARAMS = (
    Param(
        "only_member",
        ("--member",),
        TEXT,
        help="Only this member's requests (default: the team).",
    ),
    Param(
        "since",
        ("--since",),
        TEXT,
        help="From this time: RFC 3339, a date, or an age like 7d [default: 30d].",
    ),
    Param(
        "local_only",
        ("--local-only",),
        FLAG,
        help="Do not merge the team's events from the registry first (this machine's copy).",
    ),
)


def view_options(command: Callable) -> Callable:
    """``--member NAME`` (one member's requests), ``--since`` and ``--local-only``: how
    monitor, analyze and recommend choose the events they show."""
    return click_params(VIEW_PARAMS)(command)
