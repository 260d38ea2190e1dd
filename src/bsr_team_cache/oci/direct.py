"""Registry reads without the HTTP stack: a cold fetch's first requests.

A machine new to a lock reads one document from the team registry, the lock pack's manifest
(team/packs.py; the modules ride inside it, or in one blob beside it), and needs nothing else
from it; a lock of one large module (googleapis), its manifest and its layer, streamed. Loading
httpx and httpcore costs a process 70-130 ms, as long as the whole restore of a small tarball.
A registry opened from its URL (oci/__init__.py) therefore reads manifests and small blobs
here, and streams large ones, over a plain socket (TLS by the ssl module, loaded for https
only), until its full client is needed for anything else: the pack's request leaves while the
rest of the fetch loads, a layer's request goes on the connection its manifest came by, and a
fetch so served never loads the HTTP stack at all.

It handles only the usual case, HTTP/1.1 with at most one idle connection kept per origin, and
raises NotAnswered for anything else, so that the caller asks the full client (http.py),
which then behaves as always: a proxy configured, a redirect, a status other than 200 and 404,
a challenge other than basic or bearer, a cached token refused, a compressed or malformed
answer, a host name outside ASCII, a connection that cannot be made within 10 s. What it does,
it does as the full client does:

* credentials go to the registry's own origin only (no redirect is followed), a basic password
  only after the registry asked for it, and registry credentials to a token service only over
  https (plain http on loopback);
* tokens come from, and go into, the same cross-process cache (oci/tokens.py), under the same
  key and owner, so the full client reuses a token obtained here;
* once connected, every wait is bounded by the command's deadline and the minimum transfer
  rate (_wire.Pace); a transfer given up for them is the error (RegistryError), not asked again;
* answers are bounded: the header section by 64 KiB, a manifest by the document limit, a token
  answer by 1 MiB, a blob by its size (and 16 MiB), whether sized, chunked or closed by the
  server; a streamed blob is taken only with one Content-Length within its size (else it is the
  full client's), and one cut short is finished by the full client from where it stopped;
* a manifest is checked against the digest the registry states, a blob against its digest (a
  streamed one after its last chunk, by the caller).
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from bsr_team_cache._deadline import deadline_in, deadline_scope, stepped
from bsr_team_cache._wire import (
    SPILL_BYTES,
    USER_AGENT,
    Pace,
    TransferTooSlow,
    default_ssl_context,
)
from bsr_team_cache.errors import BSRTeamCacheError, RegistryError
from bsr_team_cache.limits import limits
from bsr_team_cache.oci._connect import (
    CannotConnect,
    Key,
    Preconnection,
    open_connection,
    quiet,
)
from bsr_team_cache.oci.base import (
    MANIFEST_ACCEPT,
    document_limit,
    manifest_answer,
    registry_error_text,
    validate_oci_digest,
    verify_blob,
)
from bsr_team_cache.oci.credentials import Credentials, credentials_for
from bsr_team_cache.oci.tokens import (
    TokenCache,
    credentials_refused,
    default_token_cache,
    not_authorized,
    parse_challenge,
    principal_of,
    pull_scope,
    registry_origin,
    stored_token,
    token_from_answer,
    token_realm,
    token_request,
)
from bsr_team_cache.oci.url import parse_http_registry_url, redact

if TYPE_CHECKING:
    import ssl  # loaded by default_ssl_context, for https only

HEADER_BYTES = 64 << 10
_TOKEN_ANSWER_BYTES = 1 << 20
_ERROR_ANSWER_BYTES = 64 << 10  # the body of an answer other than the one asked for
_RECEIVE = 64 << 10
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?")
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,15}")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")
_HEADER_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


T = TypeVar("T")
Headers = dict[str, str]


class NotAnswered(Exception):
    """This read did not get a usable answer: ask the full client (the reason is for tests)."""


class Answer:
    """An HTTP answer: status, headers (names in lower case; a repeated one's values joined
    with ", ", as the full client reads them), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def close(self) -> None:
        """Nothing to release: the body was read whole (as Opened.close)."""


