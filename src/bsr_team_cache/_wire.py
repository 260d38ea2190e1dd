"""HTTP pieces that need no HTTP stack: TLS trust, our User-Agent, whether a proxy is
configured, and the pace rule every connection of ours obeys. Used by the httpx-based clients
(_http.py) and by the direct read of a cold fetch's first manifest (oci/direct.py), which runs
before (and often instead of) loading httpx."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING

from bsr_team_cache import __version__
from bsr_team_cache._deadline import _deadline
from bsr_team_cache.limits import limits

if TYPE_CHECKING:
    import ssl

USER_AGENT = f"bsr-team-cache/{__version__}"
SPILL_BYTES = 16 << 20  # answers larger than this wait in a temporary file, not in memory

# What httpx reads from the environment to choose a proxy (any case).
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def default_ssl_context() -> ssl.SSLContext:
    """System trust store; OpenSSL honours SSL_CERT_FILE/SSL_CERT_DIR as Go does for buf."""
    import ssl  # here: a read from a plain-http registry never loads it

    ctx = ssl.create_default_context()
    cafile = os.environ.get("SSL_CERT_FILE")
    if cafile and os.path.isfile(cafile):
        ctx.load_verify_locations(cafile=cafile)
    return ctx


def proxy_configured() -> bool:
    """Whether an HTTP proxy may be configured (which only the full client honours): named in
    the environment, or, on macOS and Windows, in the system settings httpx also reads."""
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES):
        return True
    if sys.platform in ("darwin", "win32"):
        import urllib.request

        return bool(urllib.request.getproxies())
    return False


class TransferTooSlow(Exception):
    """The deadline passed, or the server sends too slowly: the transfer is given up."""


class Pace:
    """One connection's bound on every wait: the current deadline (a context variable, set
    with ``deadline_scope``) and a minimum transfer rate (``Limits.low_speed_*``) measured over
    windows from the start of each request."""

    def __init__(self) -> None:
        self._window_start = time.monotonic()
        self._window_bytes = 0

    def request_started(self) -> None:
        self._window_start, self._window_bytes = time.monotonic(), 0

    def received(self, count: int) -> None:
        self._window_bytes += count

    def bound(self, timeout: float | None, *, reading: bool) -> float:
        """Seconds the next wait may last; TransferTooSlow if none is left."""
        now = time.monotonic()
        left = _deadline.get() - now
        if left <= 0:
            raise TransferTooSlow("the deadline passed")
        if reading:
            lim = limits()
            if now - self._window_start >= lim.low_speed_seconds:
                if self._window_bytes < lim.low_speed_bytes:
                    raise TransferTooSlow(self._too_slow())
                self._window_start, self._window_bytes = now, 0
            left = min(left, self._rate_limit_end() - now)
        bound = left if timeout is None else min(timeout, left)
        if bound == math.inf:  # no deadline, no timeout: a request's own bound still holds
            bound = limits().request_seconds
        return max(bound, 0.001)

    def _rate_limit_end(self) -> float:
        """When a wait that brings nothing makes the transfer too slow: the end of this window
        while it lacks its bytes; once it has them, the end of the next one (which a wait
        lasting that long leaves empty). Else a server that sends a window's bytes at once
        could then stall until the deadline."""
        lim = limits()
        windows = 1 if self._window_bytes < lim.low_speed_bytes else 2
        return self._window_start + windows * lim.low_speed_seconds

    def timed_out(self) -> TransferTooSlow | None:
        """After a wait timed out: the reason to give up, or None (the caller's own timeout)."""
        now = time.monotonic()
        if now >= _deadline.get():
            return TransferTooSlow("the deadline passed")
        if now >= self._rate_limit_end():
            return TransferTooSlow(self._too_slow())
        return None

    @staticmethod
    def _too_slow() -> str:
        lim = limits()
        return (
            f"the server sent less than {lim.low_speed_bytes} bytes in"
            f" {lim.low_speed_seconds:g} s: abandoned"
        )
