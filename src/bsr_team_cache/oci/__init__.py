"""OCI registry adapters behind one interface: an on-disk image layout (the embedded default)
and an HTTP client for any distribution-spec registry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bsr_team_cache._wire import SPILL_BYTES
from bsr_team_cache.errors import BSRTeamCacheError
from bsr_team_cache.oci.url import check_registry_url, redact

if TYPE_CHECKING:
    from bsr_team_cache.oci.base import RegistryBackend
    from bsr_team_cache.oci.layout import OCILayoutRegistry


class _OnFirstUse:
    """Builds the HTTP client when first used: a fetch served entirely from the local store
    never pays for importing and setting up the HTTP stack. Until then, reads of manifests and
    of small blobs go without that stack (direct.py), one thread at a time: a fetch that the
    lock pack serves never loads it. Once a direct read is not answered, or the client is
    built, every call goes to the client."""

    def __init__(
        self, url: str, factory: Callable[[], RegistryBackend], *, insecure: bool = False
    ) -> None:
        self._given_url, self._insecure = url, insecure
        self._url = redact(url)
        self._factory = factory
        self._backend: RegistryBackend | None = None
        self._lock = threading.Lock()  # fetch threads may all touch it at once
        self._direct: Any = None  # a direct.DirectReader, made on the first direct read
        self._direct_lock = threading.Lock()
        self._direct_off = False

    def describe(self) -> str:
        return self._url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend(), name)

    def _read_directly(self, read: Callable[[Any], Any]) -> tuple[bool, Any]:
        """(True, what ``read(reader)`` returned), or (False, None): ask the client."""
        if self._backend is not None or self._direct_off:
            return False, None
        if not self._direct_lock.acquire(blocking=False):
            return False, None  # another thread reads directly: this one uses the client
        try:
            if self._backend is not None or self._direct_off:
                return False, None
            from bsr_team_cache._wire import proxy_configured
            from bsr_team_cache.oci.direct import DirectReader

            if self._direct is None and proxy_configured():  # only the client honours it
                self._direct_off = True
                return False, None
            try:
                if self._direct is None:  # (its token cache's place may not resolve: no HOME)
                    self._direct = DirectReader(self._given_url, self._insecure)
                return True, read(self._direct)
            except BSRTeamCacheError:
                raise  # a verdict on the content, or a transfer given up: the client's too
            except Exception:  # NotAnswered, or a case direct.py does not foresee
                self._direct_off = True  # the client asks again, and reports what it finds
                return False, None
        finally:
            if self._direct is not None and (self._direct_off or self._backend is not None):
                self._direct.close()  # no more direct reads: its idle connection goes
            self._direct_lock.release()

    def prepare_direct_read(self) -> None:
        """Load and make the direct reader now, in the caller's thread: a read started next in
        another thread then sends its request at once, instead of loading this while the
        caller loads the rest of the fetch (two threads importing share one interpreter)."""
        self._read_directly(lambda reader: None)

    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        done, found = self._read_directly(lambda reader: reader.read_manifest(repo, reference))
        return found if done else self.backend().read_manifest(repo, reference)

    def read_blob(self, repo: str, digest: str, max_bytes: int | None = None) -> bytes:
        done, data = False, None
        if max_bytes is not None and max_bytes <= SPILL_BYTES:  # one to hold in memory
            done, data = self._read_directly(lambda r: r.read_blob(repo, digest, max_bytes))
        return data if done else self.backend().read_blob(repo, digest, max_bytes)

    def backend(self) -> RegistryBackend:
        if self._backend is not None:
            return self._backend
        with self._lock:
            if self._backend is None:
                self._backend = self._factory()
        # The direct reader's idle connection goes (a direct read under way closes it when it
        # ends: see _read_directly).
        if self._direct is not None and self._direct_lock.acquire(blocking=False):
            try:
                self._direct.close()
            finally:
                self._direct_lock.release()
        return self._backend

    def close(self) -> None:
        self._direct_off = True
        if self._direct is not None:
            with self._direct_lock:
                self._direct.close()
        if self._backend is not None:
            self._backend.close()


def open_registry(url: str, *, insecure: bool = False) -> RegistryBackend:
    """``oci-layout:PATH`` (or a plain path) is on disk; ``https://HOST[:PORT][/NS]``,
    ``oci://HOST/NS`` (https) and ``http://`` (loopback or ``insecure`` only) are HTTP."""
    check_registry_url(url, insecure=insecure)  # bad URLs fail now, not on first use
    if url.startswith(("https://", "http://", "oci://")):

        def connect() -> RegistryBackend:
            from bsr_team_cache._startup import loading

            with loading():  # the HTTP stack: ~100 modules
                from bsr_team_cache.oci.http import HTTPRegistry

            return HTTPRegistry(url, insecure=insecure)

        return _OnFirstUse(url, connect, insecure=insecure)  # type: ignore[return-value]
    from bsr_team_cache.oci.layout import OCILayoutRegistry

    return OCILayoutRegistry(Path(url.removeprefix("oci-layout:")).expanduser())


def __getattr__(name: str) -> Any:
    # The adapters load when asked for: importing oci.url (as a fetch's start does) loads
    # this package, and not them.
    if name == "HTTPRegistry":
        from bsr_team_cache.oci.http import HTTPRegistry

        return HTTPRegistry
    if name == "OCILayoutRegistry":
        from bsr_team_cache.oci.layout import OCILayoutRegistry

        return OCILayoutRegistry
    if name == "RegistryBackend":
        from bsr_team_cache.oci.base import RegistryBackend

        return RegistryBackend
    raise AttributeError(name)


__all__ = ["HTTPRegistry", "OCILayoutRegistry", "RegistryBackend", "open_registry"]
