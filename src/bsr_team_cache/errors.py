"""Every error a user can meet, with a message that says what is wrong and what to do.

The CLI prints ``str(error)`` (no traceback) and exits with ``error.exit_code``. Library
callers catch :class:`BSRTeamCacheError` or one of its subclasses.
"""

from __future__ import annotations

from pathlib import Path


class BSRTeamCacheError(Exception):
    """Base class of all errors raised on purpose by bsr-team-cache."""

    exit_code = 1


class UsageError(BSRTeamCacheError):
    """A command was called with arguments that cannot work."""

    exit_code = 2


class ConfigError(BSRTeamCacheError):
    """A buf.yaml, buf.lock or other input file is malformed.

    The message always names the file and, where known, the line and the entry.
    """

    exit_code = 2

    def __init__(
        self,
        path: Path | str | None,
        problem: str,
        *,
        line: int | None = None,
        entry: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.line = line
        self.entry = entry
        self.hint = hint
        where = str(self.path) if self.path is not None else "<input>"
        if line is not None:
            where += f":{line}"
        message = f"{where}: {problem}"
        if entry is not None:
            message = f"{where}: {entry}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class InvalidModuleRefError(BSRTeamCacheError):
    """A module reference such as ``buf.build/owner/name:ref`` does not parse."""

    exit_code = 2


class InvalidDigestError(BSRTeamCacheError):
    """A digest string is not ``b5:<128 hex>`` or ``shake256:<128 hex>``."""

    exit_code = 2


class InvalidContentError(BSRTeamCacheError):
    """Content from the team registry, the BSR or the local store failed validation: a corrupt
    or hostile artifact, document or response. On the fetch path it is reported as a warning
    and the next tier is asked; it is never stored, published or written."""


class KeyUnavailableError(InvalidContentError):
    """An encrypted layer this member has no key for: the artifact may be sound, so it is
    not replaced by a copy of their own."""


class DigestMismatchError(InvalidContentError):
    """Content does not hash to the digest it was promised to have."""


class UnreadableHereError(InvalidContentError):
    """Content this Python cannot read (a layer compressed with a codec it lacks). Not corrupt:
    a local store keeps it for the Pythons that can; the fetch asks the next tier."""


class ContentTooLargeError(InvalidContentError):
    """Content exceeds a size limit (a manifest, a document, a response, a module's files)."""


class MissingBlobError(InvalidContentError):
    """A manifest names a blob that its repository does not have."""


class StoreError(BSRTeamCacheError):
    """The local store cannot be used (full disk, unreadable index, permissions). The fetch
    goes on without it, with a warning."""


class RegistryError(BSRTeamCacheError):
    """A registry (BSR or OCI) answered with an error or could not be reached."""


class AccessDeniedError(RegistryError):
    """The registry refused an operation to these credentials (insufficient scope, 403): not a
    fault of the registry, so never a reason to retry or to blame it."""


class ConflictError(RegistryError):
    """Someone else changed a tag between our read and our write; read again and retry."""


class BSRError(RegistryError):
    """The Buf Schema Registry answered with a Connect error."""

    def __init__(self, message: str, *, code: str = "unknown", host: str | None = None) -> None:
        self.code = code
        self.host = host
        super().__init__(message)


class NotFoundError(BSRError):
    """The BSR has no such module, label or commit."""


class UnauthenticatedError(BSRError):
    """The BSR wants a token: set BUF_TOKEN or add the host to ~/.netrc."""


class PermissionDeniedError(BSRError):
    """The token is valid but may not read this module."""


class UnavailableError(BSRError):
    """The BSR could not be reached, or kept failing after retries."""


def remote_text(text: object, limit: int = 300) -> str:
    """Text a server sent (an error message), made safe to print: control characters escaped
    (no terminal escape sequences), at most ``limit`` characters."""
    value = str(text)
    if len(value) > limit:
        value = value[:limit] + "…"
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in value)
