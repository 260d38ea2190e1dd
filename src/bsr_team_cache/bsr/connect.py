"""Connect unary calls (binary protobuf) over HTTP/1.1, as the buf CLI makes them.

Why httpx + protobuf rather than ``connectrpc``: the buf CLI uses only unary RPCs with
``Content-Type: application/proto``, which is a plain POST; httpx gives a pooled, HTTP/1.1
client with precise timeouts and TLS control, and the generated ``_pb2`` messages give the
binary encoding. That is two small, well-kept dependencies, no code generator at run time, and
one seam (``httpx.BaseTransport``) that tests and benchmarks can use.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from google.protobuf.message import DecodeError, Message

from bsr_team_cache._deadline import deadline_scope
from bsr_team_cache._http import (
    abandoned,
    backoff_delay,
    describe_transport_error,
    guarded_client,
    read_body,
)
from bsr_team_cache._http import retry_after as retry_after_header
from bsr_team_cache._wire import USER_AGENT, default_ssl_context
from bsr_team_cache.bsr.auth import token_for_host
from bsr_team_cache.errors import (
    BSRError,
    ContentTooLargeError,
    InvalidContentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
    remote_text,
)
from bsr_team_cache.limits import limits

M = TypeVar("M", bound=Message)

# Connect error codes (connectrpc.com/docs/protocol#error-codes) from an HTTP status, used when
# the body carries no JSON error.
_HTTP_TO_CODE = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "unimplemented",
    408: "deadline_exceeded",
    409: "aborted",
    412: "failed_precondition",
    413: "resource_exhausted",
    415: "internal",
    429: "unavailable",
    431: "resource_exhausted",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}
_RETRYABLE_CODES = {"unavailable", "resource_exhausted", "internal", "unknown", "deadline_exceeded"}
_MAX_WARNINGS = 20  # distinct buf-warning-bin texts kept between reports (a server could vary them)


class ConnectTransport:
    """Makes Connect unary calls to any registry host, with auth, timeouts and retries."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        insecure_hosts: frozenset[str] | set[str] = frozenset(),
        token_provider: Callable[[str], str | None] = token_for_host,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool | None = None,
        max_connections: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._timeout = timeout
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._insecure_hosts = frozenset(insecure_hosts)
        self._token_provider = token_provider
        self._sleep = sleep
        self.warnings: list[str] = []  # what servers said in buf-warning-bin, once each
        self._client = guarded_client(
            transport=transport,
            verify=default_ssl_context() if verify is None else verify,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=8),
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ConnectTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _note_warning(self, resp: httpx.Response, host: str) -> None:
        """The BSR's ``buf-warning-bin`` header (base64, as Connect sends binary headers)."""
        encoded = resp.headers.get("buf-warning-bin")
        if not encoded:
            return
        try:
            padded = encoded + "=" * (-len(encoded) % 4)
            text = base64.b64decode(padded).decode("utf-8", "replace")
        except ValueError:
            return
        warning = f"{host}: {remote_text(text)}"
        if warning not in self.warnings and len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(warning)

    def url(self, host: str, service: str, method: str) -> str:
        scheme = "http" if host in self._insecure_hosts else "https"
        return f"{scheme}://{host}/{service}/{method}"

    def call(
        self,
        host: str,
        service: str,
        method: str,
        request: Message,
        response_type: type[M],
    ) -> M:
        """One unary call; the answer is refused beyond the response limit as it arrives, and
        the call is bounded by the request deadline."""
        body = request.SerializeToString()
        # As buf sends them: no Connect-Timeout-Ms (our deadlines are our own; a server-side
        # timeout would cut a large Download over a slow link), no buf-version (we are not buf).
        headers = {
            "Content-Type": "application/proto",
            "Connect-Protocol-Version": "1",
            "Accept-Encoding": "gzip",
        }
        token = self._token_provider(host)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = self.url(host, service, method)
        what = f"{service.rsplit('.', 1)[-1]}.{method} on {host}"
        last_error: BSRError | None = None
        for attempt in range(self._max_attempts):
            retry_after: float | None = None
            try:
                with deadline_scope(limits().request_seconds):
                    request_ = self._client.build_request(
                        "POST", url, content=body, headers=headers
                    )
                    resp = self._client.send(request_, stream=True)
                    try:
                        ok = resp.status_code == 200
                        limit = limits().max_response_bytes if ok else 1 << 20
                        content = read_body(resp, limit, what)
                    finally:
                        resp.close()
            except httpx.TimeoutException as exc:
                last_error = UnavailableError(
                    f"{what}: timed out ({exc})", code="deadline_exceeded", host=host
                )
                if abandoned(exc):  # too slow, or out of time: another try would be too
                    raise last_error from None
            except httpx.TransportError as exc:
                last_error = UnavailableError(
                    f"{what}: cannot connect ({describe_transport_error(exc)})",
                    code="unavailable",
                    host=host,
                )
            except ContentTooLargeError as exc:
                raise ContentTooLargeError(
                    f"{exc} (raise the limit if this BSR really sends such answers)"
                ) from None
            else:
                self._note_warning(resp, host)
                if resp.status_code == 200:
                    content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
                    if content_type.lower() != "application/proto":
                        # As connect-go: an answer in another codec is not ours to parse.
                        raise InvalidContentError(
                            f"{what}: the answer is {remote_text(content_type, 60)!r},"
                            " not application/proto"
                        )
                    message = response_type()
                    try:
                        message.ParseFromString(content)
                    except (DecodeError, RecursionError) as exc:
                        raise InvalidContentError(
                            f"{what}: malformed response ({remote_text(exc, 200)})"
                        ) from None
                    return message
                last_error = _error_from_response(resp, content, what, host)
                retry_after = retry_after_header(resp)
                if last_error.code not in _RETRYABLE_CODES and resp.status_code != 429:
                    raise last_error
            if attempt + 1 < self._max_attempts:
                self._sleep(backoff_delay(attempt, self._backoff, self._max_backoff, retry_after))
        assert last_error is not None
        if isinstance(last_error, UnavailableError):
            raise UnavailableError(
                f"{last_error} (gave up after {self._max_attempts} attempts)",
                code=last_error.code,
                host=host,
            )
        raise last_error


def _error_from_response(resp: httpx.Response, content: bytes, what: str, host: str) -> BSRError:
    code = _HTTP_TO_CODE.get(resp.status_code, "unknown")
    message = ""
    if resp.headers.get("content-type", "").startswith("application/json"):
        try:
            payload = json.loads(content)
            code = remote_text(payload.get("code", code), 40)
            message = remote_text(payload.get("message", ""))
        except (ValueError, AttributeError, RecursionError):
            pass
    if resp.status_code == 429:
        code = "resource_exhausted" if code == "unavailable" else code
    detail = f"{what}: {code}" + (f": {message}" if message else "")
    if code == "not_found":
        return NotFoundError(detail, code=code, host=host)
    if code == "unauthenticated":
        return UnauthenticatedError(
            f"{detail} (set BUF_TOKEN or add 'machine {host}' to ~/.netrc)", code=code, host=host
        )
    if code == "permission_denied":
        return PermissionDeniedError(
            f"{detail} (the token may not read this module)", code=code, host=host
        )
    if code in ("unavailable", "resource_exhausted", "deadline_exceeded"):
        return UnavailableError(detail, code=code, host=host)
    return BSRError(detail, code=code, host=host)
