"""Where this machine's team registry, team and local store are: command-line options, then
environment variables, then the user's config file, then defaults.

Config file: ``$BSR_TEAM_CACHE_CONFIG``, else ``$XDG_CONFIG_HOME/bsr-team-cache/config.toml``
(``~/.config/...``)::

    registry = "https://registry.example.com/platform"   # or "oci-layout:/shared/team-registry"
    team = "platform-team"
    member = "alice"
    insecure = false
    store_dir = "~/.cache/bsr-team-cache"
    store_max_mb = 2048
    max_module_mb = 256        # largest module accepted from the registry or the BSR
    timeout = 900              # seconds a command (a fetch, a sync) may take
    layer_compression = "zstd" # or "gzip", while some members run versions that read only gzip

Environment: ``BSR_TEAM_CACHE_REGISTRY``, ``BSR_TEAM_CACHE_TEAM``, ``BSR_TEAM_CACHE_MEMBER``,
``BSR_TEAM_CACHE_INSECURE``, ``BSR_TEAM_CACHE_DIR``, ``BSR_TEAM_CACHE_STORE_MAX_MB``,
``BSR_TEAM_CACHE_MAX_MODULE_MB``, ``BSR_TEAM_CACHE_TIMEOUT``, ``BSR_TEAM_CACHE_LAYER_COMPRESSION``.
Default registry: the embedded on-disk one, ``oci-layout:$XDG_DATA_HOME/bsr-team-cache/registry``.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any, NamedTuple

from bsr_team_cache.errors import ConfigError

_KEYS = {
    "registry": str,
    "team": str,
    "member": str,
    "insecure": bool,
    "store_dir": str,
    "store_max_mb": int,
    "namespace": str,
    "max_module_mb": int,
    "timeout": int,
    "layer_compression": str,
}
# How the layers this machine publishes are compressed (oci/compression.py).
LAYER_COMPRESSIONS = ("zstd", "gzip")


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false"}


def config_file(env: dict[str, str]) -> Path:
    if env.get("BSR_TEAM_CACHE_CONFIG"):
        return Path(env["BSR_TEAM_CACHE_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".config")
    return Path(base) / "bsr-team-cache" / "config.toml"


def default_registry(env: dict[str, str]) -> str:
    base = env.get("XDG_DATA_HOME") or str(
        Path(env.get("HOME", str(Path.home()))) / ".local" / "share"
    )
    return f"oci-layout:{Path(base) / 'bsr-team-cache' / 'registry'}"


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import tomllib  # most machines have no config file: start-up need not import the parser

    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read it ({exc})") from None
    for key, value in data.items():
        expected = _KEYS.get(key)
        if expected is None:
            raise ConfigError(
                path, "unknown setting", entry=key, hint=f"known: {', '.join(sorted(_KEYS))}"
            )
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(path, f"expected {_TYPE_NAMES[expected]}", entry=key)
    return data


class Settings(NamedTuple):
    """What the options, the environment and the config file say. (A NamedTuple: defined at
    every start-up, where a dataclass would compile its methods and import inspect.)"""

    registry: str
    team: str | None
    member: str
    insecure: bool
    namespace: str
    store_dir: Path | None
    store_max_mb: int | None
    source: str  # where the registry setting came from, for messages
    max_module_mb: int | None = None
    timeout: int | None = None
    layer_compression: str | None = None

    def __repr__(self) -> str:  # the registry URL may hold a password
        from bsr_team_cache.oci.url import redact

        shown = self._replace(registry=redact(self.registry))
        fields = ", ".join(f"{name}={value!r}" for name, value in shown._asdict().items())
        return f"Settings({fields})"

    __str__ = __repr__


def load_settings(
    *,
    registry: str | None = None,
    team: str | None = None,
    member: str | None = None,
    insecure: bool | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    env = dict(os.environ) if env is None else env
    path = config_file(env)
    file = read_config_file(path)
    source = "option"
    if registry is None:
        registry, source = env.get("BSR_TEAM_CACHE_REGISTRY"), "BSR_TEAM_CACHE_REGISTRY"
    if not registry:
        registry, source = file.get("registry"), str(path)
    if not registry:
        registry, source = default_registry(env), "the embedded default"
    if insecure is None:
        flag = env.get("BSR_TEAM_CACHE_INSECURE", "")
        insecure = flag.lower() in ("1", "true", "yes") if flag else bool(file.get("insecure"))
    store_dir = env.get("BSR_TEAM_CACHE_DIR") or file.get("store_dir")
    max_mb = _positive(env, "BSR_TEAM_CACHE_STORE_MAX_MB", file, "store_max_mb", path)
    return Settings(
        registry=registry,
        team=team or env.get("BSR_TEAM_CACHE_TEAM") or file.get("team"),
        member=member or env.get("BSR_TEAM_CACHE_MEMBER") or file.get("member") or _user(),
        insecure=bool(insecure),
        namespace=file.get("namespace", ""),
        store_dir=Path(store_dir).expanduser() if store_dir else None,
        store_max_mb=max_mb,
        source=source,
        max_module_mb=_positive(env, "BSR_TEAM_CACHE_MAX_MODULE_MB", file, "max_module_mb", path),
        timeout=_positive(env, "BSR_TEAM_CACHE_TIMEOUT", file, "timeout", path),
        layer_compression=_layer_compression(env, file, path),
    )


def _layer_compression(env: dict[str, str], file: dict[str, Any], path: Path) -> str | None:
    """How layers are compressed (LAYER_COMPRESSIONS) as the environment says, else the config
    file, else None (zstd)."""
    raw = env.get("BSR_TEAM_CACHE_LAYER_COMPRESSION")
    if raw:
        if raw.strip().lower() not in LAYER_COMPRESSIONS:
            raise ConfigError(
                "BSR_TEAM_CACHE_LAYER_COMPRESSION",
                f"{raw!r} is not one of: {', '.join(LAYER_COMPRESSIONS)}",
            )
        return raw.strip().lower()
    value = file.get("layer_compression")
    if value is not None and value not in LAYER_COMPRESSIONS:
        raise ConfigError(path, 'expected "zstd" or "gzip"', entry="layer_compression")
    return value


def _positive(
    env: dict[str, str], var: str, file: dict[str, Any], key: str, path: Path
) -> int | None:
    """A positive integer from the environment, else the config file, else None."""
    raw = env.get(var)
    if raw:
        if not raw.strip().isdigit() or int(raw) <= 0:
            raise ConfigError(var, f"{raw!r} is not a positive whole number")
        return int(raw)
    value = file.get(key)
    if value is None:
        return None
    if value <= 0:
        raise ConfigError(path, "expected a positive number", entry=key)
    return value


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
