"""``bsr-team-cache auth-server``: the Docker registry token service for a team registry.

``GET /token?service=…&scope=…`` (HTTP Basic ``name:password`` or ``principal:CI-token``)
answers ``{"token", "access_token", "expires_in", "issued_at"}``: a token granting, of the
scopes asked, exactly what auth/policy.py allows; a scope not allowed is left out, and the
registry then refuses the request itself (401/403). Bad or missing credentials are a 401
with ``WWW-Authenticate: Basic``.

``POST /notifications`` receives Distribution's notification envelopes (authenticated by a
shared secret the registry sends in its ``Authorization`` header) and records each push and
pull (auth/notifications.py).

The team configurations come from the registry itself: the server holds the signing key, so
it mints its own tokens to read ``teams/<T>/config`` (and the catalog, to find every team's
share grants), and caches what it read for ``config_cache_seconds``. Every token request is
audited (one ``grant`` and/or ``refuse`` record per team touched) in the state directory's
``audit.jsonl``; the records of each team ship to ``teams/<T>/audit`` every
``audit_ship_seconds`` and at shutdown, as a machine's records do with ``sync``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from bsr_team_cache._http import same_origin
from bsr_team_cache.audit import log as audit_log
from bsr_team_cache.audit.team import audit_repository
from bsr_team_cache.audit.team import ship as ship_audit
from bsr_team_cache.auth.notifications import (
    MAX_BODY,
    EnvelopeError,
    audit_member,
    parse_envelope,
)
from bsr_team_cache.auth.policy import (
    MAX_NAME,
    REPOSITORY_NAME_RE,
    Decision,
    Principal,
    Scope,
    decide,
    parse_scope,
    share_claims,
)
from bsr_team_cache.auth.tokens import Access, SigningKey, issue_token
from bsr_team_cache.auth.users import AuthenticationFailed, CredentialStore
from bsr_team_cache.errors import BSRTeamCacheError, RegistryError
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.url import in_namespace, parse_http_registry_url
from bsr_team_cache.team.config import TeamConfig, read_team_config, validate_team_name
from bsr_team_cache.usage.events import format_time

# The subject of the server's own tokens: a colon cannot be in a member name (nor in an HTTP
# Basic user name), so no user can be it.
SELF_SUBJECT = "auth-server:self"
MAX_SCOPES = 64
MAX_QUERY = 16 << 10
MAX_CATALOG_PAGES = 100
CATALOG_PAGE = 1000
_SELF_PATH = re.compile(r"^/v2/(?P<name>.+)/(?:manifests|blobs|tags)/")
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass
class ServerOptions:
    registry: str  # the registry's URL (its path, if any, is the default namespace)
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 5001
    service: str = "bsr-team-cache"
    issuer: str = "bsr-team-cache-auth"
    namespace: str | None = None
    token_lifetime: int = 300
    config_cache_seconds: float = 5.0
    audit_ship_seconds: float = 10.0
    notifications_token: str = field(default="", repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False  # plain http to a registry that is not on loopback

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def _log(message: str) -> None:
    print(f"auth-server: {message}", file=sys.stderr, flush=True)


# -- the server's own access to the registry -----------------------------------------------


class SelfTokens:
    """Tokens the server mints for its own registry requests, cached until near expiry."""

    def __init__(self, key: SigningKey, options: ServerOptions) -> None:
        self._key, self._options = key, options
        self._cache: dict[Access, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def header(self, access: Access) -> str:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(access)
            if cached and cached[1] > now:
                return cached[0]
        lifetime = max(self._options.token_lifetime, 120)
        issued = issue_token(
            self._key,
            issuer=self._options.issuer,
            service=self._options.service,
            subject=SELF_SUBJECT,
            access=[access],
            lifetime=lifetime,
        )
        value = f"Bearer {issued.token}"
        with self._lock:
            self._cache[access] = (value, now + lifetime - 60)
        return value


def self_access(method: str, path: str) -> Access | None:
    """What a registry request of the server's own needs: the catalog, or pull (reads),
    pull+push (writes) or delete on the repository its path names."""
    if path == "/v2/_catalog":
        return Access("registry", "catalog", ("*",))
    match = _SELF_PATH.match(path)
    if match is None:
        return None
    if method in ("GET", "HEAD"):
        actions: tuple[str, ...] = ("pull",)
    elif method == "DELETE":
        actions = ("delete",)
    else:
        actions = ("pull", "push")
    return Access("repository", match["name"], actions)


class SelfAuthTransport(httpx.HTTPTransport):
    """Adds the server's own token to each request for the registry's origin."""

    def __init__(self, tokens: SelfTokens, origin: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._tokens = tokens
        self._origin = httpx.URL(origin)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        own = same_origin(request.url, self._origin)
        access = self_access(request.method, request.url.path) if own else None
        if access is not None and "Authorization" not in request.headers:
            request.headers["Authorization"] = self._tokens.header(access)
        return super().handle_request(request)


# A refused request re-reads configurations older than this (seconds) before it is refused.
REFUSAL_RECHECK = 0.05


class RegistryTeamConfigs:
    """The team configurations in the registry (``policy.TeamConfigs``), each cached for
    ``ttl`` seconds; one that cannot be read counts as none (and is logged)."""

    def __init__(
        self,
        registry: HTTPRegistry,
        catalog: Callable[[], list[str]],
        namespace: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry, self._catalog = registry, catalog
        self._namespace, self._ttl, self._clock = namespace, ttl, clock
        self._configs: dict[str, tuple[float, TeamConfig | None]] = {}
        self._teams: tuple[float, list[str]] | None = None
        # Bumped by each forget: a read that began before it must not cache what it read (it
        # may be the configuration the forget was for).
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, team: str) -> TeamConfig | None:
        now = self._clock()
        with self._lock:
            cached, generation = self._configs.get(team), self._generation
        if cached and cached[0] > now:
            return cached[1]
        try:
            config = read_team_config(self._registry, team, self._namespace)
        except BSRTeamCacheError as exc:
            _log(f"team {team}: configuration unreadable, treated as none: {exc}")
            config = None
        with self._lock:
            if generation == self._generation:
                self._configs[team] = (now + self._ttl, config)
        return config

    def forget_older_than(
        self, age: float, teams: Iterable[str] = (), *, team_list: bool = False
    ) -> bool:
        """Drop what was read more than ``age`` seconds ago of ``teams``' configurations (and
        of the list of teams, with ``team_list``); whether anything was dropped. Only what a
        refusal depends on is read again: a refused request (any user can make one) must not
        make the server re-read every team and the whole catalog."""
        read_before = self._clock() - age
        with self._lock:
            old = [
                t
                for t in set(teams)
                if t in self._configs and self._configs[t][0] - self._ttl < read_before
            ]
            for team in old:
                del self._configs[team]
            stale_list = (
                team_list and self._teams is not None and self._teams[0] - self._ttl < read_before
            )
            if stale_list:
                self._teams = None
            if old or stale_list or age <= 0:  # age 0: a read in flight is stale as well
                self._generation += 1
        return bool(old) or stale_list

    def teams(self) -> list[str]:
        now = self._clock()
        with self._lock:
            cached, generation = self._teams, self._generation
        if cached and cached[0] > now:
            return cached[1]
        try:
            names = self._catalog()
        except BSRTeamCacheError as exc:
            _log(f"catalog unreadable: {exc}")
            names = []
        prefix = in_namespace(self._namespace, "teams/")
        found = []
        for name in names:
            team, slash, rest = name.removeprefix(prefix).partition("/")
            if name.startswith(prefix) and slash and rest == "config":
                found.append(team)
        with self._lock:
            if generation == self._generation:
                self._teams = (now + self._ttl, found)
        return found

    def all(self) -> Iterable[TeamConfig]:
        for team in self.teams():
            config = self.get(team)
            if config is not None:
                yield config


def read_catalog(client: httpx.Client, base: str) -> list[str]:
    """Every repository name the registry lists, page by page."""
    names: list[str] = []
    url = f"{base}/v2/_catalog?n={CATALOG_PAGE}"
    for _ in range(MAX_CATALOG_PAGES):
        try:
            resp = client.get(url)
        except httpx.TransportError as exc:
            raise RegistryError(f"{base}: catalog unreachable ({exc})") from None
        if resp.status_code != 200:
            raise RegistryError(f"{base}: catalog answered {resp.status_code}")
        try:
            page = resp.json()["repositories"]
        except (ValueError, KeyError, TypeError):
            raise RegistryError(f"{base}: catalog answer is not a repository list") from None
        if not isinstance(page, list):
            raise RegistryError(f"{base}: catalog answer is not a repository list")
        names.extend(n for n in page if isinstance(n, str))
        link = _NEXT_LINK.search(resp.headers.get("Link", ""))
        if link is None:
            return names
        url = str(httpx.URL(base).join(link[1]))
        if not url.startswith(base + "/"):
            raise RegistryError(f"{base}: catalog link points elsewhere")
    return names


# -- the token service -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def _json_answer(status: int, payload: dict, *extra: tuple[str, str]) -> Answer:
    body = json.dumps(payload).encode()
    return Answer(status, body, (("Content-Type", "application/json"), *extra))


def _error(status: int, code: str, message: str, *extra: tuple[str, str]) -> Answer:
    return _json_answer(status, {"errors": [{"code": code, "message": message}]}, *extra)


def repository_team(name: str, namespace: str) -> str:
    """The team of ``teams/<T>/…`` under the namespace; "" for any other name."""
    prefix = in_namespace(namespace, "teams/")
    if not name.startswith(prefix):
        return ""
    team, slash, rest = name[len(prefix) :].partition("/")
    try:
        return validate_team_name(team) if slash and rest else ""
    except BSRTeamCacheError:
        return ""


class AuthService:
    """What the HTTP handler calls: token requests, notifications, audit shipping."""

    def __init__(
        self,
        options: ServerOptions,
        *,
        key: SigningKey,
        store: CredentialStore,
        configs: RegistryTeamConfigs,
        registry: HTTPRegistry,
    ) -> None:
        self.options = options
        self.namespace = (options.namespace or "").strip("/")
        self.key, self.store, self.configs, self.registry = key, store, configs, registry
        self._pending: set[str] = set(self._teams_in_log())
        self._pending_lock = threading.Lock()
        self._ship_lock = threading.Lock()
        tag_hash = hashlib.sha256(f"{options.issuer}\0{options.service}".encode()).hexdigest()
        self.audit_tag = f"auth-server.{tag_hash[:16]}"

    # -- GET /token ----------------------------------------------------------------------
    def token(self, query: str, authorization: str | None) -> Answer:
        if len(query) > MAX_QUERY:
            return _error(400, "invalid_request", "query too long")
        params = parse_qs(query, keep_blank_values=True)
        service = params.get("service", [self.options.service])[0]
        if service != self.options.service:
            return _error(400, "invalid_request", f"unknown service {service[:100]!r}")
        texts = [s for value in params.get("scope", []) for s in value.split(" ") if s]
        if len(texts) > MAX_SCOPES:
            return _error(400, "invalid_request", f"more than {MAX_SCOPES} scopes")
        scopes = [s for s in (parse_scope(t) for t in texts) if s is not None]
        claimed, secret = _basic(authorization)
        if claimed is None:
            self._refuse_all("anonymous", scopes, "anonymous access is refused")
            return self._unauthorized("credentials required")
        try:
            who = self.store.authenticate(claimed, secret)
        except AuthenticationFailed as exc:
            self._refuse_all(audit_member(claimed), scopes, str(exc))
            return self._unauthorized(str(exc))
        principal = Principal(who.name, who.site_admin)
        decisions = [decide(principal, s, self.configs, self.namespace) for s in scopes]
        if self._forget_for_recheck(decisions):
            # A refusal is checked against fresh configurations: an admin's change (a new
            # member, a share) takes effect at once, not after the cache period.
            decisions = [decide(principal, s, self.configs, self.namespace) for s in scopes]
        self._audit(principal.name, decisions)
        issued = issue_token(
            self.key,
            issuer=self.options.issuer,
            service=self.options.service,
            subject=principal.name,
            access=_access(decisions),
            lifetime=self.options.token_lifetime,
        )
        return _json_answer(
            200,
            {
                "token": issued.token,
                "access_token": issued.token,
                "expires_in": issued.expires_in,
                "issued_at": format_time(issued.issued_at),
            },
            ("Cache-Control", "no-store"),
        )

    def _forget_for_recheck(self, decisions: list[Decision]) -> bool:
        """Forget the configurations the refused decisions read (a share's: every team's, so
        the list of teams too) if they are older than REFUSAL_RECHECK; whether any were."""
        refused = [d for d in decisions if d.refused]
        if not refused:
            return False
        teams = {d.team for d in refused if d.team}
        shares = any(_is_share(d.scope.name, self.namespace) for d in refused)
        if shares:
            teams.update(self.configs.teams())
        return self.configs.forget_older_than(REFUSAL_RECHECK, teams, team_list=shares)

    def _unauthorized(self, message: str) -> Answer:
        challenge = ("WWW-Authenticate", f'Basic realm="{self.options.service}"')
        return _error(401, "UNAUTHORIZED", message, challenge)

    def _refuse_all(self, member: str, scopes: list[Scope], reason: str) -> None:
        decisions = [
            Decision(s, repository_team(s.name, self.namespace), (), s.actions, reason)
            for s in scopes
        ]
        if not decisions:  # a refused login check: one refusal (``_audit`` would add a grant)
            self._record("", member, "refuse", [], f"error: {reason}")
            _log(f"refused {member}: {reason}")
            return
        self._audit(member, decisions)

    def _audit(self, member: str, decisions: list[Decision]) -> None:
        """One ``grant`` record per team with granted scopes, one ``refuse`` per team with
        refused ones; a request without scopes (a login check) is one ``grant``."""
        if not decisions:
            self._record("", member, "grant", [], "ok")
            return
        by_team: dict[str, list[Decision]] = {}
        for decision in decisions:
            by_team.setdefault(decision.team, []).append(decision)
        for team, chosen in by_team.items():
            granted = [shown_scope(d.scope, d.granted) for d in chosen if d.granted]
            refused = [d for d in chosen if d.refused]
            if granted:
                self._record(team, member, "grant", granted, "ok")
            if refused:
                reasons = "; ".join(dict.fromkeys(d.reason for d in refused))
                refs = [shown_scope(d.scope, d.refused) for d in refused]
                self._record(team, member, "refuse", refs, f"error: {reasons}")
                for ref, decision in zip(refs, refused, strict=True):
                    _log(f"refused {member}: {ref} ({decision.reason})")

    def _record(self, team: str, member: str, operation: str, refs: list[str], result: str):
        warnings: list[str] = []
        audit_log.record(
            self.options.state_dir,
            team=team,
            member=member,
            operation=operation,
            refs=refs,
            result=result,
            warnings=warnings,
        )
        for warning in warnings:
            _log(warning)
        if team:
            with self._pending_lock:
                self._pending.add(team)

    # -- POST /notifications -----------------------------------------------------------------
    def notifications(self, authorization: str | None, body: bytes) -> Answer:
        expected = self.options.notifications_token
        if not expected:
            return _error(404, "NOT_FOUND", "notifications are not enabled (--notifications-token)")
        given = (authorization or "").encode()
        if not hmac.compare_digest(given, f"Bearer {expected}".encode()):
            _log("refused a notification: wrong or missing Authorization")
            return _error(401, "UNAUTHORIZED", "notifications need the shared secret")
        try:
            envelope = parse_envelope(body, own_actor=SELF_SUBJECT)
        except EnvelopeError as exc:
            return _error(400, "invalid_request", str(exc))
        for event in envelope.events:
            team = self.notification_team(event.repository)
            if event.operation == "registry-push" and event.repository == in_namespace(
                self.namespace, f"teams/{team}/config"
            ):
                # A new configuration (a member removed, a share granted) applies to the next
                # token request, not after the cache period: forgotten before the push is
                # recorded, so that no request answered after the record sees the old one.
                self.configs.forget_older_than(0.0, [team], team_list=True)
            self._record(team, event.member, event.operation, list(event.refs), "ok")
        if envelope.skipped:
            _log(f"notification: {envelope.skipped} events skipped (other actions or malformed)")
        return Answer(200)

    def notification_team(self, repository: str) -> str:
        team = repository_team(repository, self.namespace)
        if team:
            return team
        bundle = repository.rpartition("/")[2]
        if repository == in_namespace(self.namespace, f"shared/organization/bundles/{bundle}"):
            claims = share_claims(self.configs, bundle, repository)
            return claims[0].team if len(claims) == 1 else ""
        return ""

    # -- audit shipping ----------------------------------------------------------------------
    def _teams_in_log(self) -> list[str]:
        """Teams with records in this server's log (some may not have shipped yet)."""
        path = self.options.state_dir / audit_log.FILE_NAME
        teams: set[str] = set()
        if path.exists():
            with open(path, "rb") as f:
                for raw in f:
                    try:
                        team = json.loads(raw).get("team")
                    except (ValueError, AttributeError, RecursionError):
                        continue
                    if isinstance(team, str) and team:
                        teams.add(team)
        return sorted(teams)

    def ship(self) -> int:
        """Ship the new records of every team touched since the last time; returns how many.
        Teams without a configuration keep their records here (no repository is created for
        a name someone made up)."""
        with self._pending_lock:
            teams, self._pending = sorted(self._pending), set()
        shipped = 0
        with self._ship_lock:
            for team in teams:
                if self.configs.get(team) is None:
                    continue
                repo = audit_repository(team, self.namespace)
                try:
                    shipped += ship_audit(
                        self.options.state_dir, self.registry, repo, team=team, tag=self.audit_tag
                    )
                except BSRTeamCacheError as exc:
                    _log(f"audit records of team {team} not shipped yet: {exc}")
                    with self._pending_lock:
                        self._pending.add(team)
        return shipped