class _Connection:
    """A socket read through a buffer, every wait bounded by the pace."""

    def __init__(self, sock: socket.socket, pace: Pace) -> None:
        self.sock, self._pace = sock, pace
        self._buffer = bytearray()
        self._closed = False

    def _fill(self) -> bool:
        if self._closed:
            return False
        self.sock.settimeout(self._pace.bound(None, reading=True))
        try:
            data = self.sock.recv(_RECEIVE)
        except TimeoutError:
            raise self._pace.timed_out() or NotAnswered("timed out") from None
        if not data:
            self._closed = True
            return False
        self._pace.received(len(data))
        self._buffer += data
        return True

    def first_bytes(self) -> None:
        """Wait for the answer to start; NotAnswered if the connection closes first."""
        if not self._buffer and not self._fill():
            raise NotAnswered("the connection closed before answering")

    def reusable(self) -> bool:
        """The answer ended where the data did: the connection may carry another request."""
        return not self._closed and not self._buffer

    def until(self, separator: bytes, limit: int, what: str) -> bytes:
        """The bytes before the next ``separator`` (which is consumed), at most ``limit``."""
        start = 0
        while True:
            end = self._buffer.find(separator, start)
            if end > limit:
                raise NotAnswered(f"{what} is too large")
            if end >= 0:
                found = bytes(self._buffer[:end])
                del self._buffer[: end + len(separator)]
                return found
            if len(self._buffer) >= limit + len(separator):
                raise NotAnswered(f"{what} is too large")
            start = max(0, len(self._buffer) - len(separator) + 1)
            if not self._fill():
                raise NotAnswered(f"the connection closed within {what}")

    def exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise NotAnswered("the connection closed before the body's end")
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def take(self, most: int) -> bytes:
        """What has arrived, at most ``most`` bytes, waiting for some if none has; b"" once
        the connection has closed."""
        if not self._buffer and not self._fill():
            return b""
        data = bytes(self._buffer[:most])
        del self._buffer[:most]
        return data

    def to_end(self, cap: int) -> bytes:
        while len(self._buffer) <= cap and self._fill():
            pass
        if len(self._buffer) > cap:
            raise NotAnswered(f"the answer exceeds {cap} bytes")
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.split(b"\r\n")
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        raise NotAnswered("not an HTTP/1.1 status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise NotAnswered("a malformed header line")  # also an obsolete folded line
        key, text = name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")
        # A repeated field reads as its values joined, as the full client reads it: two
        # Content-Lengths or codings are then malformed, and left to that client.
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(status.group(1)), headers


def _chunked(conn: _Connection, cap: int) -> bytes:
    body = bytearray()
    while True:
        size_text = conn.until(b"\r\n", 1024, "a chunk line").split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise NotAnswered("a malformed chunk size")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > cap:
            raise NotAnswered(f"the answer exceeds {cap} bytes")
        body += conn.exactly(size)
        if conn.exactly(2) != b"\r\n":
            raise NotAnswered("a chunk without its line end")
    trailers = 0  # trailer fields are ignored; a blank line ends them
    while field := conn.until(b"\r\n", HEADER_BYTES, "a trailer field"):
        trailers += len(field) + 2
        if trailers > HEADER_BYTES:
            raise NotAnswered("the trailer section is too large")
    return bytes(body)


def _framing(headers: dict[str, str]) -> int | str | None:
    """How the body ends: its Content-Length, "chunked", or None (at the connection's close);
    NotAnswered for a compressed answer, another transfer coding or a malformed length."""
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        raise NotAnswered("a compressed answer (identity was asked for)")
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.strip().lower() != "chunked":
            raise NotAnswered("a transfer coding other than chunked")
        return "chunked"
    length = headers.get("content-length")
    if length is not None and not _CONTENT_LENGTH.fullmatch(length):
        raise NotAnswered("a malformed Content-Length")
    return None if length is None else int(length)


def _body(conn: _Connection, status: int, headers: dict[str, str], cap: int) -> bytes:
    if status in (204, 304):
        return b""
    framing = _framing(headers)
    if framing == "chunked":
        return _chunked(conn, cap)
    if isinstance(framing, int):
        if framing > cap:
            raise NotAnswered(f"the answer is {framing} bytes, over {cap}")
        return conn.exactly(framing)
    return conn.to_end(cap)


def _streamable_length(status: int, headers: dict[str, str]) -> int:
    """The Content-Length of a 200 answer whose body can be read as it arrives as is: not
    chunked, not compressed; NotAnswered otherwise."""
    if status != 200:
        raise NotAnswered(f"HTTP {status}")  # a redirect, an absent blob: the full client
    framing = _framing(headers)
    if not isinstance(framing, int):
        raise NotAnswered("a blob sent chunked or to the connection's close")
    return framing


class Session:
    """Requests over HTTP/1.1, keeping at most one idle connection per origin for the next
    request to it (a registry's answer to a challenge, then the same read with a token)."""

    def __init__(
        self, tls: Callable[[], ssl.SSLContext], preconnected: Preconnection | None = None
    ) -> None:
        self._tls = tls
        self._idle: dict[tuple[str, str, int], socket.socket] = {}
        self._preconnected = preconnected  # for the first request to its origin

    def close(self) -> None:
        for sock in self._idle.values():
            sock.close()
        self._idle.clear()
        if self._preconnected is not None:
            self._preconnected.close()
            self._preconnected = None

    def _connect(self, key: Key) -> socket.socket:
        """A connection to ``key``: the one opened ahead for it (``preconnected``), else a new
        one (oci/_connect.py); an unreachable host is the full client's to retry and report."""
        ahead = self._preconnected
        try:
            if ahead is not None and ahead.key == key:
                self._preconnected = None
                sock = ahead.take()  # CannotConnect: not tried again here
                if sock is not None and quiet(sock):  # not closed by the server meanwhile
                    return sock
                if sock is not None:
                    sock.close()
            return open_connection(key, self._tls)
        except CannotConnect as exc:
            raise NotAnswered(str(exc)) from None

    def request(
        self, method: str, url: str, headers: dict[str, str], cap: int, body: bytes | None = None
    ) -> Answer:
        """One request to ``url`` (http or https), its answer read whole (at most ``cap`` body
        bytes); NotAnswered for anything unusual. An idle connection the server closed
        meanwhile is replaced once."""

        def read_whole(key: Key, conn: _Connection, status: int, found: Headers) -> Answer:
            data = b"" if method == "HEAD" else _body(conn, status, found, cap)
            if conn.reusable() and "close" not in found.get("connection", "").lower():
                self._idle[key] = conn.sock  # kept: not closed by _exchange
            else:
                conn.sock.close()
            return Answer(status, found, data)

        return self._send(method, url, headers, body, read_whole)

    def open(self, url: str, headers: dict[str, str]) -> Opened:
        """A GET whose body is left to read as it arrives (Opened); NotAnswered as
        ``request``."""

        def keep_open(key: Key, conn: _Connection, status: int, found: Headers) -> Opened:
            return Opened(self, key, conn, status, found)

        return self._send("GET", url, headers, None, keep_open)

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        answer: Callable[[Key, _Connection, int, Headers], T],
    ) -> T:
        if not url.isascii() or not url.isprintable() or " " in url:
            # Never sent: a line break would split the request, and a name outside ASCII would
            # need the IDNA form the full client computes.
            raise NotAnswered("a URL with spaces, control or non-ASCII characters")
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise NotAnswered("a port that is not a number") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
            raise NotAnswered("not a plain http(s) URL")
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        elif port == 0:
            raise NotAnswered("port 0")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"User-Agent: {USER_AGENT}", "Accept-Encoding: identity"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        text = "\r\n".join([*lines, "", ""])
        if not text.isascii() or any("\r" in line or "\n" in line for line in lines):
            raise NotAnswered("a header that is not one line of ASCII")  # never sent
        request = text.encode("ascii") + (body or b"")
        key = (parts.scheme, parts.hostname, port)
        idle = self._idle.pop(key, None)
        if idle is not None and (method not in ("GET", "HEAD") or not quiet(idle)):
            # Not reused when closed by the server or holding what nobody asked for; nor for
            # a request this session never sends twice (a token POST): a close on its way
            # cannot be seen in time, and only a read may be sent again on another connection.
            idle.close()
            idle = None
        if idle is not None:
            with contextlib.suppress(_Unused):  # closed as the read left: once more, anew
                return self._exchange(idle, key, request, answer)
        sock = self._connect(key)
        try:
            return self._exchange(sock, key, request, answer)
        except _Unused as exc:
            raise NotAnswered(str(exc.__cause__ or "no answer")) from None

    def _exchange(
        self,
        sock: socket.socket,
        key: Key,
        request: bytes,
        answer: Callable[[Key, _Connection, int, Headers], T],
    ) -> T:
        """``request`` on ``sock`` and ``answer`` of its status and headers, which takes the
        socket on (keeps it idle, hands it on or closes it); _Unused if the connection failed
        before any byte of an answer came (the request may be sent again on another)."""
        pace = Pace()
        conn = _Connection(sock, pace)
        taken = False
        try:
            sock.settimeout(pace.bound(None, reading=False))
            try:
                sock.sendall(request)
                conn.first_bytes()
            except (OSError, NotAnswered) as exc:
                if isinstance(exc, TimeoutError):
                    raise
                raise _Unused() from exc
            head = conn.until(b"\r\n\r\n", HEADER_BYTES, "the header section")
            status, answer_headers = _parse_head(head)
            if status < 200:
                raise NotAnswered("an interim answer")
            found = answer(key, conn, status, answer_headers)
            taken = True
            return found
        except TimeoutError:
            raise pace.timed_out() or NotAnswered("timed out") from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise NotAnswered(f"{type(exc).__name__}: {exc}") from None
        finally:
            if not taken:
                sock.close()


