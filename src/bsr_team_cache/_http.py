"""HTTP pieces shared by the BSR (Connect) and OCI registry clients: TLS trust, retry timing,
deadlines, and reading answers against a size cap.

Deadlines: httpx's timeouts bound each read, so a server sending one byte every few seconds
would hold a request forever. Every connection our clients open goes through a guarded stream
that also enforces (1) the deadline of the current request and command (a context variable,
set with ``deadline_scope``) and (2) a minimum transfer rate (``Limits.low_speed_*``).
"""

from __future__ import annotations

import math
import random
import ssl
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

from bsr_team_cache._deadline import _deadline
from bsr_team_cache._wire import SPILL_BYTES, Pace, TransferTooSlow
from bsr_team_cache.errors import ContentTooLargeError, InvalidContentError, remote_text
from bsr_team_cache.limits import INFLATE_RATIO, INFLATE_RATIO_FLOOR


class TransferAbandoned(httpcore.ReadTimeout):
    """A transfer given up by the guard (too slow, or past the deadline): not worth a retry."""


def abandoned(exc: BaseException) -> bool:
    """Whether ``exc`` (an httpx error) comes from the guard giving up on a transfer."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, TransferAbandoned):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


class _GuardedStream(httpcore.NetworkStream):
    """A connection that enforces the current deadline and a minimum transfer rate (Pace)."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._pace = Pace()

    def _bound(self, timeout: float | None, *, reading: bool) -> float:
        try:
            return self._pace.bound(timeout, reading=reading)
        except TransferTooSlow as exc:
            raise TransferAbandoned(str(exc)) from None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        bound = self._bound(timeout, reading=True)
        try:
            data = self._stream.read(max_bytes, bound)
        except httpcore.ReadTimeout:
            reason = self._pace.timed_out()
            if reason is not None:
                raise TransferAbandoned(str(reason)) from None
            raise
        self._pace.received(len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # A write starts (or continues) a request: the answer's rate is measured from here.
        self._pace.request_started()
        self._stream.write(buffer, self._bound(timeout, reading=False))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bound = self._bound(timeout, reading=False)
        return _GuardedStream(self._stream.start_tls(ssl_context, server_hostname, bound))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        left = _deadline.get() - time.monotonic()
        if left <= 0:
            raise TransferAbandoned("the deadline passed")
        timeout = left if timeout is None else min(timeout, left)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _GuardedStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return _GuardedStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_client(**kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` whose connections honour deadlines and the minimum rate. httpx has
    no public way to give its pool a network backend, so the pool's backend is wrapped in place
    (httpx and httpcore are pinned; tests/test_http.py fails if this stops working);
    transports passed in by tests and benchmarks are left as they are."""
    client = httpx.Client(**kwargs)
    for transport in [client._transport, *client._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _GuardedBackend):
            pool._network_backend = _GuardedBackend(backend)  # type: ignore[union-attr]
    return client


_INFLATE_STEP = 1 << 20


def _gunzip(chunks: Iterable[bytes], what: str) -> Iterator[bytes]:
    """Decompress in steps of at most 1 MiB of output: a small gzip bomb never expands in one
    go (httpx's own decoder inflates each network chunk whole), and one that inflates past
    the ratio no honest answer reaches is refused early, not at the size cap."""
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header
    consumed = produced = 0
    try:
        for chunk in chunks:
            data = chunk
            while data:
                out = inflater.decompress(data, _INFLATE_STEP)
                consumed += len(data) - len(inflater.unconsumed_tail)
                data = inflater.unconsumed_tail
                produced += len(out)
                if produced > INFLATE_RATIO_FLOOR and produced > INFLATE_RATIO * max(1, consumed):
                    raise InvalidContentError(
                        f"{what}: the answer inflates {produced // max(1, consumed)} times its"
                        " compressed size (a decompression bomb)"
                    )
                if out:
                    yield out
        rest = inflater.flush()
        if rest:
            yield rest
    except zlib.error as exc:
        raise InvalidContentError(f"{what}: the answer's gzip encoding is broken ({exc})") from None


def body_chunks(resp: httpx.Response, what: str) -> Iterator[bytes]:
    """A streamed response's body, decoded (identity or gzip) in bounded steps."""
    try:
        return iter([resp.content])  # already read (made in memory, e.g. by a test transport)
    except httpx.ResponseNotRead:
        pass
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return resp.iter_raw()
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _gunzip(resp.iter_raw(), what)
    raise InvalidContentError(f"{what}: unsupported Content-Encoding {remote_text(encoding, 40)!r}")


def read_body(resp: httpx.Response, cap: int, what: str) -> bytes:
    """A streamed response's (decoded) body, refused as soon as it exceeds ``cap`` bytes.
    Beyond ``SPILL_BYTES`` the body waits in a temporary file, so an endless answer costs
    memory only up to that size."""
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ContentTooLargeError(
            f"{what}: the answer is {int(declared)} bytes, over the {cap} limit"
        )
    held = bytearray()
    spill = None
    size = 0
    try:
        for chunk in body_chunks(resp, what):
            size += len(chunk)
            if size > cap:
                raise ContentTooLargeError(f"{what}: the answer exceeds the {cap} byte limit")
            if spill is None and size > SPILL_BYTES:
                spill = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
                spill.write(held)
                held = bytearray()
            if spill is not None:
                spill.write(chunk)
            else:
                held += chunk
        if spill is None:
            return bytes(held)
        spill.seek(0)
        return spill.read()
    finally:
        if spill is not None:
            spill.close()


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Scheme, host and port all equal (default ports made explicit)."""

    def origin(url: httpx.URL) -> tuple[str, str, int]:
        port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
        return url.scheme, url.host.lower(), port

    return origin(a) == origin(b)


def describe_transport_error(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"{text}; set SSL_CERT_FILE to the registry's CA certificate"
    return text


def retry_after(resp: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header given as a number (dates are rare; ignored)."""
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def backoff_delay(attempt: int, base: float, cap: float, server_hint: float | None = None) -> float:
    """Exponential backoff with jitter; a server's Retry-After wins (bounded to a minute), and
    no wait outlasts the current deadline."""
    delay = min(cap, base * (2**attempt)) * (0.5 + random.random() / 2)
    if server_hint is not None:
        delay = min(max(delay, server_hint), 60.0)
    return max(0.0, min(delay, _deadline.get() - time.monotonic()))
