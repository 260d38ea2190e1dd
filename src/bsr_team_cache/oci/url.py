"""Registry URLs: which backend, and whether plain http is allowed (no network imports here)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bsr_team_cache._hosts import is_loopback
from bsr_team_cache.errors import UsageError


@dataclass(frozen=True)
class HTTPRegistryURL:
    scheme: str  # "https" or "http"
    host: str  # host[:port]
    namespace: str  # repositories live under it ("" for none)

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"


def parse_http_registry_url(url: str, *, insecure: bool = False) -> HTTPRegistryURL:
    """``https://HOST[:PORT][/NS]``, ``oci://HOST/NS`` (https) or ``http://`` (loopback, or
    with ``insecure``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http", "oci") or not parts.netloc:
        raise UsageError(f"registry {url!r}: expected https://HOST[:PORT][/NAMESPACE]")
    scheme = parts.scheme
    if scheme == "oci":
        scheme = "http" if insecure else "https"
    if scheme == "http" and not (insecure or is_loopback(parts.netloc)):
        raise UsageError(
            f"registry {url!r}: plain http is only used for loopback hosts;"
            " use https, or pass --insecure if this registry really has no TLS"
        )
    return HTTPRegistryURL(scheme, parts.netloc, parts.path.strip("/"))
