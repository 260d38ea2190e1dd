"""Servers that lie, for the attack tests, and a sandboxed "machine" to run the CLI on.

* ``HostileRegistry``: a front for a real registry (CNCF Distribution) that forwards every
  request, except what its mode changes: an upload ``Location`` or a tags ``Link`` naming
  another host, an endless blob, a 100 MB manifest, one byte every few seconds.
* ``HostileBSR``: the dev BSR with a mode per lie: an owner name or a dependency commit with a
  newline, a graph without a pinned commit, a file path with a NUL or a ``..``, an endless
  Download body, one byte every few seconds.
* ``Recorder``: "another host", which records every request it gets (headers included).
* ``Machine``: a member's machine in a directory (home, buf cache, store, export, a project,
  and a victim directory with a canary file); ``snapshot_outside`` proves that a run wrote
  nothing outside the places it may write.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bsr_team_cache.bsr.devbsr import DevBSR, DevBSRServer, ModuleRepository, ensure_tls_files
from bsr_team_cache.bsr.devbsr.server import _make_handler
from bsr_team_cache.bsr.proto import module_v1_pb2 as mpb

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    return server


def _read_request_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(handler.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                handler.rfile.readline()
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class _Served:
    """A server of these tests on a free loopback port (``self.server`` once started)."""

    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Recorder(_Served):
    """Another host: answers everything (201 for PUT, 202 for POST/PATCH, else 200 with an
    empty tag list) and records each request."""

    requests: list[dict] = field(default_factory=list)

    def start(self) -> Recorder:
        recorder = self

        class Handler(_Quiet):
            def _any(self) -> None:
                body = _read_request_body(self)
                recorder.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "body_bytes": len(body),
                    }
                )
                status = {"PUT": 201, "POST": 202, "PATCH": 202}.get(self.command, 200)
                payload = b'{"name":"x","tags":[]}' if self.command == "GET" else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Location", "/v2/x/blobs/uploads/next")
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_PATCH = do_HEAD = do_DELETE = _any

        self.server = _serve(Handler)
        return self

    def credentials_seen(self, *secrets: str) -> list[dict]:
        """Requests that carried an Authorization header or any of ``secrets``."""
        found = []
        for request in self.requests:
            text = json.dumps(request)
            if "authorization" in {k.lower() for k in request["headers"]} or any(
                s in text for s in secrets
            ):
                found.append(request)
        return found


class HostileRegistry(_Served):
    """Forwards to ``upstream`` (a registry URL), except as ``mode`` says:

    ``foreign-location``  an upload's Location names ``foreign`` (another host)
    ``foreign-link``      a tags page's Link names ``foreign``
    ``endless-blob``      a blob GET answers 200 and never stops sending
    ``huge-manifest``     a module manifest GET answers with 100 MB (chunked, no length)
    ``trickle``           every answer comes one byte every ``interval`` seconds
    ``http-realm``        every request is challenged for a bearer token from a plain-http realm
                          on another host

    With ``basic=(user, password)`` it wants HTTP basic auth (and checks it) itself.
    """

    def __init__(
        self,
        upstream: str,
        mode: str = "",
        *,
        foreign: str = "",
        basic: tuple[str, str] | None = None,
        interval: float = 5.0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = mode
        self.foreign = foreign
        self.basic = basic
        self.interval = interval
        self.served = 0
        self._client = httpx.Client(timeout=60)

    def start(self) -> HostileRegistry:
        front = self

        class Handler(_Quiet):
            def _any(self) -> None:
                body = _read_request_body(self)
                front.served += 1
                if front.basic is not None and not self._authorized():
                    self._send(401, {"WWW-Authenticate": 'Basic realm="hostile"'}, b"")
                    return
                path = urlsplit(self.path).path
                if front.mode == "http-realm":
                    challenge = 'Bearer realm="http://token.example.test/token",service="hostile"'
                    self._send(401, {"WWW-Authenticate": challenge}, b"")
                    return
                if front.mode == "trickle":
                    self._trickle()
                    return
                if (
                    front.mode == "endless-blob"
                    and "/blobs/sha256:" in path
                    and self.command == "GET"
                ):
                    self._endless()
                    return
                if (
                    front.mode == "huge-manifest"
                    and "/dependencies/" in path
                    and "/manifests/" in path
                    and self.command == "GET"
                ):
                    self._huge_manifest()
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in HOP_BY_HOP and k.lower() != "authorization"
                }
                resp = front._client.request(
                    self.command, front.upstream + self.path, headers=headers, content=body
                )
                out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
                if "location" in {k.lower() for k in out}:
                    key = next(k for k in out if k.lower() == "location")
                    out[key] = out[key].replace(front.upstream, front.url)
                    if front.mode == "foreign-location" and "/blobs/uploads/" in path:
                        out[key] = front.foreign + "/v2/upload/somewhere?state=x"
                if front.mode == "foreign-link" and path.endswith("/tags/list"):
                    out["Link"] = f'<{front.foreign}/v2/x/tags/list?n=1000&last=z>; rel="next"'
                self._send(
                    resp.status_code,
                    out,
                    resp.content if self.command != "HEAD" else b"",
                    head=self.command == "HEAD",
                    length=len(resp.content),
                )

            do_GET = do_PUT = do_POST = do_PATCH = do_HEAD = do_DELETE = _any

            def _authorized(self) -> bool:
                user, password = front.basic  # type: ignore[misc]
                expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                return self.headers.get("Authorization") == expected

            def _send(
                self,
                status: int,
                headers: dict[str, str],
                body: bytes,
                *,
                head: bool = False,
                length: int | None = None,
            ) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _endless(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"\0" * 65536
                frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                try:
                    while True:
                        self.wfile.write(frame)
                except OSError:
                    return

            def _huge_manifest(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b'{"schemaVersion":2,"x":"' + b"A" * 65000
                sent = 0
                try:
                    while sent < 100 << 20:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        sent += len(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    return

            def _trickle(self) -> None:
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
                try:
                    for byte in answer:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(front.interval)
                except OSError:
                    return

        self.server = _serve(Handler)
        return self

    def stop(self) -> None:
        super().stop()
        self._client.close()


class HostileBSR(DevBSR):
    """The dev BSR, lying about ``target`` (an ``owner/module``) as ``mode`` says:

    ``owner-newline``        GetOwners names the target's owner ``<owner>\\nevil: injected``
    ``dep-commit-newline``   GetGraph gives the target's commit id with a trailing newline
    ``graph-missing-commit`` GetGraph leaves the target's commit out
    ``nul-path``             Download adds a file ``a\\0.proto`` to the target
    ``traversal-path``       Download adds a file ``../../escaped.proto`` to the target
    ``endless-download``     Download answers 200 and never stops sending
    ``gzip-bomb-download``   Download answers ~0.5 MB of gzip that inflates to 510 MiB
    ``b5-graph-extra-dep``   the b5 GetGraph gives the target a dependency (grpc/grpc) that
                             the b4 (v1beta1) graph does not have
    ``trickle``              every answer comes one byte every ``interval`` seconds
    """

    def __init__(self, repo: ModuleRepository, mode: str, target: str, interval: float = 5.0):
        super().__init__(repo)
        self.mode = mode
        owner, module = target.split("/")
        found = repo.module(owner, module)
        assert found is not None, target
        self.target = found
        self.interval = interval
        self.calls: list[str] = []

    def _target_commits(self) -> set[str]:
        return {c.commit_id for c in self.target.commits()}

    def get_owners(self, req):
        resp, refs = super().get_owners(req)
        if self.mode == "owner-newline":
            for owner in resp.owners:
                if owner.organization.id == self.target.owner_id:
                    owner.organization.name = owner.organization.name + "\nevil: injected"
        return resp, refs

    def get_graph(self, req):
        resp, refs = super().get_graph(req)
        targets = self._target_commits()
        if self.mode == "dep-commit-newline":
            for commit in resp.graph.commits:
                if commit.id in targets:
                    commit.id += "\n"
            for edge in resp.graph.edges:
                for node in (edge.from_node, edge.to_node):
                    if node.commit_id in targets:
                        node.commit_id += "\n"
        if self.mode == "b5-graph-extra-dep":
            extra = self.repo.module("grpc", "grpc").commits()[0]
            resp.graph.commits.append(self._commit_proto(extra))
            for target in targets & {c.id for c in resp.graph.commits}:
                resp.graph.edges.add(
                    from_node=mpb.Graph.Node(commit_id=target),
                    to_node=mpb.Graph.Node(commit_id=extra.commit_id),
                )
        if self.mode == "graph-missing-commit":
            kept = [c for c in resp.graph.commits if c.id not in targets]
            del resp.graph.commits[:]
            resp.graph.commits.extend(kept)
            edges = [
                e
                for e in resp.graph.edges
                if e.from_node.commit_id not in targets and e.to_node.commit_id not in targets
            ]
            del resp.graph.edges[:]
            resp.graph.edges.extend(edges)
        return resp, refs

    def download(self, req):
        resp, refs = super().download(req)
        targets = self._target_commits()
        extra = {"nul-path": "a\0.proto", "traversal-path": "../../escaped.proto"}.get(self.mode)
        if extra:
            for content in resp.contents:
                if content.commit.id in targets:
                    content.files.add(path=extra, content=b'syntax = "proto3";\n')
        return resp, refs

    def start(self, tls_dir: Path) -> tuple[DevBSRServer, Path]:
        """An HTTPS server on 127.0.0.1 (modules name it ``localhost:<port>``)."""
        tls = ensure_tls_files(tls_dir, ["localhost"])
        server = DevBSRServer(
            self, host="127.0.0.1", cert_file=tls.server_cert, key_file=tls.server_key
        )
        base = _make_handler(self)
        app = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                app.calls.append(self.path)
                if app.mode == "trickle":
                    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
                    try:
                        for byte in answer:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(app.interval)
                    except (OSError, ssl.SSLError):
                        pass
                    return
                if app.mode == "gzip-bomb-download" and self.path.endswith("/Download"):
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    body = _gzip_zeros(510 << 20)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/proto")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    with contextlib.suppress(OSError, ssl.SSLError):
                        self.wfile.write(body)
                    return
                if app.mode == "endless-download" and self.path.endswith("/Download"):
                    length = int(self.headers.get("Content-Length") or 0)
                    self.rfile.read(length)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/proto")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"\x0a" + b"\xff" * 64
                    frame = f"{len(chunk) * 1000:x}\r\n".encode() + chunk * 1000 + b"\r\n"
                    try:
                        while True:
                            self.wfile.write(frame)
                    except (OSError, ssl.SSLError):
                        return
                super().do_POST()

        server.httpd.RequestHandlerClass = Handler
        return server.start(), tls.ca_cert


@functools.cache
def _gzip_zeros(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed (about size/1000 bytes)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size >> 20)]
    return b"".join([*parts, packer.flush()])


@dataclass
class Machine:
    """One member's machine in a directory; the CLI runs with it as HOME."""

    root: Path

    def __post_init__(self) -> None:
        for sub in ("home", "buf-cache", "store", "export", "project", "victim"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.victim / "canary.txt").write_text("precious\n")

    @property
    def victim(self) -> Path:
        return self.root / "victim"

    @property
    def project(self) -> Path:
        return self.root / "project"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "HOME": str(self.root / "home"),
            "BUF_CACHE_DIR": str(self.root / "buf-cache"),
            "BSR_TEAM_CACHE_DIR": str(self.root / "store"),
            "XDG_CONFIG_HOME": str(self.root / "home" / ".config"),
            "XDG_DATA_HOME": str(self.root / "home" / ".local" / "share"),
            "DOCKER_CONFIG": str(self.root / "home" / ".docker"),
            "NETRC": str(self.root / "home" / ".netrc"),
            **extra,
        }

    def snapshot_outside(self, *allowed: str) -> dict[str, str]:
        """Every file and directory under the machine outside ``allowed`` (default: the buf
        cache, the store, the export dir), with a digest of each file's content."""
        skip = {self.root / a for a in (allowed or ("buf-cache", "store", "export"))}
        seen: dict[str, str] = {}
        for directory, dirs, files in os.walk(self.root, followlinks=False):
            here = Path(directory)
            dirs[:] = [d for d in dirs if here / d not in skip]
            for name in dirs:
                path = here / name
                rel = str(path.relative_to(self.root))
                seen[rel] = "link:" + os.readlink(path) if path.is_symlink() else "dir"
            for name in files:
                path = here / name
                rel = str(path.relative_to(self.root))
                if path.is_symlink():
                    seen[rel] = "link:" + os.readlink(path)
                else:
                    seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        return seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(
    argv: list[str], env: dict[str, str], timeout: float = 300
) -> tuple[int, float, str, str, int]:
    """Run ``argv`` in a fresh wrapper process whose only child it is; (peak RSS of the child
    in MB, seconds, stdout, stderr, exit code)."""
    import subprocess
    import sys

    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.monotonic()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024\n"
        "print(json.dumps([rss, time.monotonic() - t, p.stdout, p.stderr, p.returncode]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    rss, seconds, out, err, code = json.loads(done.stdout)
    return rss, seconds, out, err, code


Check = Callable[[], None]
