"""Options shared by the commands that talk to a team registry and the local store."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from bsr_team_cache.store import LocalStore, default_store_dir

DEFAULT_STORE_MAX_MB = 2048


@dataclass(frozen=True)
class StoreOptions:
    directory: Path
    max_mb: int

    def open(self) -> LocalStore:
        return LocalStore(self.directory, max_bytes=self.max_mb * 1024 * 1024)


def registry_options(func: Callable) -> Callable:
    @click.option("--team", required=True, envvar="BSR_TEAM_CACHE_TEAM", help="Team name.")
    @click.option(
        "--registry",
        required=True,
        envvar="BSR_TEAM_CACHE_REGISTRY",
        help="Team registry: oci-layout:PATH, https://HOST[:PORT][/NAMESPACE] or oci://HOST/NS.",
    )
    @click.option(
        "--insecure",
        is_flag=True,
        envvar="BSR_TEAM_CACHE_INSECURE",
        help="Allow plain http to a registry that is not on loopback.",
    )
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def store_options(func: Callable) -> Callable:
    @click.option(
        "--store-dir",
        type=click.Path(path_type=Path),
        envvar="BSR_TEAM_CACHE_DIR",
        help="Local store (default: $XDG_CACHE_HOME/bsr-team-cache or ~/.cache/bsr-team-cache).",
    )
    @click.option(
        "--store-max-mb",
        type=click.IntRange(min=1),
        default=DEFAULT_STORE_MAX_MB,
        envvar="BSR_TEAM_CACHE_STORE_MAX_MB",
        show_default=True,
        help="Evict least-recently-used modules above this size.",
    )
    @functools.wraps(func)
    def wrapper(*args, store_dir: Path | None, store_max_mb: int, **kwargs):
        store = StoreOptions(store_dir or default_store_dir(), store_max_mb)
        return func(*args, store=store, **kwargs)

    return wrapper