class Opened:
    """An answer whose body is still on its connection: ``body`` reads it whole (an error's
    few bytes), ``chunks`` as it arrives. A connection read to the end of its body goes back to
    the session for the next request; ``close`` drops one that was not."""

    def __init__(
        self, session: Session, key: Key, conn: _Connection, status: int, headers: Headers
    ) -> None:
        self._session, self._key, self._conn = session, key, conn
        self.status, self.headers = status, headers
        self._open = True

    @property
    def body(self) -> bytes:
        try:
            return _body(self._conn, self.status, self.headers, _ERROR_ANSWER_BYTES)
        except (OSError, ValueError):
            return b""
        finally:
            self.close()

    def chunks(self, size: int) -> Iterator[bytes]:
        """The body's ``size`` bytes (its Content-Length) as they arrive. A connection that
        closes or fails before then raises Interrupted; a transfer given up for the deadline or
        the minimum rate raises TransferTooSlow."""
        received = 0
        try:
            while received < size:
                try:  # a wait past the deadline or the minimum rate: TransferTooSlow
                    piece = self._conn.take(min(size - received, _RECEIVE))
                except (OSError, NotAnswered) as exc:
                    raise Interrupted(f"{exc}, after {received} bytes") from None
                if not piece:
                    raise Interrupted(f"the connection closed after {received} bytes")
                received += len(piece)
                yield piece
            if self._conn.reusable() and "close" not in self.headers.get("connection", "").lower():
                self._session._idle[self._key] = self._conn.sock
                self._open = False  # kept: not closed below
        finally:
            self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._conn.sock.close()


