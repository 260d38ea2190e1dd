"""An OCI distribution-spec 1.1 client on httpx: the distributed team registry backend.

Works with any OCI registry (Distribution, Harbor, Zot, ECR, GHCR). What it does that a
simple client does not, and why:

* blobs are streamed both ways and hashed while streaming, so memory stays flat for large
  blobs and a corrupt byte is caught before anything is renamed into place;
* the bearer-token flow asks for exactly the scope a request needs (pull, or pull+push, plus
  pull on the source repository for a mount) and caches tokens until they expire: in memory,
  and, for the user's own credentials, across processes in the local store (TokenCache), so
  that a fetch after the first asks the token service nothing;
* uploads above ``chunk_threshold`` go in PATCH chunks, each retried on its own;
* ``mount_blob`` lets bundles reference blobs across repositories without re-uploading;
* one pooled ``httpx.Client`` (thread-safe) serves parallel transfers;
* 5xx/429 and connection errors are retried with backoff, honouring ``Retry-After``;
* what the registry sends is bounded (manifests by the document limit, blobs by their declared
  size) and every request by a deadline and a minimum rate (see _http.py);
* credentials (basic, or a bearer token) go only to the registry's own origin: never to a
  host named by a redirect (object storage), an upload ``Location`` or a tags ``Link``; a token
  realm must be https (plain http only on loopback).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from bsr_team_cache._deadline import deadline_in, deadline_scope, stepped
from bsr_team_cache._fs import file_chunks, write_verified
from bsr_team_cache._hosts import is_loopback
from bsr_team_cache._http import (
    abandoned,
    backoff_delay,
    describe_transport_error,
    guarded_client,
    read_body,
    retry_after,
    same_origin,
)
from bsr_team_cache._wire import SPILL_BYTES, USER_AGENT, default_ssl_context
from bsr_team_cache.errors import (
    AccessDeniedError,
    ConflictError,
    ContentTooLargeError,
    DigestMismatchError,
    MissingBlobError,
    RegistryError,
    remote_text,
)
from bsr_team_cache.limits import limits
from bsr_team_cache.oci.base import (
    MANIFEST_ACCEPT,
    manifest_answer,
    registry_error_text,
    sha256_digest,
    validate_oci_digest,
    verify_blob,
)
from bsr_team_cache.oci.credentials import Credentials, credentials_for
from bsr_team_cache.oci.tokens import (
    TokenCache,
    credentials_refused,
    default_token_cache,
    not_authorized,
    parse_challenge,
    principal_of,
    registry_origin,
    stored_token,
    token_cache_key,
    token_from_answer,
    token_realm,
    token_request,
)
from bsr_team_cache.oci.url import parse_http_registry_url, redact

_STREAM_BLOCK = 1 << 20
_RETRY_STATUSES = {429, 500, 502, 503, 504}
_REDIRECTS = {301, 302, 303, 307, 308}
_MAX_REDIRECTS = 5
_SMALL_ANSWER = 1 << 20  # token answers, error bodies, tag lists (per page)

ContentFactory = Callable[[], bytes | Iterator[bytes]]


def _oci_error_text(resp: httpx.Response) -> str:
    try:
        body = resp.content
    except httpx.ResponseNotRead:
        body = b""
    return registry_error_text(resp.status_code, body)


def _upload_offset(status: httpx.Response) -> int:
    """The next byte an upload session expects, from its ``Range: 0-<last>`` header."""
    value = status.headers.get("Range", "")
    _, _, last = value.partition("-")
    return int(last) + 1 if last.strip().isdigit() else 0


class HTTPRegistry:
    """``https://host[:port][/namespace]``; repositories live under the namespace.

    Bearer tokens are kept across processes in ``token_cache``; without one, a client that
    finds the user's own credentials itself (``credentials`` not given: environment or docker
    config) uses the local store's (default_token_cache). A caller that passes credentials
    (a service with its own identity) keeps its tokens in memory only, unless it passes a
    cache."""

    def __init__(
        self,
        url: str,
        *,
        insecure: bool = False,
        credentials: Credentials | None = None,
        max_connections: int = 16,
        max_attempts: int = 4,
        backoff: float = 0.2,
        max_backoff: float = 8.0,
        timeout: float = 60.0,
        chunk_threshold: int = 256 << 20,
        chunk_size: int = 64 << 20,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool | None = None,
        sleep: Callable[[float], None] = time.sleep,
        token_cache: TokenCache | None = None,
    ) -> None:
        parsed = parse_http_registry_url(url, insecure=insecure)
        self._token_cache = token_cache
        self._default_token_cache = token_cache is None and credentials is None
        scheme = parsed.scheme
        self.host = parsed.host
        self.base = parsed.base
        self._origin = httpx.URL(parsed.base)
        self._origin_key = registry_origin(scheme, parsed.host)
        self.namespace = parsed.namespace
        self._url = redact(url)
        self._where = f"team registry {self._url}"
        if credentials is None and parsed.username:
            credentials = Credentials(parsed.username, parsed.password)
            self._default_token_cache = False
        self._credentials = credentials
        self._max_attempts = max(1, max_attempts)
        self._backoff, self._max_backoff = backoff, max_backoff
        self._chunk_threshold, self._chunk_size = chunk_threshold, max(1 << 20, chunk_size)
        self._sleep = sleep
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._auth_lock = threading.Lock()
        self._client = guarded_client(
            transport=transport,
            verify=(default_ssl_context() if verify is None else verify)
            if scheme == "https"
            else False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # Digests name the bytes as stored: no transparent decompression.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            # Redirects (blob GETs to object storage) are followed by _request, which decides
            # what each hop may receive.
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HTTPRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return self._url

    def _name(self, repo: str) -> str:
        return f"{self.namespace}/{repo}" if self.namespace else repo

    # -- auth ----------------------------------------------------------------------------
    @property
    def credentials(self) -> Credentials:
        if self._credentials is None:
            self._credentials = credentials_for(self.host)
        return self._credentials

    def _persistent_tokens(self) -> TokenCache | None:
        if self._token_cache is None and self._default_token_cache:
            self._token_cache = default_token_cache()
            self._default_token_cache = False
        return self._token_cache

    def _principal(self) -> str:
        return principal_of(self.credentials)

    def _stored_token(self, key: str, realm: str | None, service: str | None) -> str | None:
        """A token another process (or an earlier client) cached for these scopes (see
        tokens.stored_token; ``realm`` None: the first request of a process). Kept in memory
        from here on."""
        stored = stored_token(
            self._persistent_tokens(), self._origin_key, key, self._principal, realm, service
        )
        if stored is None:
            return None
        with self._auth_lock:
            self._tokens[key] = (stored.token, time.monotonic() + stored.expires - time.time())
        return stored.token

    def _known_token(self, key: str) -> str | None:
        with self._auth_lock:
            cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        return self._stored_token(key, None, None)

    def _forget_token(self, scopes: tuple[str, ...]) -> None:
        """Drop a token the registry refused, here and in the cross-process cache."""
        key = " ".join(scopes)
        with self._auth_lock:
            self._tokens.pop(key, None)
        persistent = self._persistent_tokens()
        if persistent is not None:
            persistent.forget(token_cache_key(self._origin_key, key))

    def _token(self, scopes: tuple[str, ...]) -> str:
        assert self._challenge is not None
        key = " ".join(scopes)
        with self._auth_lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic():
                return cached[0]
        params = self._challenge[1]
        realm = token_realm(params, self._where)
        service = params.get("service", "")
        stored = self._stored_token(key, realm, service)
        if stored is not None:
            return stored
        method, url, headers, form = token_request(realm, params, scopes, self.credentials)
        request = self._client.build_request(method, url, headers=headers, content=form)
        try:
            with deadline_scope(limits().request_seconds):
                resp = self._client.send(request, stream=True)
                try:
                    body = read_body(resp, _SMALL_ANSWER, f"{self._where}: token service")
                finally:
                    resp.close()
        except httpx.TransportError as exc:
            problem = describe_transport_error(exc)
            raise RegistryError(
                f"{self._where}: token service {realm} unreachable ({problem})"
            ) from None
        except ContentTooLargeError as exc:
            raise RegistryError(str(exc)) from None
        if resp.status_code in (401, 403):
            raise credentials_refused(
                self._where, self.host, registry_error_text(resp.status_code, body)
            )
        if resp.status_code != 200:
            raise RegistryError(
                f"{self._where}: token service: {registry_error_text(resp.status_code, body)}"
            )
        token, usable = token_from_answer(body, self._where)
        with self._auth_lock:
            self._tokens[key] = (token, time.monotonic() + usable)
        persistent = self._persistent_tokens()
        if persistent is not None:
            persistent.remember(
                self._origin_key, key, token, usable, realm, service, self._principal()
            )
        return token

    def _auth_header(self, scopes: tuple[str, ...]) -> dict[str, str]:
        if self._challenge is None:
            # No 401 seen yet: a token cached for these scopes (by this client, or by an
            # earlier process) spares the 401 round trip.
            stored = self._known_token(" ".join(scopes)) if scopes else None
            return {"Authorization": f"Bearer {stored}"} if stored else {}
        scheme, _ = self._challenge
        if scheme == "basic":
            basic = self.credentials.basic()
            return {"Authorization": basic} if basic else {}
        if scheme == "bearer":
            return {"Authorization": f"Bearer {self._token(scopes)}"}
        return {}

    # -- requests ------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        url: str | httpx.URL,
        scopes: tuple[str, ...] = (),
        *,
        headers: dict[str, str] | None = None,
        content: ContentFactory | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        max_body: int | None = None,
    ) -> httpx.Response:
        """One logical request: answers a 401 challenge once, follows redirects of reads,
        retries transient failures. Credentials go only to the registry's own origin. Unless
        ``stream``, the body is read here, refused beyond ``max_body`` (default: the document
        limit)."""
        target = url if isinstance(url, httpx.URL) else httpx.URL(self.base + url)
        what = f"{method} {target.path}"
        answered_challenge = False
        attempt = redirects = 0
        with deadline_scope(limits().request_seconds):
            while True:
                hint: float | None = None
                own = same_origin(target, self._origin)
                auth = self._auth_header(scopes) if own else {}
                request = self._client.build_request(
                    method,
                    target,
                    params=params,
                    headers={**(headers or {}), **auth},
                    content=content() if content is not None else None,
                )
                try:
                    resp = self._client.send(request, stream=True)
                except httpx.TransportError as exc:
                    failure = f"{self._where}: {what}: {describe_transport_error(exc)}"
                    if abandoned(exc):  # too slow, or out of time: another try would be too
                        raise RegistryError(failure) from None
                else:
                    if resp.status_code == 401 and own and not answered_challenge:
                        resp.close()
                        self._learn_challenge(resp)
                        if auth.get("Authorization", "").startswith("Bearer "):
                            self._forget_token(scopes)  # a cached token was refused
                        answered_challenge = True
                        continue
                    if resp.status_code in _REDIRECTS and method in ("GET", "HEAD"):
                        target = self._redirect_target(resp, target, redirects)
                        redirects += 1
                        params = None  # the new location carries its own query
                        continue
                    if resp.status_code not in _RETRY_STATUSES:
                        return resp if stream else self._bounded(resp, max_body, what)
                    resp = self._bounded(resp, _SMALL_ANSWER, what, keep_partial=True)
                    failure = f"{self._where}: {what}: {_oci_error_text(resp)}"
                    hint = retry_after(resp)
                attempt += 1
                if attempt >= self._max_attempts:
                    raise RegistryError(f"{failure} (gave up after {attempt} attempts)")
                self._sleep(backoff_delay(attempt - 1, self._backoff, self._max_backoff, hint))

    def _redirect_target(self, resp: httpx.Response, current: httpx.URL, count: int) -> httpx.URL:
        """Where a redirect of a read leads (object storage, typically). Plain http only on
        loopback or when this registry itself is plain http; never more than a few hops."""
        resp.close()
        location = resp.headers.get("Location", "")
        if count >= _MAX_REDIRECTS or not location:
            raise RegistryError(f"{self._where}: {current.path}: too many or empty redirects")
        try:
            target = current.join(location)
        except httpx.InvalidURL:
            raise RegistryError(f"{self._where}: redirect to an invalid URL") from None
        if target.scheme not in ("https", "http") or (
            target.scheme == "http"
            and self._origin.scheme == "https"
            and not is_loopback(target.host)
        ):
            raise RegistryError(
                f"{self._where}: {current.path}: refusing a redirect to {target.scheme}://"
                f"{target.host} (https is required)"
            )
        return target

    @staticmethod
    def _bounded(
        resp: httpx.Response, cap: int | None, what: str, *, keep_partial: bool = False
    ) -> httpx.Response:
        """The response with its body read (at most ``cap`` bytes)."""
        cap = limits().max_document_bytes if cap is None else cap
        try:
            # A HEAD answer has no body: its Content-Length is the size of the blob it names.
            body = b"" if resp.request.method == "HEAD" else read_body(resp, cap, what)
        except ContentTooLargeError:
            if not keep_partial:
                raise
            body = b""
        except httpx.TransportError:
            if not keep_partial:
                raise
            body = b""
        finally:
            resp.close()
        headers = [
            (k, v)
            for k, v in resp.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(resp.status_code, headers=headers, content=body, request=resp.request)

    def _learn_challenge(self, resp: httpx.Response) -> None:
        header = resp.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header) if header else ("", {})
        if scheme not in ("basic", "bearer"):
            raise RegistryError(
                f"{self._where}: authentication required with an unsupported scheme"
                f" {remote_text(header, 80)!r}"
            )
        if scheme == "basic" and not self.credentials.basic():
            raise RegistryError(
                f"{self._where}: the registry wants a username and password; run"
                f" `docker login {self.host}` or set BSR_TEAM_CACHE_REGISTRY_USERNAME/_PASSWORD"
            )
        with self._auth_lock:
            self._challenge = (scheme, params)

    def _fail(self, resp: httpx.Response, what: str) -> RegistryError:
        if resp.status_code == 401:
            challenge = resp.headers.get("WWW-Authenticate", "")
            return not_authorized(self._where, what, self.host, _oci_error_text(resp), challenge)
        if resp.status_code == 403:
            return AccessDeniedError(
                f"{self._where}: {what}: access denied ({_oci_error_text(resp)}); your"
                " credentials may not use this repository"
            )
        return RegistryError(f"{self._where}: {what}: {_oci_error_text(resp)}")

    @staticmethod
    def _scope(name: str, actions: str) -> str:
        return f"repository:{name}:{actions}"

    def ping(self) -> None:
        """``GET /v2/``: reachable and speaks the distribution API (authenticates if asked)."""
        resp = self._request("GET", "/v2/")
        if resp.status_code != 200:
            raise self._fail(resp, "GET /v2/ (is this an OCI registry?)")

    # -- blobs ---------------------------------------------------------------------------
    def blob_exists(self, repo: str, digest: str) -> bool:
        name = self._name(repo)
        validate_oci_digest(digest, f"{self.host}/{name}")
        resp = self._request("HEAD", f"/v2/{name}/blobs/{digest}", (self._scope(name, "pull"),))
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._fail(resp, f"HEAD blob {digest} in {name}")

    def read_blob(self, repo: str, digest: str, max_bytes: int | None = None) -> bytes:
        """The blob, verified; more than ``max_bytes`` (default: the module limit) is refused
        as it arrives, and what exceeds SPILL_BYTES waits on disk, not in memory."""
        name = self._name(repo)
        cap = limits().max_module_bytes if max_bytes is None else max_bytes
        where = f"{self.host}/{name}"
        if cap <= SPILL_BYTES:  # small enough to hold (most blobs: their size is declared)
            data = b"".join(self._blob_stream(name, digest, cap))
            return verify_blob(data, digest, where)
        with tempfile.SpooledTemporaryFile(max_size=SPILL_BYTES) as held:
            hasher = hashlib.sha256()
            for block in self._blob_stream(name, digest, cap):
                hasher.update(block)
                held.write(block)
            actual = "sha256:" + hasher.hexdigest()
            if actual != digest:
                raise DigestMismatchError(
                    f"{where}: blob {digest} is corrupt (its content hashes to {actual})"
                )
            held.seek(0)
            return held.read()

    def open_blob(self, repo: str, digest: str, max_bytes: int) -> Iterator[bytes]:
        """The blob's bytes as they arrive (what ``read_blob`` reads: same credentials,
        redirects, retries from where a lost connection stopped, size cap and deadline),
        verified after the last chunk. Nothing is requested before the first chunk is asked
        for."""
        from bsr_team_cache.oci.streaming import verified_chunks

        name = self._name(repo)
        chunks = self._blob_stream(name, digest, max_bytes)
        return verified_chunks(chunks, digest, f"{self.host}/{name}")

    def blob_chunks(
        self, repo: str, digest: str, max_bytes: int, *, start: int = 0, until: float
    ) -> Iterator[bytes]:
        """The blob's bytes from offset ``start`` as they arrive, as ``open_blob`` reads them
        but not verified, all by ``until`` (monotonic): for a caller that hashes the whole blob,
        having read its first ``start`` bytes elsewhere within the same time (a direct read cut
        short, oci/__init__.py)."""
        return self._blob_stream(self._name(repo), digest, max_bytes, start, until)

    def read_blob_to(self, repo: str, digest: str, dest: Path, max_bytes: int | None = None) -> int:
        """Stream a blob into ``dest`` (atomic rename), hashing as it arrives; a connection
        lost mid-blob resumes where it stopped (``Range``). Returns the size."""
        name = self._name(repo)
        cap = limits().max_module_bytes if max_bytes is None else max_bytes
        stream = self._blob_stream(name, digest, cap)
        return write_verified(dest, stream, digest, f"{self.host}/{name}")

    def _blob_stream(
        self, name: str, digest: str, cap: int, start: int = 0, until: float | None = None
    ) -> Iterator[bytes]:
        validate_oci_digest(digest, f"{self.host}/{name}")
        # Every attempt within one request's time (from the first step, unless given), each
        # step within it (not held across a yield, where the consumer's code runs).
        until = deadline_in(limits().request_seconds) if until is None else until
        yield from stepped(self._blob_attempts(name, digest, cap, start), until)

    def _blob_attempts(self, name: str, digest: str, cap: int, received: int) -> Iterator[bytes]:
        # ``received``: the bytes asked from (Range); a server that ignores it: skipped below.
        problem = ""
        for attempt in range(self._max_attempts):
            headers = {"Range": f"bytes={received}-"} if received else {}
            resp = self._request(
                "GET",
                f"/v2/{name}/blobs/{digest}",
                (self._scope(name, "pull"),),
                headers=headers,
                stream=True,
            )
            try:
                if resp.status_code not in (200, 206):
                    resp = self._bounded(resp, _SMALL_ANSWER, "blob", keep_partial=True)
                    if resp.status_code == 404:
                        raise MissingBlobError(f"{self.host}/{name}: blob {digest} not found")
                    raise self._fail(resp, f"GET blob {digest} from {name}")
                # A server that ignores Range sends everything again: skip what we have.
                skip = received if resp.status_code == 200 else 0
                for block in resp.iter_raw(_STREAM_BLOCK):
                    if skip:
                        cut = min(skip, len(block))
                        block, skip = block[cut:], skip - cut
                        if not block:
                            continue
                    received += len(block)
                    if received > cap:
                        raise ContentTooLargeError(
                            f"{self.host}/{name}: blob {digest} is larger than {cap} bytes"
                        )
                    yield block
                return
            except httpx.TransportError as exc:
                problem = describe_transport_error(exc)
                if abandoned(exc):
                    break
            finally:
                resp.close()
            self._sleep(backoff_delay(attempt, self._backoff, self._max_backoff))
        raise RegistryError(
            f"{self._where}: GET blob {digest}: {problem} (gave up after {attempt + 1}"
            f" attempts, {received} bytes in)"
        )

    def _start_upload(
        self, name: str, scopes: tuple[str, ...], params: dict[str, str] | None = None
    ) -> httpx.Response:
        return self._request("POST", f"/v2/{name}/blobs/uploads/", scopes, params=params)

    def _location(self, resp: httpx.Response, what: str) -> httpx.URL:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{self._where}: {what}: the registry sent no upload Location")
        return resp.url.join(location)

    def _finish_upload(
        self,
        location: httpx.URL,
        scopes: tuple[str, ...],
        digest: str,
        size: int,
        content: ContentFactory | None,
    ) -> None:
        resp = self._request(
            "PUT",
            location.copy_merge_params({"digest": digest}),
            scopes,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=content,
        )
        if resp.status_code not in (201, 204):
            raise self._fail(resp, f"PUT blob {digest}")

    def push_blob(self, repo: str, data: bytes, digest: str) -> None:
        verify_blob(data, digest, "push")
        name = self._name(repo)
        scopes = (self._scope(name, "pull,push"),)
        resp = self._start_upload(name, scopes)
        if resp.status_code != 202:
            raise self._fail(resp, f"start upload to {name}")
        self._finish_upload(self._location(resp, "upload"), scopes, digest, len(data), lambda: data)

    def push_blob_file(self, repo: str, path: Path, digest: str) -> None:
        """Upload a blob from disk without reading it into memory (chunked when large)."""
        name = self._name(repo)
        scopes = (self._scope(name, "pull,push"),)
        size = path.stat().st_size
        resp = self._start_upload(name, scopes)
        if resp.status_code != 202:
            raise self._fail(resp, f"start upload to {name}")
        location = self._location(resp, "upload")
        if size <= self._chunk_threshold:
            self._finish_upload(location, scopes, digest, size, lambda: file_chunks(path))
            return
        offset, setbacks = 0, 0
        while offset < size:
            length = min(self._chunk_size, size - offset)
            start = offset
            resp = self._request(
                "PATCH",
                location,
                scopes,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{start}-{start + length - 1}",
                },
                content=lambda start=start, length=length: file_chunks(path, start, length),
            )
            if resp.status_code == 202:
                location = self._location(resp, "chunk upload")
                offset += length
                continue
            # A chunk answered with an error, e.g. after a retry of one the registry had taken
            # (its answer lost): ask the session how far it got and go on from there; if the
            # session is gone (Distribution keeps its state in the URL), start a new one.
            setbacks += 1
            if setbacks > self._max_attempts:
                raise self._fail(resp, f"PATCH chunk {start}-{start + length - 1} to {name}")
            status = self._request("GET", location, scopes)
            if status.status_code == 204:
                location = self._location(status, "upload status")
                offset = _upload_offset(status)
                continue
            restart = self._start_upload(name, scopes)
            if restart.status_code != 202:
                raise self._fail(restart, f"restart upload to {name}")
            location, offset = self._location(restart, "upload"), 0
        self._finish_upload(location, scopes, digest, 0, None)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; False if the registry declined (caller uploads instead)."""
        name, source = self._name(repo), self._name(from_repo)
        scopes = (self._scope(name, "pull,push"), self._scope(source, "pull"))
        resp = self._start_upload(name, scopes, {"mount": digest, "from": source})
        if resp.status_code == 201:
            return True
        if resp.status_code == 202:
            # The registry opened an ordinary upload session instead; close it politely.
            with contextlib.suppress(RegistryError):
                self._request("DELETE", self._location(resp, "mount"), scopes)
            return False
        raise self._fail(resp, f"mount {digest} from {source} into {name}")

    def delete_blob(self, repo: str, digest: str) -> None:
        name = self._name(repo)
        resp = self._request("DELETE", f"/v2/{name}/blobs/{digest}", (self._scope(name, "delete"),))
        if resp.status_code not in (202, 404):
            raise self._fail(resp, f"DELETE blob {digest} in {name}")

    # -- manifests and tags --------------------------------------------------------------
    def push_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        name = self._name(repo)
        digest = sha256_digest(data)
        resp = self._request(
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            (self._scope(name, "pull,push"),),
            headers={"Content-Type": media_type},
            content=lambda: data,
        )
        if resp.status_code not in (200, 201):
            raise self._fail(resp, f"PUT manifest {name}:{reference}")
        echoed = resp.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise RegistryError(
                f"{self.host}/{name}:{reference}: the registry stored digest {echoed}, we sent"
                f" {digest} (a proxy rewrote the manifest?)"
            )
        return digest

    def _manifest_request(self, method: str, repo: str, reference: str) -> httpx.Response | None:
        """HEAD or GET of a manifest: the 200 answer, None for 404, else an error."""
        name = self._name(repo)
        resp = self._request(
            method,
            f"/v2/{name}/manifests/{reference}",
            (self._scope(name, "pull"),),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"{method} manifest {name}:{reference}")
        return resp

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest a tag points at (HEAD), or None if absent."""
        resp = self._manifest_request("HEAD", repo, reference)
        if resp is None:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        found = self.read_manifest(repo, reference)
        return sha256_digest(found[0]) if found else None

    def replace_manifest(
        self, repo: str, tag: str, data: bytes, media_type: str, expected: str | None
    ) -> str:
        # The distribution spec has no conditional PUT: checking right before the PUT narrows
        # the window to one round trip; callers verify and retry.
        current = self.manifest_digest(repo, tag)
        if current != expected:
            raise ConflictError(
                f"{self.host}/{self._name(repo)}:{tag} changed meanwhile ({expected} -> {current})"
            )
        return self.push_manifest(repo, tag, data, media_type)

    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        name = self._name(repo)
        resp = self._manifest_request("GET", repo, reference)
        if resp is None:
            return None
        return manifest_answer(
            resp.content,
            reference,
            resp.headers.get("Docker-Content-Digest", ""),
            resp.headers.get("Content-Type", ""),
            f"{self.host}/{name} manifest",
        )

    def delete_manifest(self, repo: str, digest: str) -> None:
        name = self._name(repo)
        resp = self._request(
            "DELETE", f"/v2/{name}/manifests/{digest}", (self._scope(name, "delete"),)
        )
        if resp.status_code not in (202, 404):
            raise self._fail(resp, f"DELETE manifest {name}@{digest}")

    def list_tags(self, repo: str, page_size: int = 1000, max_pages: int = 1000) -> list[str]:
        """Every tag, page by page. A ``Link`` to the next page must stay on this registry
        (it is asked with our credentials); a registry that never stops paging is cut off."""
        name = self._name(repo)
        scopes = (self._scope(name, "pull"),)
        url: httpx.URL = httpx.URL(f"{self.base}/v2/{name}/tags/list").copy_merge_params(
            {"n": str(page_size)}
        )
        tags: list[str] = []
        seen: set[str] = set()
        for _ in range(max_pages):
            seen.add(str(url))
            resp = self._request("GET", url, scopes)
            if resp.status_code == 404:
                return tags
            if resp.status_code != 200:
                raise self._fail(resp, f"list tags of {name}")
            try:
                page = json.loads(resp.content).get("tags") or []
                if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                    raise ValueError("tags is not a list of strings")
            except (ValueError, AttributeError, RecursionError) as exc:
                raise RegistryError(
                    f"{self._where}: list tags of {name}: bad answer ({exc})"
                ) from None
            tags.extend(page)
            link = resp.headers.get("Link", "")
            if 'rel="next"' not in link:
                return tags
            try:
                url = resp.url.join(link.split(";", 1)[0].strip().strip("<>"))
            except httpx.InvalidURL:
                raise RegistryError(
                    f"{self._where}: list tags of {name}: bad Link header"
                ) from None
            if not same_origin(url, self._origin) or str(url) in seen:
                raise RegistryError(
                    f"{self._where}: list tags of {name}: the next page is not on this registry"
                    " or repeats a page; refusing to follow it"
                )
        raise RegistryError(f"{self._where}: list tags of {name}: more than {max_pages} pages")
