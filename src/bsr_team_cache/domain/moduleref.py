"""Module names and references, parsed the way buf parses them.

A reference is ``registry/owner/name[:ref]``. buf splits on the first ``/`` to get the registry
(so the registry may carry a port, ``localhost:8443``), then splits the rest on ``:`` to get at
most one ref: a label name or a dashless 32-hex commit id. No ref means the module's default label.
"""

from __future__ import annotations

import re

from bsr_team_cache._records import record
from bsr_team_cache.errors import InvalidModuleRefError

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Every pattern is used with fullmatch: ``$`` would also accept a trailing newline.
_REGISTRY_RE = re.compile(rf"(?:{_HOST_LABEL})(?:\.{_HOST_LABEL})*(?::(?P<port>[0-9]{{1,5}}))?")
_IPV6_REGISTRY_RE = re.compile(r"\[[0-9A-Fa-f:.]+\](?::(?P<port>[0-9]{1,5}))?")
# The BSR allows letters, digits and '-' in owner and module names; '_' and '.' are accepted
# because older registries and self-hosted instances use them. Lengths are the BSR API's.
_COMPONENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_OWNER_LENGTH = 32
MAX_MODULE_NAME_LENGTH = 100
MAX_REGISTRY_LENGTH = 253 + 6
_COMMIT_ID_RE = re.compile(r"[0-9a-f]{32}")
_DASHED_COMMIT_ID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# Labels: no whitespace, ':' or '/', no control characters; at most the BSR's 250 characters.
_LABEL_RE = re.compile(r"[^\s:/\x00-\x1f\x7f]{1,250}")


def is_commit_id(ref: str) -> bool:
    """True when ``ref`` is a dashless commit id (32 lowercase hex), as in buf.lock."""
    return isinstance(ref, str) and _COMMIT_ID_RE.fullmatch(ref) is not None


def is_label(text: str) -> bool:
    return isinstance(text, str) and _LABEL_RE.fullmatch(text) is not None


def normalize_commit_id(commit: str) -> str:
    """Accept a dashed UUID or a dashless commit id and return the dashless lowercase form buf
    writes; anything else (a path, a trailing newline) is refused."""
    if isinstance(commit, str) and _DASHED_COMMIT_ID_RE.fullmatch(commit):
        commit = commit.replace("-", "")
    dashless = commit.lower() if isinstance(commit, str) else ""
    if not _COMMIT_ID_RE.fullmatch(dashless) or len(commit) != 32:
        raise InvalidModuleRefError(
            f"invalid commit id {commit!r}: expected 32 hexadecimal characters"
        )
    return dashless


def validate_commit_id(commit: object) -> str:
    """A commit id exactly as buf.lock and our artifacts spell it (32 lowercase hex)."""
    if not isinstance(commit, str) or not is_commit_id(commit):
        raise InvalidModuleRefError(
            f"invalid commit id {commit!r}: expected 32 lowercase hexadecimal characters"
        )
    return commit


@record(frozen=True, order=True)
class ModuleName:
    """A module's full name: ``registry/owner/name``."""

    registry: str
    owner: str
    name: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.owner}/{self.name}"

    def with_ref(self, ref: str | None) -> ModuleRef:
        return ModuleRef(self, ref)


@record(frozen=True)
class ModuleRef:
    """A module name plus an optional ref (label or commit id)."""

    module: ModuleName
    ref: str | None = None

    @property
    def is_commit(self) -> bool:
        return self.ref is not None and is_commit_id(self.ref)

    @property
    def label(self) -> str | None:
        """The label this ref names, or None if it names a commit or the default label."""
        if self.ref is None or self.is_commit:
            return None
        return self.ref

    def __str__(self) -> str:
        return str(self.module) if self.ref is None else f"{self.module}:{self.ref}"


def _validate_registry(registry: str, original: str) -> None:
    match = _REGISTRY_RE.fullmatch(registry) or _IPV6_REGISTRY_RE.fullmatch(registry)
    if not match or len(registry) > MAX_REGISTRY_LENGTH:
        raise InvalidModuleRefError(
            f"invalid module reference {original!r}: {registry!r} is not a host name"
            " (expected e.g. buf.build or localhost:8443)"
        )
    port = match.group("port")
    if port is not None and not 0 < int(port) <= 65535:
        raise InvalidModuleRefError(
            f"invalid module reference {original!r}: port {port} is out of range"
        )


def parse_module_ref(text: str) -> ModuleRef:
    """Parse ``registry/owner/name[:ref]``; raise :class:`InvalidModuleRefError` if malformed."""
    if not isinstance(text, str):
        raise InvalidModuleRefError(f"invalid module reference {text!r}: not a string")
    original = text
    text = text.strip()
    if not text:
        raise InvalidModuleRefError("empty module reference")
    if "/" not in text:
        raise InvalidModuleRefError(
            f"invalid module reference {original!r}: expected registry/owner/name[:ref]"
        )
    registry, rest = text.split("/", 1)
    ref: str | None = None
    if ":" in rest:
        rest, ref = rest.split(":", 1)
        if not ref:
            raise InvalidModuleRefError(
                f"invalid module reference {original!r}: empty ref after ':'"
            )
        if not is_label(ref):
            raise InvalidModuleRefError(
                f"invalid module reference {original!r}: {ref!r} is not a label or commit id"
            )
    if "@" in rest:
        raise InvalidModuleRefError(
            f"invalid module reference {original!r}: buf has no '@' syntax, use name:ref"
        )
    _validate_registry(registry, original)
    parts = rest.split("/")
    if len(parts) != 2:
        raise InvalidModuleRefError(
            f"invalid module reference {original!r}: expected registry/owner/name[:ref]"
        )
    owner, name = parts
    for what, value, low, high in (
        ("owner", owner, 1, MAX_OWNER_LENGTH),
        ("module name", name, 1, MAX_MODULE_NAME_LENGTH),
    ):
        if not _COMPONENT_RE.fullmatch(value):
            raise InvalidModuleRefError(
                f"invalid module reference {original!r}: invalid {what} {value!r}"
            )
        if not low <= len(value) <= high:
            raise InvalidModuleRefError(
                f"invalid module reference {original!r}: {what} {value!r} is longer than"
                f" {high} characters"
            )
    return ModuleRef(ModuleName(registry, owner, name), ref)


def parse_module_name(text: str) -> ModuleName:
    """Parse ``registry/owner/name`` (no ref allowed, no surrounding blanks)."""
    ref = parse_module_ref(text)
    if ref.ref is not None:
        raise InvalidModuleRefError(f"invalid module name {text!r}: a module name takes no ':ref'")
    if str(ref.module) != text:
        raise InvalidModuleRefError(f"invalid module name {text!r}: not in canonical form")
    return ref.module