class Interrupted(Exception):
    """A body cut short: the rest may be asked for from where it stopped."""


class _Unused(Exception):
    """The connection failed before any byte of the answer."""


class _Refused(Exception):
    """A verdict on the credentials: ``error`` is what the full client would raise."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(str(error))
        self.error = error


class DirectReader:
    """Reads of one registry (opened from its URL) over one Session, answering its
    challenges as the full client does. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        url: str,
        insecure: bool = False,
        *,
        tls: Callable[[], ssl.SSLContext] = default_ssl_context,
        preconnected: Preconnection | None = None,
    ) -> None:
        parsed = parse_http_registry_url(url, insecure=insecure)
        self.base, self.host, self.namespace = parsed.base, parsed.host, parsed.namespace
        self._origin = registry_origin(parsed.scheme, parsed.host)
        self._where = f"team registry {redact(url)}"
        # Credentials in the URL are kept in memory only (the full client does the same).
        self._given = Credentials(parsed.username, parsed.password) if parsed.username else None
        self._cache: TokenCache | None = None if self._given else default_token_cache()
        self._found: Credentials | None = None
        self._answers: dict[str, str] = {}  # scope -> the Authorization header that worked
        self._session = Session(tls, preconnected)

    def close(self) -> None:
        self._session.close()

    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        """(manifest, media type), or None if the registry has none at ``reference``; as
        HTTPRegistry.read_manifest reads it."""
        name = self._name(repo)
        path = f"/v2/{name}/manifests/{reference}"
        what = f"GET manifest {name}:{reference}"
        answer = self._get(name, path, what, {"Accept": MANIFEST_ACCEPT}, document_limit())
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise NotAnswered(f"HTTP {answer.status}")
        return manifest_answer(
            answer.body,
            reference,
            answer.headers.get("docker-content-digest", ""),
            answer.headers.get("content-type", ""),
            f"{self.host}/{name} manifest",
        )

    def read_blob(self, repo: str, digest: str, max_bytes: int | None = None) -> bytes:
        """The blob, verified, if at most ``max_bytes`` (default: the module limit) and small
        enough to hold in memory (else the full client, which spills to disk, reads it)."""
        name = self._name(repo)
        validate_oci_digest(digest, f"{self.host}/{name}")
        cap = limits().max_module_bytes if max_bytes is None else max_bytes
        if cap > SPILL_BYTES:  # held in memory here; the full client spills it to disk
            raise NotAnswered("a blob that may be too large to hold")
        what = f"GET blob {digest} from {name}"
        answer = self._get(name, f"/v2/{name}/blobs/{digest}", what, {}, cap)
        if answer.status != 200:
            raise NotAnswered(f"HTTP {answer.status}")  # a redirect, an absent blob: full client
        return verify_blob(answer.body, digest, f"{self.host}/{name}")

    def open_blob(
        self, repo: str, digest: str, max_bytes: int, until: float | None = None
    ) -> Iterator[bytes]:
        """The blob's bytes as they arrive, not verified (the caller hashes them all), when the
        registry sends it at once with a length of at most ``max_bytes``; else NotAnswered
        before any byte (a redirect, another status, a chunked or compressed body: the full
        client's). Cut short: Interrupted, saying how many bytes came (the rest may be asked
        for from there); given up for the deadline (``until``, monotonic; by default one
        request's time, as the client's) or the minimum rate: RegistryError."""
        name = self._name(repo)
        validate_oci_digest(digest, f"{self.host}/{name}")
        path = f"/v2/{name}/blobs/{digest}"
        until = deadline_in(limits().request_seconds) if until is None else until
        opened = self._get(name, path, f"GET blob {digest} from {name}", {}, open_body=True)
        assert isinstance(opened, Opened)
        try:
            length = _streamable_length(opened.status, opened.headers)
            if length > max_bytes:
                raise NotAnswered(f"a blob of {length} bytes, over {max_bytes}")
        except NotAnswered:
            opened.close()
            raise
        received = 0
        try:
            for chunk in stepped(opened.chunks(length), until):
                received += len(chunk)
                yield chunk
        except TransferTooSlow as exc:  # in the full client's words
            raise RegistryError(
                f"{self._where}: GET blob {digest}: {exc} ({received} bytes in)"
            ) from None

    def _name(self, repo: str) -> str:
        return f"{self.namespace}/{repo}" if self.namespace else repo

    def _get(
        self,
        name: str,
        path: str,
        what: str,
        headers: dict[str, str],
        cap: int = 0,
        *,
        open_body: bool = False,
    ) -> Answer | Opened:
        """GET ``path``, answering one challenge: the answer read whole (at most ``cap``
        bytes), or with ``open_body`` its body left to read (Opened). Verdicts are the full
        client's errors, with its words (asking again would only repeat them): a transfer given
        up (too slow, or past the deadline), credentials refused (by the token service, or by
        the registry once the challenge was answered)."""
        scope = pull_scope(name)

        def send(auth: dict[str, str]) -> Answer | Opened:
            if open_body:
                return self._session.open(self.base + path, {**headers, **auth})
            return self._session.request("GET", self.base + path, {**headers, **auth}, cap)

        try:
            with deadline_scope(limits().request_seconds):
                sent = self._answers.get(scope)
                if sent is None:
                    token = self._stored(scope, None, None)
                    sent = f"Bearer {token}" if token else None
                auth = {"Authorization": sent} if sent else {}
                answer = send(auth)
                if answer.status == 401 and not sent:
                    answer.close()
                    auth = {"Authorization": self._authorization(scope, answer.headers)}
                    answer = send(auth)
                    if answer.status == 401:
                        detail = registry_error_text(401, answer.body)
                        challenge = answer.headers.get("www-authenticate", "")
                        raise _Refused(
                            not_authorized(self._where, what, self.host, detail, challenge)
                        )
                if answer.status != 401 and auth:
                    self._answers[scope] = auth["Authorization"]
                return answer
        except _Refused as refused:
            raise refused.error from None
        except TransferTooSlow as exc:
            raise RegistryError(f"{self._where}: GET {path}: {exc}") from None
        except BSRTeamCacheError as exc:  # the full client says it, with its own wording
            raise NotAnswered(str(exc)) from None

    # -- credentials, as http.py handles them ----------------------------------------------
    def _credentials(self) -> Credentials:
        if self._given is not None:
            return self._given
        if self._found is None:
            self._found = credentials_for(self.host)
        return self._found

    def _principal(self) -> str:
        return principal_of(self._credentials())

    def _stored(self, scope: str, realm: str | None, service: str | None) -> str | None:
        found = stored_token(self._cache, self._origin, scope, self._principal, realm, service)
        return found.token if found else None

    def _authorization(self, scope: str, headers: dict[str, str]) -> str:
        """The Authorization header that answers the registry's challenge."""
        scheme, params = parse_challenge(headers.get("www-authenticate", ""))
        if scheme == "basic":
            basic = self._credentials().basic()
            if not basic:
                raise NotAnswered("the registry wants a password and there is none")
            return basic
        if scheme != "bearer":
            raise NotAnswered(f"an authentication scheme {scheme!r}")
        realm = token_realm(params, self._where)
        service = params.get("service", "")
        token = self._stored(scope, realm, service)
        if token is None:
            method, url, headers, form = token_request(realm, params, (scope,), self._credentials())
            answer = self._session.request(method, url, headers, _TOKEN_ANSWER_BYTES, form)
            if answer.status in (401, 403):
                detail = registry_error_text(answer.status, answer.body)
                raise _Refused(credentials_refused(self._where, self.host, detail))
            if answer.status != 200:
                raise NotAnswered(f"the token service answered HTTP {answer.status}")
            token, usable = token_from_answer(answer.body, self._where)
            if self._cache is not None:
                self._cache.remember(
                    self._origin, scope, token, usable, realm, service, self._principal()
                )
        return f"Bearer {token}"


__all__ = ["Answer", "DirectReader", "NotAnswered", "Session"]
