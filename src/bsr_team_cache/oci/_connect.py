"""A registry connection (TCP, and TLS for https) as the direct reads of a cold fetch open it
(direct.py), and the same opened ahead of the first request (Preconnection).

Light on purpose (socket only; ssl for https, when the TLS context is asked for): a cold fetch
starts its first connection here as soon as the registry's URL is known and checked, ~15 ms
before its first request is ready (the lock parsed, the pack's name computed, the reader
loaded), so that the TCP handshake, and TLS's, overlap that work instead of following it.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bsr_team_cache._deadline import InBackground
from bsr_team_cache._wire import Pace

if TYPE_CHECKING:
    import ssl

# Connecting (TCP and TLS) may take this long, as in the full client (http.py).
CONNECT_SECONDS = 10.0

Key = tuple[str, str, int]  # (scheme, host, port): an origin, as a session keeps connections


def origin_of(url: str) -> Key | None:
    """The origin an http(s) ``url``'s requests go to, as a session keys its connections;
    None for anything else."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.isascii():
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


class CannotConnect(Exception):
    """No connection to use: the full client is asked (and retries, and reports)."""


def open_connection(key: Key, tls: Callable[[], ssl.SSLContext]) -> socket.socket:
    """A new connection to the origin ``key`` (TLS for https), given at most CONNECT_SECONDS in
    all (whatever the number of addresses the name has), as the full client gives it."""
    scheme, hostname, port = key
    until = time.monotonic() + min(CONNECT_SECONDS, Pace().bound(None, reading=False))
    try:
        # An ASCII name (checked by the caller) goes to the resolver as bytes: no IDNA codec.
        addresses = socket.getaddrinfo(hostname.encode("ascii"), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise CannotConnect(f"cannot resolve ({exc})") from None
    sock, problem = None, "no address"
    for family, kind, proto, _, address in addresses:
        left = until - time.monotonic()
        if left <= 0:
            problem = "timed out"
            break
        candidate = socket.socket(family, kind, proto)
        try:
            candidate.settimeout(left)
            candidate.connect(address)
        except OSError as exc:
            candidate.close()
            problem = str(exc)
            continue
        sock = candidate
        break
    if sock is None:
        raise CannotConnect(f"cannot connect ({problem})")
    if scheme != "https":
        return sock
    try:
        sock.settimeout(max(0.001, until - time.monotonic()))
        return tls().wrap_socket(sock, server_hostname=hostname)
    except Exception as exc:  # OSError, ssl.SSLError, ValueError: not a connection to use
        sock.close()
        raise CannotConnect(f"TLS: {exc}") from None


class Preconnection:
    """A connection to ``key`` being opened in the background (in the caller's context: within
    its deadline), for the first request to that origin to ``take``. Nothing is sent on it
    before that request."""

    def __init__(self, key: Key, tls: Callable[[], ssl.SSLContext]) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._over = False  # taken, or closed: a connection made after is closed at once

        def connect() -> None:
            sock = open_connection(key, tls)
            with self._lock:
                if not self._over:
                    self._sock, sock = sock, None
            if sock is not None:
                sock.close()

        self._opening = InBackground(connect, "preconnect")

    def take(self) -> socket.socket | None:
        """The connection, once its handshake is done (waited for within the deadline); None
        if it was taken or closed already (the caller connects). CannotConnect if it could not
        be made: as for the caller's own attempt, which is not made again (its time and the
        resolver's are not spent twice on a host that cannot be reached)."""
        failure: Exception | None = None
        try:
            self._opening.result("cannot connect (timed out)")
        except CannotConnect as exc:
            failure = exc
        except Exception as exc:  # past the deadline (RegistryError), or what the thread met
            failure = CannotConnect(str(exc))
        with self._lock:
            if self._over:
                return None
            self._over = True
            sock, self._sock = self._sock, None
        if sock is None and failure is not None:
            raise failure
        return sock

    def close(self) -> None:
        """Close the connection if nobody took it (a handshake still under way is closed when
        it is done)."""
        with self._lock:
            self._over = True
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def quiet(sock: socket.socket) -> bool:
    """Whether a connection not in use (new, or idle after an answer read whole) is good to
    send a request on: the server has neither closed it nor sent anything but TLS's own records
    (a TLS 1.3 server sends its session tickets after the handshake, unasked)."""
    readable = getattr(sock, "pending", None)
    poller = select.poll()  # (select.select cannot wait on descriptors past 1023)
    poller.register(sock, select.POLLIN)
    timeout = sock.gettimeout()
    try:
        for _ in range(16):  # tickets: a few records at most
            try:
                if (readable is not None and readable()) or poller.poll(0):
                    if readable is None:
                        return False  # plain TCP: the server's close, or bytes unasked for
                    sock.settimeout(0)
                    sock.recv(1)  # TLS records are processed; data is not expected
                    return False
                return True
            except OSError as exc:  # ssl.SSLWantReadError: only TLS's own records came
                if type(exc).__name__ != "SSLWantReadError":
                    return False
        return False
    finally:
        sock.settimeout(timeout)
