"""HTTP pieces shared by the BSR (Connect) and OCI registry clients: TLS trust, retry timing."""

from __future__ import annotations

import os
import random
import ssl

import httpx

from bsr_team_cache import __version__

USER_AGENT = f"bsr-team-cache/{__version__}"


def default_ssl_context() -> ssl.SSLContext:
    """System trust store; OpenSSL honours SSL_CERT_FILE/SSL_CERT_DIR as Go does for buf."""
    ctx = ssl.create_default_context()
    cafile = os.environ.get("SSL_CERT_FILE")
    if cafile and os.path.isfile(cafile):
        ctx.load_verify_locations(cafile=cafile)
    return ctx


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
        return max(0.0, float(value))
    except ValueError:
        return None


def backoff_delay(attempt: int, base: float, cap: float, server_hint: float | None = None) -> float:
    """Exponential backoff with jitter; a server's Retry-After wins (bounded to a minute)."""
    delay = min(cap, base * (2**attempt)) * (0.5 + random.random() / 2)
    if server_hint is not None:
        delay = min(max(delay, server_hint), 60.0)
    return delay
