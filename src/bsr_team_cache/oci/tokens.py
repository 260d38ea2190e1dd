"""Registry authentication without the HTTP stack: the cross-process token cache, the
``WWW-Authenticate`` challenge, and the token exchange's request and answer. Shared by the HTTP
client (http.py) and the direct read of a cold fetch's first manifest (direct.py), so that
both send the same credentials to the same places and keep tokens in the same cache."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from bsr_team_cache._fs import atomic_write, read_regular_file
from bsr_team_cache._hosts import is_loopback
from bsr_team_cache._records import field, record
from bsr_team_cache.errors import (
    AccessDeniedError,
    BSRTeamCacheError,
    RegistryError,
    remote_text,
)
from bsr_team_cache.oci.credentials import Credentials

TOKEN_CACHE_FILE = "registry-tokens.json"
_TOKEN_CACHE_BYTES = 1 << 20  # a larger file is not ours: ignored, then replaced
_TOKEN_CACHE_ENTRIES = 512
_MAX_TOKEN_CHARS = 16 << 10
# A cached token is used by a new process only while this much of its life is left: a fetch
# started with it should finish before it expires (a refused token is replaced anyway).
_TOKEN_REUSE_MARGIN = 30.0


def _hashed(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def token_cache_key(origin: str, scope: str) -> str:
    """The cache key of a token: the registry it is sent to and its scopes (hashed: the file
    names no host or repository)."""
    return _hashed(origin, scope)


@record(frozen=True)
class CachedToken:
    token: str = field(repr=False)
    expires: float  # seconds since the epoch
    realm: str  # the token service that issued it (the registry's challenge then)
    service: str
    principal: str  # whose credentials it was issued for (hashed)

    def as_json(self) -> dict[str, str | float]:
        return {
            "token": self.token,
            "expires": self.expires,
            "realm": self.realm,
            "service": self.service,
            "principal": self.principal,
        }


class TokenCache:
    """Registry tokens kept across processes: ``registry-tokens.json`` (mode 0600) in a
    directory of the user's (the local store): ``{"tokens": {key: {"token", "expires",
    "realm", "service", "principal"}}}``, ``expires`` in seconds since the epoch. A file that
    is not a regular file owned by this user, or is readable by others, or does not parse, is
    ignored (and replaced on the next write). Tokens are bearer credentials: they are never
    logged, and are only sent to the registry origin their key names."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(directory) / TOKEN_CACHE_FILE
        self._clock = clock
        self._lock = threading.Lock()
        # The file as last read, and its (inode, size, mtime, mode, owner): read again only when
        # one changed, not on every request (an open registry would pay it each time).
        self._entries: dict[str, CachedToken] = {}
        self._seen: tuple[int, ...] | None = None

    def _read(self) -> dict[str, CachedToken]:
        try:
            data = read_regular_file(self.path, _TOKEN_CACHE_BYTES)
            info = os.stat(self.path, follow_symlinks=False)
        except (OSError, BSRTeamCacheError):
            return {}
        if info.st_mode & 0o077 or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            return {}
        try:
            entries = json.loads(data)["tokens"]
            items = entries.items()
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return {}
        now = self._clock()
        found: dict[str, CachedToken] = {}
        for key, entry in items:
            if not isinstance(entry, dict):
                continue
            texts = [entry.get(name) for name in ("token", "realm", "service", "principal")]
            expires = entry.get("expires")
            valid_texts = all(
                isinstance(t, str) and len(t) <= _MAX_TOKEN_CHARS and t.isprintable() for t in texts
            ) and _header_safe(texts[0])
            valid_time = isinstance(expires, int | float) and not isinstance(expires, bool)
            if valid_texts and texts[0] and valid_time and expires > now:
                token, realm, service, principal = texts
                found[str(key)] = CachedToken(token, float(expires), realm, service, principal)
        return found

    def _current(self) -> dict[str, CachedToken]:
        """The file's entries, read again only if it changed since the last look."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
            seen = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode, info.st_uid)
        except OSError:
            seen = None
        if seen is None:
            self._entries, self._seen = {}, None
        elif seen != self._seen:
            self._entries, self._seen = self._read(), seen
        return self._entries

    def get(self, key: str) -> CachedToken | None:
        """The token cached under ``key`` if more than the reuse margin of its life is left."""
        with self._lock:
            entry = self._current().get(key)
        if entry is None or entry.expires - self._clock() <= _TOKEN_REUSE_MARGIN:
            return None
        return entry

    def put(self, key: str, entry: CachedToken) -> None:
        self._update(key, entry)

    def remember(
        self,
        origin: str,
        scope: str,
        token: str,
        usable: float,
        realm: str,
        service: str,
        principal: str,
    ) -> None:
        """Keep ``token`` for ``scope`` at the registry ``origin`` for ``usable`` seconds."""
        entry = CachedToken(token, self._clock() + usable, realm, service, principal)
        self.put(token_cache_key(origin, scope), entry)

    def forget(self, key: str) -> None:
        self._update(key, None)

    def _update(self, key: str, entry: CachedToken | None) -> None:
        """Re-read (other processes write too), change one entry, drop expired ones, replace
        the file atomically; the temporary file is 0600 from its creation (mkstemp)."""
        with self._lock:
            entries = dict(self._current())
            if entry is None:
                if entries.pop(key, None) is None:
                    return
            else:
                entries[key] = entry
            kept = sorted(entries.items(), key=lambda item: item[1].expires)
            payload = {"tokens": {k: e.as_json() for k, e in kept[-_TOKEN_CACHE_ENTRIES:]}}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                atomic_write(self.path, json.dumps(payload).encode())
            except OSError:
                pass  # a cache: a fetch goes on without it (and asks for tokens again)


def stored_token(
    cache: TokenCache | None,
    origin: str,
    scope: str,
    principal: Callable[[], str],
    realm: str | None,
    service: str | None,
) -> CachedToken | None:
    """The token ``cache`` keeps for ``scope`` at ``origin``, if it was issued for the current
    credentials (``principal``, asked only once a token is found: a registry that never asks
    for credentials costs no credential helper run) and, once the registry's challenge is known
    (``realm`` not None), by its current token service."""
    stored = cache.get(token_cache_key(origin, scope)) if cache is not None else None
    if stored is None or stored.principal != principal():
        return None
    if realm is not None and (stored.realm, stored.service) != (realm, service):
        return None
    return stored


def default_token_cache() -> TokenCache:
    """The cache in the local store directory (``$BSR_TEAM_CACHE_DIR`` or its default)."""
    from bsr_team_cache.store import default_store_dir

    return TokenCache(default_store_dir())


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…",scope="…"`` → ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = i + 1
            value = []
            while end < len(rest) and rest[end] != '"':
                if rest[end] == "\\" and end + 1 < len(rest):
                    end += 1
                value.append(rest[end])
                end += 1
            params[key] = "".join(value)
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme.lower(), params


def credentials_refused(where: str, host: str, detail: str) -> RegistryError:
    """The token service refused the credentials (its 401 or 403)."""
    return RegistryError(
        f"{where}: the token service refused the credentials ({detail}); check `docker login"
        f" {host}` or BSR_TEAM_CACHE_REGISTRY_USERNAME/_PASSWORD"
    )


def not_authorized(where: str, what: str, host: str, detail: str, challenge: str) -> RegistryError:
    """The registry's 401 to a request that carried credentials (``challenge``: its
    WWW-Authenticate header)."""
    _, params = parse_challenge(challenge) if challenge else ("", {})
    if params.get("error") == "insufficient_scope":
        # A token was issued, without what this request needs: the token service's policy
        # (team roles, docs/security.md) said no, not the credentials.
        wanted = remote_text(params.get("scope", ""), 300)
        return AccessDeniedError(
            f"{where}: {what}: access denied (the token service did not grant"
            f" {wanted or 'this'}); your role in the team does not allow it: ask a team admin"
        )
    return RegistryError(
        f"{where}: {what}: not authorized ({detail}); check the credentials for {host} (docker"
        " login, or BSR_TEAM_CACHE_REGISTRY_USERNAME)"
    )


def _header_safe(token: str) -> bool:
    return token.isascii() and token.isprintable()


def principal_of(creds: Credentials) -> str:
    """Whose credentials these are, hashed (a cached token is only reused by them)."""
    if creds.identity_token:
        return _hashed("identity", creds.identity_token)
    return _hashed("user", creds.username)


def registry_origin(scheme: str, host: str) -> str:
    """``scheme://host[:port]`` as a token cache key names a registry: the host in lower case,
    a default port left out (``https://r.example:443`` and ``https://R.example`` are one)."""
    host = host.lower()
    default = {"https": ":443", "http": ":80"}.get(scheme, "")
    if default and host.endswith(default) and not host.endswith("]"):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def pull_scope(name: str) -> str:
    return f"repository:{name}:pull"


def token_realm(params: dict[str, str], where: str) -> str:
    """The token service a bearer challenge names, checked: it receives the registry
    credentials, so never over plain http except on loopback."""
    realm = params.get("realm")
    if not realm:
        raise RegistryError(f"{where}: bearer challenge without a realm")
    try:
        url = urlsplit(realm)
        url.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise RegistryError(f"{where}: bearer realm {realm!r} is not a URL") from None
    if not url.hostname or not (
        url.scheme == "https" or (url.scheme == "http" and is_loopback(url.hostname))
    ):
        raise RegistryError(
            f"{where}: refusing to send credentials to the token service {realm!r}: it is not https"
        )
    return realm


def token_request(
    realm: str, params: dict[str, str], scopes: tuple[str, ...], creds: Credentials
) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, URL, headers, form body) of the token request for ``scopes``: an OAuth2
    refresh-token POST with an identity token, else a GET with basic credentials if any."""
    service = params.get("service", "")
    if creds.identity_token:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": creds.identity_token,
            "service": service,
            "scope": " ".join(scopes),
            "client_id": "bsr-team-cache",
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return "POST", realm, headers, urlencode(form).encode()
    query = [("scope", s) for s in scopes]
    if service:
        query.append(("service", service))
    joiner = "&" if urlsplit(realm).query else "?"
    basic = creds.basic()
    return "GET", realm + joiner + urlencode(query), {"Authorization": basic} if basic else {}, None


def token_from_answer(body: bytes, where: str) -> tuple[str, float]:
    """(token, seconds it may be used) from a token service's 200 answer."""
    try:
        payload = json.loads(body)
        token = payload.get("token") or payload["access_token"]
        lifetime = float(payload.get("expires_in", 60))
        # A token is sent in a header: printable ASCII only (RFC 6750's token characters).
        if not isinstance(token, str) or not _header_safe(token) or not lifetime > 0:
            raise ValueError("not a token")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise RegistryError(f"{where}: token service returned no token") from None
    return token, max(10.0, min(lifetime, 24 * 3600.0) - 10.0)
