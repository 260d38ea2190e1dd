"""OCI registry adapters behind one interface: an on-disk image layout (the embedded default)
and an HTTP client for any distribution-spec registry."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bsr_team_cache._deadline import InBackground, deadline_in, deadline_passed
from bsr_team_cache._wire import SPILL_BYTES
from bsr_team_cache.errors import BSRTeamCacheError, RegistryError
from bsr_team_cache.limits import limits
from bsr_team_cache.oci.url import check_registry_url, parse_http_registry_url, redact

if TYPE_CHECKING:
    from bsr_team_cache.oci.base import RegistryBackend
    from bsr_team_cache.oci.layout import OCILayoutRegistry


class _OnFirstUse:
    """Builds the HTTP client when first used: a fetch served entirely from the local store
    never pays for importing and setting up the HTTP stack. Until then, reads of manifests and
    of small blobs, and streams of large ones, go without that stack (direct.py), one thread at
    a time: a fetch that the lock pack, or one streamed module, serves never loads it. Once a
    direct read is not answered, or the client is built, every call goes to the client."""

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
        self._closed = False
        # A manifest read started early (start_manifest_read): repo, reference, the read.
        self._early: tuple[str, str, InBackground[tuple[bytes, str] | None]] | None = None
        self._preconnected: Any = None  # a _connect.Preconnection, for the direct reader

    def describe(self) -> str:
        return self._url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend(), name)

    @contextlib.contextmanager
    def _direct_reader(self) -> Iterator[Any]:
        """The direct reader, held by this thread for the block; None if reads go to the
        client (built, or direct reads off, or another thread reading directly). Anything the
        block raises other than a verdict (BSRTeamCacheError: on the content, or a transfer
        given up, which are the client's too) turns direct reads off: the client asks again,
        and reports what it finds."""
        if self._backend is not None or self._direct_off:
            yield None
            return
        if not self._direct_lock.acquire(blocking=False):
            yield None  # another thread reads directly: this one uses the client
            return
        try:
            if self._backend is not None or self._direct_off:
                yield None
                return
            from bsr_team_cache._wire import proxy_configured
            from bsr_team_cache.oci.direct import DirectReader

            if self._direct is None and proxy_configured():  # only the client honours it
                self._direct_off = True
                yield None
                return
            try:
                if self._direct is None:  # (its token cache's place may not resolve: no HOME)
                    self._direct = DirectReader(
                        self._given_url, self._insecure, preconnected=self._preconnected
                    )
                    self._preconnected = None  # the reader's now
            except Exception:
                self._direct_off = True
                yield None
                return
            try:
                yield self._direct
            except BSRTeamCacheError:
                raise
            except Exception:  # NotAnswered, or a case direct.py does not foresee
                self._direct_off = True
                raise
        finally:
            self._direct_lock.release()
            if self._direct_off or self._backend is not None:
                # No more direct reads (also when closed meanwhile, which did not wait for this
                # one): the reader's idle connection goes.
                self._close_direct()

    def _read_directly(self, read: Callable[[Any], Any]) -> tuple[bool, Any]:
        """(True, what ``read(reader)`` returned), or (False, None): ask the client."""
        try:
            with self._direct_reader() as reader:
                if reader is not None:
                    return True, read(reader)
        except BSRTeamCacheError:
            raise
        except Exception:  # direct reads are off now (see _direct_reader)
            pass
        return False, None

    def preconnect(self) -> None:
        """Open the first direct read's connection now, in the background: on a machine new to
        a lock, its TCP (and TLS) handshakes then overlap the loading of the fetch and the
        parsing of buf.lock. Nothing is sent on it before that read; unused, it is closed with
        the registry. Not where only the client may connect (a proxy configured)."""
        if not self._direct_lock.acquire(blocking=False):
            return  # a direct read under way has its connection
        try:
            if self._direct is not None or self._preconnected is not None or self._direct_off:
                return
            from bsr_team_cache._wire import default_ssl_context, proxy_configured
            from bsr_team_cache.oci._connect import Preconnection, origin_of

            url = parse_http_registry_url(self._given_url, insecure=self._insecure)
            origin = origin_of(url.base)
            if origin is None or proxy_configured():
                return
            with contextlib.suppress(RuntimeError):  # no thread to be had: the read connects
                self._preconnected = Preconnection(origin, default_ssl_context)
        finally:
            self._direct_lock.release()

    def prepare_direct_read(self) -> None:
        """Load and make the direct reader now, in the caller's thread: a read started next in
        another thread then sends its request at once, instead of loading this while the
        caller loads the rest of the fetch (two threads importing share one interpreter)."""
        self._read_directly(lambda reader: None)

    def start_manifest_read(self, repo: str, reference: str) -> None:
        """Read that manifest now, in a thread of its own (in the caller's context: within its
        deadline): a cold fetch's first read, made while the rest of the fetch loads. The next
        ``read_manifest`` of it, from any thread, takes that answer, or what the read raised."""
        with contextlib.suppress(Exception):  # the read meets it again, and says so
            self.prepare_direct_read()  # the reader loads here: its request leaves at once
        try:
            read = InBackground(lambda: self._read_manifest_now(repo, reference), "first-read")
        except RuntimeError:  # no thread to be had: the fetch reads it itself
            return
        self._early = (repo, reference, read)

    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        early = self._early
        if early is None or early[:2] != (repo, reference):
            return self._read_manifest_now(repo, reference)
        self._early = None  # taken once (a thread reading it at the same time shares it)
        read = early[2]
        try:
            return read.result(
                f"team registry {self._url}: GET manifest {repo}:{reference}: the deadline passed"
            )
        except Exception:
            if read.failed_past_its_deadline and not deadline_passed():
                return self._read_manifest_now(repo, reference)  # its deadline, sooner than ours
            raise

    def _read_manifest_now(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        done, found = self._read_directly(lambda reader: reader.read_manifest(repo, reference))
        return found if done else self.backend().read_manifest(repo, reference)

    def read_blob(self, repo: str, digest: str, max_bytes: int | None = None) -> bytes:
        done, data = False, None
        if max_bytes is not None and max_bytes <= SPILL_BYTES:  # one to hold in memory
            done, data = self._read_directly(lambda r: r.read_blob(repo, digest, max_bytes))
        return data if done else self.backend().read_blob(repo, digest, max_bytes)

    def open_blob(self, repo: str, digest: str, max_bytes: int) -> Iterator[bytes]:
        """The blob's bytes as they arrive, verified after the last, as the client's
        ``open_blob``: read directly (on the connection the manifest came by, without the HTTP
        stack) when the registry sends it at once with its length; a direct transfer cut short
        goes on from the client where it stopped (``Range``). Nothing is requested before the
        first chunk is asked for."""
        if self._backend is not None or self._direct_off:
            return self.backend().open_blob(repo, digest, max_bytes)
        from bsr_team_cache.oci.streaming import verified_chunks

        parsed = parse_http_registry_url(self._given_url, insecure=self._insecure)
        name = f"{parsed.namespace}/{repo}" if parsed.namespace else repo
        chunks = self._blob_chunks(repo, digest, max_bytes)
        return verified_chunks(chunks, digest, f"{parsed.host}/{name}")  # as the client says

    def _blob_chunks(self, repo: str, digest: str, max_bytes: int) -> Iterator[bytes]:
        # One request's time for the whole blob, whoever reads it: a direct stream cut short
        # and the client's continuation share it.
        until = deadline_in(limits().request_seconds)
        received = 0
        try:
            with self._direct_reader() as reader:
                if reader is not None:
                    for chunk in reader.open_blob(repo, digest, max_bytes, until):
                        received += len(chunk)
                        yield chunk
                    return
        except BSRTeamCacheError:
            raise
        except Exception:  # not answered directly (before any byte), or cut short (Interrupted)
            pass  # direct reads are off now: the client reads what did not come, from there
        yield from self.backend().blob_chunks(repo, digest, max_bytes, start=received, until=until)

    def backend(self) -> RegistryBackend:
        if self._backend is not None:
            return self._backend
        with self._lock:
            if self._backend is None:
                if self._closed:  # a read still under way when the registry was closed
                    raise RegistryError(f"team registry {self._url}: the registry was closed")
                self._backend = self._factory()
        # The direct reader's idle connection goes (a direct read under way closes it when it
        # ends: see _direct_reader).
        self._close_direct()
        return self._backend

    def close(self) -> None:
        with self._lock:  # no client is built after this (nothing would close it)
            self._closed = True
        self._direct_off = True
        # A direct read under way (a stream holds the lock while it is read) closes the reader
        # itself when it ends, direct reads being off: never waited for here.
        self._close_direct()
        if self._preconnected is not None:  # opened, and no direct reader ever made
            self._preconnected.close()
        if self._backend is not None:
            self._backend.close()

    def _close_direct(self) -> None:
        """Close the direct reader's connection unless a direct read holds it."""
        if self._direct is not None and self._direct_lock.acquire(blocking=False):
            try:
                self._direct.close()
            finally:
                self._direct_lock.release()


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
