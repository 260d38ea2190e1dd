"""BSR credentials, looked up the way the buf CLI does.

``BUF_TOKEN`` holds either one token for every registry, or ``token1@host1,token2@host2``.
Otherwise the password of the ``machine <host>`` entry of ``$NETRC`` (default ``~/.netrc``).
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from pathlib import Path

from bsr_team_cache.errors import ConfigError


def parse_buf_token(value: str) -> tuple[str | None, dict[str, str]]:
    """Return (token for every host, {host: token}) from a BUF_TOKEN value."""
    value = value.strip()
    if not value:
        return None, {}
    if "@" not in value:
        return value, {}
    per_host: dict[str, str] = {}
    for number, part in enumerate(value.split(","), start=1):
        part = part.strip()
        token, sep, host = part.rpartition("@")
        if not sep or not token or not host:
            # Never echo the entry: it may hold a token.
            raise ConfigError(
                "BUF_TOKEN",
                f"entry {number} is not token@host",
                hint="use a single token, or token1@host1,token2@host2",
            )
        per_host[host] = token
    return None, per_host


def netrc_path(env: Mapping[str, str]) -> Path:
    if env.get("NETRC"):
        return Path(env["NETRC"])
    return Path(env.get("HOME", str(Path.home()))) / ".netrc"


def token_for_host(host: str, env: Mapping[str, str] | None = None) -> str | None:
    """The bearer token for ``host`` (a registry such as ``buf.build`` or ``localhost:8443``)."""
    env = os.environ if env is None else env
    default, per_host = parse_buf_token(env.get("BUF_TOKEN", ""))
    if host in per_host:
        return per_host[host]
    if default is not None:
        return default
    path = netrc_path(env)
    if not path.is_file():
        return None
    try:
        entries = netrc.netrc(str(path))
    except netrc.NetrcParseError as exc:
        # The parser's message quotes the offending token, which may be a password.
        raise ConfigError(path, "cannot parse it", line=exc.lineno) from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read it ({exc.strerror})") from None
    hostname = host.split(":")[0] if host.count(":") == 1 else host
    for candidate in (host, hostname):
        found = entries.authenticators(candidate)
        if found:
            return found[2] or None
    return None
