"""Registry credentials the way docker, podman and skopeo find them.

Order: ``BSR_TEAM_CACHE_REGISTRY_USERNAME``/``_PASSWORD`` (for CI), then the first of
``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json``, ``~/.docker/config.json`` that exists:
``credHelpers[host]``, else ``credsStore``, else ``auths[host]`` (``auth`` = base64
``user:password``, or ``username``/``password``, or ``identitytoken``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from bsr_team_cache._records import field, record
from bsr_team_cache.errors import ConfigError


@record(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)  # secrets never shown
    identity_token: str = field(default="", repr=False)  # docker's "identitytoken" (OAuth2)

    def basic(self) -> str | None:
        if not self.username:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


ANONYMOUS = Credentials()


def docker_config_paths() -> list[Path]:
    paths = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("DOCKER_CONFIG"):
        paths.append(Path(os.environ["DOCKER_CONFIG"]) / "config.json")
    paths.append(Path.home() / ".docker" / "config.json")
    return paths


def _host_key(key: str) -> str:
    """``https://host:5000/v1/`` and ``host:5000`` name the same registry."""
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0].lower()


def _from_helper(helper: str, host: str, source: Path) -> Credentials:
    import subprocess  # only for a helper: a fetch without one does not load it

    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run(
            [program, "get"], input=host, capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise ConfigError(
            source,
            f"credential helper {program!r} is not on PATH",
            entry=host,
            hint="install it or remove the entry",
        ) from None
    except subprocess.TimeoutExpired:
        raise ConfigError(source, f"{program} get timed out", entry=host) from None
    if done.returncode != 0:
        # Helpers answer "credentials not found" with a non-zero exit: anonymous access.
        return ANONYMOUS
    try:
        payload = json.loads(done.stdout)
        username, secret = payload["Username"], payload["Secret"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            source, f"{program} get printed no credentials JSON", entry=host
        ) from None
    if username == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username, secret)


def credentials_for(host: str) -> Credentials:
    host = host.lower()
    env_user = os.environ.get("BSR_TEAM_CACHE_REGISTRY_USERNAME")
    if env_user:
        return Credentials(env_user, os.environ.get("BSR_TEAM_CACHE_REGISTRY_PASSWORD", ""))
    for path in docker_config_paths():
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(path, f"not readable as JSON ({exc})") from None
        if not isinstance(config, dict):
            raise ConfigError(path, "expected a JSON object")
        helpers = {_host_key(k): v for k, v in (config.get("credHelpers") or {}).items()}
        if host in helpers:
            return _from_helper(str(helpers[host]), host, path)
        auths = {_host_key(k): v for k, v in (config.get("auths") or {}).items()}
        entry = auths.get(host)
        inline = isinstance(entry, dict) and (entry.get("auth") or entry.get("username"))
        if config.get("credsStore") and not inline:
            found = _from_helper(str(config["credsStore"]), host, path)
            if found != ANONYMOUS:
                return found
        if not isinstance(entry, dict):
            return ANONYMOUS
        if entry.get("identitytoken"):
            return Credentials(identity_token=str(entry["identitytoken"]))
        if entry.get("auth"):
            try:
                raw = base64.b64decode(entry["auth"], validate=True).decode()
                user, _, password = raw.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise ConfigError(
                    path, "'auth' is not base64 of user:password", entry=f"auths.{host}"
                ) from None
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(str(entry["username"]), str(entry.get("password", "")))
        return ANONYMOUS
    return ANONYMOUS
