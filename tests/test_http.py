"""The guard on every connection: a deadline and a minimum rate, also through an HTTP proxy."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from bsr_team_cache._deadline import deadline_scope
from bsr_team_cache._http import _GuardedBackend, abandoned, guarded_client
from bsr_team_cache.limits import configure, limits


class Trickler:
    """A loopback server that answers one byte every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        conn.recv(65536)
        try:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
                conn.sendall(bytes([byte]))
                time.sleep(self.interval)
        except OSError:
            pass
        conn.close()


@pytest.fixture
def trickler():
    server = Trickler(0.5)
    yield server
    server.sock.close()


def test_every_transport_is_guarded_also_through_a_proxy(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = guarded_client()
    transports = [client._transport, *client._mounts.values()]
    assert len(transports) == 2  # the direct one and the proxy's
    for transport in transports:
        assert isinstance(transport._pool._network_backend, _GuardedBackend)


def test_a_deadline_cuts_a_trickle_that_per_read_timeouts_never_would(trickler) -> None:
    with guarded_client(timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout) as caught, deadline_scope(1.5):
            client.get(trickler.url)
        seconds = time.monotonic() - started
    assert abandoned(caught.value)
    assert "the deadline passed" in str(caught.value)
    assert seconds < 10  # the whole answer takes 20 s to trickle in


def test_a_transfer_below_the_minimum_rate_is_abandoned(trickler) -> None:
    before = limits()
    configure(low_speed_seconds=1.0, low_speed_bytes=64)
    try:
        with guarded_client(timeout=30) as client:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout) as caught:
                client.get(trickler.url)
            seconds = time.monotonic() - started
    finally:
        configure(
            low_speed_seconds=before.low_speed_seconds, low_speed_bytes=before.low_speed_bytes
        )
    assert abandoned(caught.value)
    assert "less than 64 bytes in 1 s: abandoned" in str(caught.value)
    assert seconds < 10
