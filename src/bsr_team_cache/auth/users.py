"""The auth server's credential store: ``users.json`` in its state directory (mode 0600,
rewritten atomically under ``users.lock``).

* Users: a bcrypt hash of the password, and whether they are a site admin. Passwords longer
  than bcrypt's 72 bytes are refused (not pre-hashed: what is stored is plain bcrypt, which
  other tools can check too), as are passwords shorter than ``MIN_PASSWORD`` characters.
* CI tokens: ``bsrtc_`` and 32 random bytes (urlsafe base64), shown once at creation and
  stored only as their sha256; each has an id, the principal it authenticates as, when it
  was created, when it expires (always) and whether it was revoked. A token never carries
  its principal's site-admin flag: a leaked CI token cannot administer the registry.

Authentication is HTTP Basic ``name:password`` or ``principal:token``. Every comparison of
secrets is constant-time; an unknown name costs a bcrypt check too, so timing does not tell
which names exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bsr_team_cache._fs import atomic_write, read_regular_file
from bsr_team_cache.errors import BSRTeamCacheError, ConfigError, UsageError
from bsr_team_cache.team.config import validate_member

USERS_FILE = "users.json"
LOCK_FILE = "users.lock"
TOKEN_PREFIX = "bsrtc_"
TOKEN_BYTES = 32
MIN_PASSWORD = 8
MAX_PASSWORD_BYTES = 72  # bcrypt ignores what follows
MAX_TOKEN_DAYS = 366 * 2
BCRYPT_ROUNDS = 12
MAX_STORE_BYTES = 64 << 20
_DURATION_RE = re.compile(r"(\d{1,6})([mhdw])")
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# A bcrypt hash to check unknown names against (equal cost, never matches a real password).
_DUMMY_HASH = b"$2b$12$C6UzMDM.H6dfI/f/IKxGhuJ2lYOJ7Ow7OLN8Y8HwWNgC0DR5oaxwi"


class AuthenticationFailed(BSRTeamCacheError):
    """Credentials were refused; the message is the reason, safe to log ("bad credentials",
    "token expired", "token revoked")."""


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str  # bcrypt
    site_admin: bool
    created: float


@dataclass(frozen=True)
class CIToken:
    id: str
    principal: str
    sha256: str  # hex of the token's sha256
    created: float
    expires: float
    revoked: bool = False
    description: str = ""

    def state(self, now: float) -> str:
        if self.revoked:
            return "revoked"
        return "expired" if now >= self.expires else "active"


@dataclass(frozen=True)
class Authenticated:
    name: str
    site_admin: bool
    via: str  # "password" or "token"
    token_id: str = ""


def parse_duration(text: str) -> float:
    """``--expires``: ``90m``, ``12h``, ``30d``, ``4w`` as seconds (at most two years)."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"--expires {text!r}: expected a number and m, h, d or w, such as 30d")
    seconds = int(match[1]) * _SECONDS[match[2]]
    if seconds <= 0 or seconds > MAX_TOKEN_DAYS * 86400:
        raise UsageError(f"--expires {text!r}: expected more than 0 and at most {MAX_TOKEN_DAYS}d")
    return float(seconds)


def check_password(password: str) -> bytes:
    raw = password.encode()
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password is shorter than {MIN_PASSWORD} characters")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise UsageError(
            f"the password is {len(raw)} bytes long; bcrypt uses only the first"
            f" {MAX_PASSWORD_BYTES}: choose a shorter one"
        )
    if "\n" in password or "\r" in password or "\0" in password:
        raise UsageError("the password has a line break or NUL character")
    return raw


def _bcrypt():  # imported when a password is hashed or checked, not for `auth list`
    import bcrypt

    return bcrypt


