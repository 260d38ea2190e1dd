"""Registry URLs: which backend, and whether plain http is allowed (no network imports here).

A URL may carry ``user:password@`` (as git allows); those credentials are used for that host
only and never appear in any message: ``redact`` is what ``describe()`` shows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote, urlsplit

from bsr_team_cache._hosts import is_loopback
from bsr_team_cache.errors import UsageError

if TYPE_CHECKING:
    from bsr_team_cache.domain.moduleref import ModuleName


class HTTPRegistryURL(NamedTuple):
    """A parsed registry URL. (A NamedTuple: a fetch parses one at start-up, where a dataclass
    would compile its methods and import inspect.)"""

    scheme: str  # "https" or "http"
    host: str  # host[:port], without credentials
    namespace: str  # repositories live under it ("" for none)
    username: str = ""
    password: str = ""

    def __repr__(self) -> str:  # never the password
        return (
            f"HTTPRegistryURL(scheme={self.scheme!r}, host={self.host!r},"
            f" namespace={self.namespace!r}, username={self.username!r})"
        )

    __str__ = __repr__

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"


def check_registry_url(url: str, *, insecure: bool = False) -> None:
    """UsageError if ``url`` names no registry that ``oci.open_registry`` can open: an unknown
    scheme, an HTTP URL ``parse_http_registry_url`` refuses, or a host written as a path."""
    if url.startswith(("https://", "http://", "oci://")):
        parse_http_registry_url(url, insecure=insecure)
        return
    if "://" in url:
        raise UsageError(
            f"registry {redact(url)!r}: unknown scheme (expected oci-layout:PATH,"
            " https://HOST/NAMESPACE or oci://HOST/NAMESPACE)"
        )
    try:
        path = Path(url.removeprefix("oci-layout:")).expanduser()
    except RuntimeError:  # ~user of no such user
        raise UsageError(
            f"registry {url!r}: cannot tell which directory it names (~ of an unknown user)"
        ) from None
    if url.startswith("oci-layout:"):
        return
    if re.fullmatch(_HOST_LIKE, url.split("/", 1)[0]) and not path.exists():
        raise UsageError(
            f"registry {url!r} looks like a host, not a directory: write https://{url} (or"
            f" oci-layout:{url} for an on-disk registry in a directory of that name)"
        )


# ghcr.io, registry.example.com:5000, localhost:5000 (a plain path has no dot or port there)
_HOST_LIKE = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?::[0-9]+)?|[A-Za-z0-9-]+:[0-9]+"


def redact(url: str) -> str:
    """``url`` without the ``user:password@`` part, for messages. Everything up to the last
    ``@`` goes: a password mistyped with a bare ``/``, ``?`` or ``#`` (which a URL needs
    percent-encoded) is never shown either (no registry URL has an ``@`` after its host)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{scheme}://{rest.rpartition('@')[2]}"


def parse_http_registry_url(url: str, *, insecure: bool = False) -> HTTPRegistryURL:
    """``https://HOST[:PORT][/NS]``, ``oci://HOST/NS`` (https) or ``http://`` (loopback, or
    with ``insecure``)."""
    shown = redact(url)
    rest = url.partition("://")[2]
    authority_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    if "@" in rest[authority_end:]:
        # A password with a bare '/', '?' or '#': the rest of it would be read as the host or
        # the namespace, and end up in requests and messages.
        raise UsageError(
            f"registry {shown!r}: '@' after the host (a user or password with '/', '?', '#' or"
            " '@' must be percent-encoded)"
        )
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError:  # its text may quote the password
        raise UsageError(
            f"registry {shown!r}: not a URL (expected https://[USER:PASSWORD@]HOST[:PORT][/NS];"
            " a user or password with '/', '?', '#' or '@' must be percent-encoded)"
        ) from None
    if parts.scheme not in ("https", "http", "oci") or not hostname:
        raise UsageError(f"registry {shown!r}: expected https://HOST[:PORT][/NAMESPACE]")
    if parts.query or parts.fragment:
        raise UsageError(f"registry {shown!r}: a registry URL takes no '?' or '#' part")
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None:
        host += f":{port}"
    scheme = parts.scheme
    if scheme == "oci":
        scheme = "http" if insecure else "https"
    if scheme == "http" and not (insecure or is_loopback(host)):
        raise UsageError(
            f"registry {shown!r}: plain http is only used for loopback hosts;"
            " use https, or pass --insecure if this registry really has no TLS"
        )
    return HTTPRegistryURL(
        scheme,
        host,
        parts.path.strip("/"),
        unquote(parts.username or ""),
        unquote(parts.password or ""),
    )


def in_namespace(namespace: str, path: str) -> str:
    """``path`` under the team registry's namespace (``[ns/]path``)."""
    prefix = namespace.strip("/")
    return f"{prefix}/{path}" if prefix else path


_REPO_COMPONENT = re.compile(r"[^a-z0-9._-]+")


def _component(text: str) -> str:
    cleaned = _REPO_COMPONENT.sub("-", text.lower()).strip("-._")
    return cleaned or "x"


def module_repository(team: str, module: ModuleName, namespace: str = "") -> str:
    """``[ns/]teams/<team>/dependencies/<host>/<owner>/<module>``, legal as an OCI name (here,
    not with the artifact codec: a cold fetch names the repository it reads first before that
    codec loads)."""
    parts = [p for p in namespace.strip("/").split("/") if p]
    parts += [
        "teams",
        _component(team),
        "dependencies",
        _component(module.registry.replace(":", "-")),
        _component(module.owner),
        _component(module.name),
    ]
    return "/".join(parts)