def _basic(header: str | None) -> tuple[str | None, str]:
    if not header or header[:6].lower() != "basic ":
        return None, ""
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    name, colon, secret = raw.partition(":")
    if not colon or not name:
        return None, ""
    return name, secret


MAX_SHOWN_NAME = 256  # an audit ref is at most 1024 characters (audit/log.py)


def shown_scope(scope: Scope, actions: Iterable[str]) -> str:
    """A scope as audit records and the log show it. A name that is not a repository name
    (asked for by anyone, anonymous clients too) is escaped and cut: a control character or
    a ref over the audit log's limit would make the whole record unreadable, hiding the
    refusals requested alongside, and a line break would forge lines in the log."""
    name = scope.name
    if len(name) > MAX_NAME or not REPOSITORY_NAME_RE.fullmatch(name):
        name = ascii(name)[1:-1]
        if len(name) > MAX_SHOWN_NAME:
            name = name[: MAX_SHOWN_NAME - 3] + "..."
    return f"{scope.type}:{name}:{','.join(actions)}"


def _is_share(name: str, namespace: str) -> bool:
    return name.startswith(in_namespace(namespace, "shared/organization/bundles/"))


def _access(decisions: list[Decision]) -> list[Access]:
    """The token's ``access`` claim: granted actions per resource, merged."""
    merged: dict[tuple[str, str], dict[str, None]] = {}
    for decision in decisions:
        if decision.granted:
            key = (decision.scope.type, decision.scope.name)
            merged.setdefault(key, {}).update(dict.fromkeys(decision.granted))
    return [Access(kind, name, tuple(actions)) for (kind, name), actions in merged.items()]