class CredentialStore:
    """``users.json`` under ``state_dir``; every change re-reads the file under the lock, so
    that the CLI and a running server can both use it."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        rounds: int = BCRYPT_ROUNDS,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / USERS_FILE
        self._clock = clock
        self._rounds = rounds
        # (name, hmac of the password) -> the hash it matched: a client that asks for many
        # tokens pays bcrypt once. Keyed with a per-process secret, kept in memory only.
        self._verified: dict[tuple[str, bytes], tuple[str, float]] = {}
        self._cache_key = secrets.token_bytes(32)
        self._mutex = threading.Lock()
        self._loaded: tuple[tuple[int, int, int], dict] | None = None

    # -- the file --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        import fcntl

        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict:
        """The store's data (cached while the file is unchanged)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return {"users": {}, "tokens": []}
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        with self._mutex:
            if self._loaded is not None and self._loaded[0] == stamp:
                return self._loaded[1]
        try:
            data = json.loads(read_regular_file(self.path, MAX_STORE_BYTES))
            users = {n: User(**u) for n, u in data["users"].items()}
            tokens = [CIToken(**t) for t in data["tokens"]]
        except (ValueError, KeyError, TypeError, BSRTeamCacheError) as exc:
            raise ConfigError(self.path, f"unreadable credential store ({exc})") from None
        parsed = {"users": users, "tokens": tokens}
        with self._mutex:
            self._loaded = (stamp, parsed)
        return parsed

    def _write(self, data: dict) -> None:
        payload = {
            "schema": 1,
            "users": {n: asdict(u) for n, u in sorted(data["users"].items())},
            "tokens": [asdict(t) for t in data["tokens"]],
        }
        atomic_write(self.path, json.dumps(payload, indent=1).encode() + b"\n", fsync=True)
        os.chmod(self.path, 0o600)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict]:
        with self._locked(exclusive=True):
            current = self._read()
            data = {"users": dict(current["users"]), "tokens": list(current["tokens"])}
            yield data
            self._write(data)

    # -- users -----------------------------------------------------------------------------
    def add_user(self, name: str, password: str, *, site_admin: bool = False) -> User:
        validate_member(name)
        hashed = _bcrypt().hashpw(check_password(password), _bcrypt().gensalt(self._rounds))
        with self._changing() as data:
            if name in data["users"]:
                raise UsageError(f"user {name!r} exists already (remove-user it first)")
            user = User(name, hashed.decode(), site_admin, self._clock())
            data["users"][name] = user
        return user

    def remove_user(self, name: str) -> int:
        """Remove a user and revoke their tokens; returns how many tokens were revoked."""
        with self._changing() as data:
            if data["users"].pop(name, None) is None:
                raise UsageError(f"no user named {name!r}")
            return self._revoke(data, lambda t: t.principal == name)

    def users(self) -> list[User]:
        with self._locked(exclusive=False):
            return sorted(self._read()["users"].values(), key=lambda u: u.name)

    # -- tokens ----------------------------------------------------------------------------
    def add_token(
        self, principal: str, *, lifetime: float, description: str = ""
    ) -> tuple[CIToken, str]:
        """A new token for ``principal`` and its secret (shown once, never stored)."""
        validate_member(principal)
        if not 0 < lifetime <= MAX_TOKEN_DAYS * 86400:
            raise UsageError(f"a token expires after more than 0 and at most {MAX_TOKEN_DAYS} days")
        if len(description) > 200 or not description.isprintable():
            raise UsageError("--description: at most 200 printable characters")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        token = CIToken(
            id="tok-" + secrets.token_hex(6),
            principal=principal,
            sha256=hashlib.sha256(secret.encode()).hexdigest(),
            created=now,
            expires=now + lifetime,
            description=description,
        )
        with self._changing() as data:
            data["tokens"].append(token)
        return token, secret

    def revoke_token(self, token_id: str) -> None:
        with self._changing() as data:
            if not self._revoke(data, lambda t: t.id == token_id):
                raise UsageError(f"no active token with id {token_id!r} (see `auth list`)")

    def revoke_tokens_of(self, principal: str) -> int:
        with self._changing() as data:
            return self._revoke(data, lambda t: t.principal == principal)

    @staticmethod
    def _revoke(data: dict, chosen: Callable[[CIToken], bool]) -> int:
        count = 0
        for index, token in enumerate(data["tokens"]):
            if chosen(token) and not token.revoked:
                data["tokens"][index] = replace(token, revoked=True)
                count += 1
        return count

    def tokens(self) -> list[CIToken]:
        with self._locked(exclusive=False):
            return list(self._read()["tokens"])

    # -- authentication --------------------------------------------------------------------
    def authenticate(self, name: str, secret: str) -> Authenticated:
        """Who ``name:secret`` is; AuthenticationFailed (with the reason) if nobody."""
        data = self._read()
        if secret.startswith(TOKEN_PREFIX):
            return self._token_login(data, name, secret)
        return self._password_login(data, name, secret)

    def _token_login(self, data: dict, name: str, secret: str) -> Authenticated:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        found = None
        for token in data["tokens"]:
            same_hash = hmac.compare_digest(token.sha256, digest)
            if same_hash and hmac.compare_digest(token.principal.encode(), name.encode()):
                found = token
        if found is None:
            raise AuthenticationFailed("bad credentials")
        if found.revoked:
            raise AuthenticationFailed("token revoked")
        if self._clock() >= found.expires:
            raise AuthenticationFailed("token expired")
        return Authenticated(found.principal, False, "token", found.id)

    def _password_login(self, data: dict, name: str, password: str) -> Authenticated:
        user = data["users"].get(name)
        stored = user.password_hash if user is not None else _DUMMY_HASH.decode()
        raw = password.encode()
        key = (name, hmac.new(self._cache_key, raw, hashlib.sha256).digest())
        now = time.monotonic()
        with self._mutex:
            cached = self._verified.get(key)
        if cached and cached[0] == stored and cached[1] > now and user is not None:
            return Authenticated(user.name, user.site_admin, "password")
        try:
            ok = len(raw) <= MAX_PASSWORD_BYTES and _bcrypt().checkpw(raw, stored.encode())
        except ValueError:  # a damaged hash in the store: nobody logs in with it
            ok = False
        if not ok or user is None:
            raise AuthenticationFailed("bad credentials")
        with self._mutex:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[key] = (stored, now + 300)
        return Authenticated(user.name, user.site_admin, "password")


def default_state_dir(env: dict[str, str]) -> Path:
    """``$BSR_TEAM_CACHE_AUTH_STATE``, else ``auth`` beside the embedded registry's default
    place (``$XDG_DATA_HOME/bsr-team-cache/auth``)."""
    if env.get("BSR_TEAM_CACHE_AUTH_STATE"):
        return Path(env["BSR_TEAM_CACHE_AUTH_STATE"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".local/share")
    return Path(base) / "bsr-team-cache" / "auth"