# -- HTTP ------------------------------------------------------------------------------------


def _handler(service: AuthService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "bsr-team-cache-auth"
        sys_version = ""
        timeout = 30  # a client that stops sending does not hold a thread for long
        # Headers and body go out in two writes: without this, Nagle's algorithm holds the
        # body until the client's delayed ACK (~40 ms a token on loopback).
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/token":
                self._send(_error(404, "NOT_FOUND", "not found"))
                return
            self._send(service.token(parts.query, self.headers.get("Authorization")))

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/notifications":
                self._send(_error(404, "NOT_FOUND", "not found"))
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._send(_error(411, "invalid_request", "Content-Length required"))
                return
            if not 0 <= length <= MAX_BODY:
                self._send(_error(413, "invalid_request", f"body above {MAX_BODY} bytes"))
                return
            body = self.rfile.read(length)
            self._send(service.notifications(self.headers.get("Authorization"), body))

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # refusals are logged by the service, once each, without credentials

    return Handler


def build_service(options: ServerOptions) -> AuthService:
    key, _ = SigningKey.load_or_create(options.state_dir, options.issuer)
    parsed = parse_http_registry_url(options.registry, insecure=options.insecure)
    tokens = SelfTokens(key, options)
    verify: ssl.SSLContext | bool = True
    if parsed.scheme == "https":
        from bsr_team_cache._wire import default_ssl_context

        verify = default_ssl_context()
    transport = SelfAuthTransport(tokens, parsed.base, verify=verify)
    registry = HTTPRegistry(
        parsed.base, insecure=options.insecure, transport=transport, timeout=10, max_attempts=2
    )
    catalog_client = httpx.Client(transport=transport, timeout=10)
    if options.namespace is None:  # the registry URL's path, as for every other command
        options.namespace = parsed.namespace
    configs = RegistryTeamConfigs(
        registry,
        lambda: read_catalog(catalog_client, parsed.base),
        options.namespace.strip("/"),
        options.config_cache_seconds,
    )
    store = CredentialStore(options.state_dir)
    return AuthService(options, key=key, store=store, configs=configs, registry=registry)


MAX_CONNECTIONS = 64  # token requests at once; Distribution and clients reuse few connections


class BoundedThreadingHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS at once: past that a connection is
    closed at once, so slow clients cannot pile up threads (each waits ``timeout`` per read)."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class AuthServer:
    """The HTTP server and the audit shipper, in threads; :meth:`stop` ships what is left."""

    def __init__(self, service: AuthService) -> None:
        self.service = service
        options = service.options
        self.httpd = BoundedThreadingHTTPServer((options.host, options.port), _handler(service))
        if options.tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(options.tls_cert, options.tls_key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> AuthServer:
        for target in (self.httpd.serve_forever, self._ship_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _ship_loop(self) -> None:
        while not self._stopping.wait(self.service.options.audit_ship_seconds):
            self.service.ship()

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=30)
        self.service.ship()
