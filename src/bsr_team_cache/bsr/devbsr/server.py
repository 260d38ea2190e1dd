"""A BSR-compatible HTTPS server for tests, demos and offline experiments.

It speaks the Connect protocol (binary protobuf, and JSON for curl) for the part of
``buf.registry.module.v1`` and ``buf.registry.owner.v1`` that ``buf dep update`` and
``buf build`` call, serving the modules of a :class:`ModuleRepository`.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from bsr_team_cache.bsr.devbsr.repository import DevCommit, ModuleRepository, transitive_deps
from bsr_team_cache.bsr.proto import module_v1_pb2 as mpb
from bsr_team_cache.bsr.proto import module_v1beta1_pb2 as bpb
from bsr_team_cache.bsr.proto import owner_v1_pb2 as opb

_STATUS = {
    "invalid_argument": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "resource_exhausted": 429,
    "internal": 500,
    "unimplemented": 501,
    "unavailable": 503,
}
_FILE_TYPES = {
    mpb.FILE_TYPE_PROTO: lambda p: p.endswith(".proto"),
    mpb.FILE_TYPE_LICENSE: lambda p: p == "LICENSE",
    mpb.FILE_TYPE_DOC: lambda p: "/" not in p and not p.endswith(".proto") and p != "LICENSE",
}


Handler = Callable[[Any], tuple[Message, list[str]]]


class ConnectError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ServerOptions:
    request_log: Path | None = None
    fail_first: int = 0  # answer the first N RPCs with 503 unavailable (retry tests)
    rate_limit_first: int = 0  # answer the next N RPCs with 429 + Retry-After
    require_token: str | None = None
    deny_owners: set[str] = field(default_factory=set)
    delay_seconds: float = 0.0
    compress: bool = False  # gzip answers for clients that accept it (Connect compression)
    retry_after: int = 0  # seconds the injected failures ask the client to wait
    warning: str = ""  # sent in buf-warning-bin on every answer, as the BSR warns buf


class DevBSR:
    """Request handling, independent of HTTP plumbing."""

    def __init__(self, repo: ModuleRepository, options: ServerOptions | None = None) -> None:
        self.repo = repo
        self.options = options or ServerOptions()
        self._lock = threading.Lock()
        self._calls = 0
        module, owner = "buf.registry.module.v1", "buf.registry.owner.v1"
        beta = "buf.registry.module.v1beta1"  # what buf calls for b4 (v1 buf.yaml projects)
        self.routes: dict[str, tuple[type[Message], Handler]] = {
            f"{module}.CommitService/GetCommits": (mpb.GetCommitsRequest, self.get_commits),
            f"{module}.GraphService/GetGraph": (mpb.GetGraphRequest, self.get_graph),
            f"{module}.DownloadService/Download": (mpb.DownloadRequest, self.download),
            f"{module}.ModuleService/GetModules": (mpb.GetModulesRequest, self.get_modules),
            f"{owner}.OwnerService/GetOwners": (opb.GetOwnersRequest, self.get_owners),
            f"{beta}.CommitService/GetCommits": (bpb.GetCommitsRequest, self.get_commits_v1beta1),
            f"{beta}.GraphService/GetGraph": (bpb.GetGraphRequest, self.get_graph_v1beta1),
            f"{beta}.DownloadService/Download": (bpb.DownloadRequest, self.download_v1beta1),
        }

    # -- bookkeeping ---------------------------------------------------------------------
    def log(self, route: str, refs: list[str], status: str, *, encoding: str = "") -> None:
        if self.options.request_log is None:
            return
        service, _, method = route.partition("/")
        record = {
            "time": time.time(),
            "service": service,
            "method": method,
            "refs": refs,
            "status": status,
        }
        if encoding:
            record["encoding"] = encoding
        line = json.dumps(record)
        with self._lock, open(self.options.request_log, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def injected_fault(self) -> tuple[str, str] | None:
        with self._lock:
            self._calls += 1
            n = self._calls
        if n <= self.options.fail_first:
            return ("unavailable", f"injected failure {n} of {self.options.fail_first}")
        if n <= self.options.fail_first + self.options.rate_limit_first:
            return ("resource_exhausted", "rate limited (injected)")
        return None

    # -- helpers -------------------------------------------------------------------------
    def _commit_proto(self, commit: DevCommit) -> mpb.Commit:
        module = self.repo.module(commit.owner, commit.module)
        assert module is not None and commit.digest is not None
        msg = mpb.Commit(
            id=commit.commit_id,
            owner_id=module.owner_id,
            module_id=module.module_id,
            digest=mpb.Digest(type=mpb.DIGEST_TYPE_B5, value=commit.digest.value),
            created_by_user_id=module.owner_id,
        )
        msg.create_time.FromDatetime(commit.create_time)
        return msg

    def _commit_proto_v1beta1(self, commit: DevCommit, digest_type: int) -> bpb.Commit:
        """A v1beta1 Commit with the b4 digest if asked for, else b5 (the latest type)."""
        module = self.repo.module(commit.owner, commit.module)
        assert module is not None and commit.digest is not None and commit.b4 is not None
        b4 = digest_type == bpb.DIGEST_TYPE_B4
        msg = bpb.Commit(
            id=commit.commit_id,
            owner_id=module.owner_id,
            module_id=module.module_id,
            digest=bpb.Digest(
                type=bpb.DIGEST_TYPE_B4 if b4 else bpb.DIGEST_TYPE_B5,
                value=(commit.b4 if b4 else commit.digest).value,
            ),
            created_by_user_id=module.owner_id,
        )
        msg.create_time.FromDatetime(commit.create_time)
        return msg

    def _check_owner(self, owner: str) -> None:
        if owner in self.options.deny_owners:
            raise ConnectError("permission_denied", f"access to owner {owner!r} is denied")

    def _resolve(self, ref: mpb.ResourceRef) -> DevCommit:
        which = ref.WhichOneof("value")
        if which == "id":
            commit = self.repo.commits.get(ref.id.replace("-", "").lower())
            if commit is None:
                raise ConnectError("not_found", f"commit {ref.id!r} not found")
            self._check_owner(commit.owner)
            return commit
        if which == "name":
            name = ref.name
            self._check_owner(name.owner)
            child = name.WhichOneof("child")
            label = getattr(name, child) if child else None
            if self.repo.module(name.owner, name.module) is None:
                raise ConnectError("not_found", f"module {name.owner}/{name.module} not found")
            commit = self.repo.resolve(name.owner, name.module, label)
            if commit is None:
                raise ConnectError(
                    "not_found",
                    f"label or commit {label!r} not found for module {name.owner}/{name.module}",
                )
            return commit
        raise ConnectError("invalid_argument", "resource_ref must set id or name")

    @staticmethod
    def _describe(ref: mpb.ResourceRef) -> str:
        if ref.WhichOneof("value") == "id":
            return ref.id
        n = ref.name
        child = n.WhichOneof("child")
        suffix = f":{getattr(n, child)}" if child else ""
        return f"{n.owner}/{n.module}{suffix}"

    # -- RPCs ----------------------------------------------------------------------------
    def get_commits(self, req: mpb.GetCommitsRequest) -> tuple[Message, list[str]]:
        refs = [self._describe(r) for r in req.resource_refs]
        if not req.resource_refs:
            raise ConnectError("invalid_argument", "resource_refs must not be empty")
        commits = [self._commit_proto(self._resolve(r)) for r in req.resource_refs]
        return mpb.GetCommitsResponse(commits=commits), refs

    def _closure(self, refs: list) -> dict[str, DevCommit]:
        """The commits the refs resolve to and all they depend on. Like the BSR, refuse refs
        that resolve to the same module twice."""
        roots = [self._resolve(r) for r in refs]
        modules = [r.key for r in roots]
        if len(set(modules)) != len(modules):
            raise ConnectError(
                "invalid_argument", "the specified ResourceRefs must reference unique Modules"
            )
        ordered: dict[str, DevCommit] = {}
        for root in roots:
            ordered.setdefault(root.commit_id, root)
            for dep in transitive_deps(root):
                ordered.setdefault(dep.commit_id, dep)
        return ordered

    def get_graph(self, req: mpb.GetGraphRequest) -> tuple[Message, list[str]]:
        refs = [self._describe(r) for r in req.resource_refs]
        ordered = self._closure(list(req.resource_refs))
        graph = mpb.Graph(commits=[self._commit_proto(c) for c in ordered.values()])
        for commit in ordered.values():
            for dep in commit.deps:
                graph.edges.add(
                    from_node=mpb.Graph.Node(commit_id=commit.commit_id),
                    to_node=mpb.Graph.Node(commit_id=dep.commit_id),
                )
        return mpb.GetGraphResponse(graph=graph), refs

    def get_commits_v1beta1(self, req: bpb.GetCommitsRequest) -> tuple[Message, list[str]]:
        refs = [self._describe(r) for r in req.resource_refs]
        if not req.resource_refs:
            raise ConnectError("invalid_argument", "resource_refs must not be empty")
        commits = [
            self._commit_proto_v1beta1(self._resolve(r), req.digest_type) for r in req.resource_refs
        ]
        return bpb.GetCommitsResponse(commits=commits), refs

    def get_graph_v1beta1(self, req: bpb.GetGraphRequest) -> tuple[Message, list[str]]:
        refs = [self._describe(r.resource_ref) for r in req.resource_refs]
        registries = {r.registry for r in req.resource_refs}
        if len(registries) != 1 or not next(iter(registries)):
            raise ConnectError("invalid_argument", "dev-bsr serves one registry per request")
        registry = registries.pop()
        ordered = self._closure([r.resource_ref for r in req.resource_refs])
        graph = bpb.Graph()
        for commit in ordered.values():
            graph.commits.add(
                commit=self._commit_proto_v1beta1(commit, req.digest_type), registry=registry
            )
            for dep in commit.deps:
                graph.edges.add(
                    from_node=bpb.Graph.Node(commit_id=commit.commit_id, registry=registry),
                    to_node=bpb.Graph.Node(commit_id=dep.commit_id, registry=registry),
                )
        return bpb.GetGraphResponse(graph=graph), refs

    @staticmethod
    def _selected(commit: DevCommit, value) -> list[str]:
        """The paths of ``commit`` a Download value asks for (file types, paths)."""
        selected = sorted(commit.files)
        if value.file_types:
            tests = [_FILE_TYPES[t] for t in value.file_types if t in _FILE_TYPES]
            selected = [p for p in selected if any(t(p) for t in tests)]
        if value.paths:
            wanted = list(value.paths)
            selected = [
                p
                for p in selected
                if any(p == w or p.startswith(w.rstrip("/") + "/") for w in wanted)
            ]
            if not value.paths_allow_not_exist:
                for w in wanted:
                    if not any(p == w or p.startswith(w.rstrip("/") + "/") for p in selected):
                        raise ConnectError("not_found", f"path {w!r} not found")
        return selected

    def download(self, req: mpb.DownloadRequest) -> tuple[Message, list[str]]:
        refs = [self._describe(v.resource_ref) for v in req.values]
        resp = mpb.DownloadResponse()
        for value in req.values:
            commit = self._resolve(value.resource_ref)
            content = resp.contents.add(commit=self._commit_proto(commit))
            for path in self._selected(commit, value):
                content.files.add(path=path, content=Path(commit.files[path]).read_bytes())
        return resp, refs

    def download_v1beta1(self, req: bpb.DownloadRequest) -> tuple[Message, list[str]]:
        refs = [self._describe(v.resource_ref) for v in req.values]
        resp = bpb.DownloadResponse()
        for value in req.values:
            commit = self._resolve(value.resource_ref)
            content = resp.contents.add(commit=self._commit_proto_v1beta1(commit, req.digest_type))
            for path in self._selected(commit, value):
                content.files.add(path=path, content=Path(commit.files[path]).read_bytes())
            for name, data in commit.v1_files.items():  # buf.yaml, buf.lock
                field_ = getattr(content, f"v1_{name.replace('.', '_')}_file")
                field_.path, field_.content = name, data
        return resp, refs

    def get_modules(self, req: mpb.GetModulesRequest) -> tuple[Message, list[str]]:
        resp = mpb.GetModulesResponse()
        refs = []
        for ref in req.module_refs:
            if ref.WhichOneof("value") == "id":
                module = self.repo.module_by_id(ref.id)
                refs.append(ref.id)
            else:
                module = self.repo.module(ref.name.owner, ref.name.module)
                refs.append(f"{ref.name.owner}/{ref.name.module}")
            if module is None:
                raise ConnectError("not_found", f"module {refs[-1]!r} not found")
            msg = resp.modules.add(
                id=module.module_id,
                name=module.name,
                owner_id=module.owner_id,
                visibility=mpb.MODULE_VISIBILITY_PUBLIC,
                state=mpb.MODULE_STATE_ACTIVE,
                default_label_name=module.default_label,
            )
            msg.create_time.FromDatetime(module.labels[module.default_label].create_time)
            msg.update_time.FromDatetime(module.labels[module.default_label].create_time)
        return resp, refs

    def get_owners(self, req: opb.GetOwnersRequest) -> tuple[Message, list[str]]:
        resp = opb.GetOwnersResponse()
        refs = []
        for ref in req.owner_refs:
            if ref.WhichOneof("value") == "id":
                name = self.repo.owner_name(ref.id)
                refs.append(ref.id)
            else:
                name = ref.name if ref.name in self.repo.owner_ids else None
                refs.append(ref.name)
            if name is None:
                raise ConnectError("not_found", f"owner {refs[-1]!r} not found")
            org = opb.Organization(id=self.repo.owner_ids[name], name=name)
            resp.owners.add(organization=org)
        return resp, refs


def _make_handler(app: DevBSR) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "bsr-team-cache-dev-bsr"

        def log_message(self, format: str, *args: object) -> None:  # quiet; we have request_log
            pass

        def _send(
            self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
        ) -> None:
            headers = dict(extra or {})
            accepted = self.headers.get("Accept-Encoding", "")
            if app.options.compress and "gzip" in accepted and body:
                body = gzip.compress(body, mtime=0)
                headers["Content-Encoding"] = "gzip"
            if app.options.warning:
                warning = app.options.warning.encode()
                headers["buf-warning-bin"] = base64.b64encode(warning).decode().rstrip("=")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, code: str, message: str, extra: dict[str, str] | None = None) -> None:
            body = json.dumps({"code": code, "message": message}).encode()
            self._send(_STATUS.get(code, 500), body, "application/json", extra)

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._error("unimplemented", "only Connect unary POST is supported")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            route = self.path.lstrip("/").split("?", 1)[0]
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            if route not in app.routes:
                app.log(route, [], "unimplemented")
                self._error("unimplemented", f"{route} is not implemented by dev-bsr")
                return
            fault = app.injected_fault()
            if fault is not None:
                app.log(route, [], fault[0])
                self._error(fault[0], fault[1], {"Retry-After": str(app.options.retry_after)})
                return
            opts = app.options
            if opts.require_token is not None:
                auth = self.headers.get("Authorization", "")
                if auth != f"Bearer {opts.require_token}":
                    app.log(route, [], "unauthenticated")
                    self._error("unauthenticated", "a valid token is required")
                    return
            if opts.delay_seconds:
                time.sleep(opts.delay_seconds)
            request_type, handler = app.routes[route]
            req = request_type()
            try:
                if content_type == "application/json":
                    json_format.Parse(body or b"{}", req)
                elif content_type == "application/proto":
                    req.ParseFromString(body)
                else:
                    self._send(415, b"", "text/plain")
                    return
            except (DecodeError, json_format.ParseError) as exc:
                self._error("invalid_argument", f"cannot decode request: {exc}")
                return
            try:
                resp, refs = handler(req)
            except ConnectError as exc:
                app.log(route, [], exc.code)
                self._error(exc.code, exc.message)
                return
            gzipped = app.options.compress and "gzip" in self.headers.get("Accept-Encoding", "")
            app.log(route, refs, "ok", encoding="gzip" if gzipped else "")
            if content_type == "application/json":
                out = json_format.MessageToJson(resp).encode()
            else:
                out = resp.SerializeToString()
            self._send(200, out, content_type)

    return Handler


class _TLSThreadingHTTPServer(ThreadingHTTPServer):
    """Does the TLS handshake in the request's thread, so a slow client cannot block accept()."""

    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:  # type: ignore[override]
        # Headers and body go out in two writes: without NODELAY, Nagle + delayed ACK add 40 ms.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class DevBSRServer:
    """The HTTP(S) server around :class:`DevBSR`; ``port=0`` picks a free port."""

    def __init__(
        self,
        app: DevBSR,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> None:
        self.app = app
        self.httpd = _TLSThreadingHTTPServer((host, port), _make_handler(app))
        self.tls = cert_file is not None
        if cert_file is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert_file, key_file)
            ctx.set_alpn_protocols(["http/1.1"])
            self.httpd.ssl_context = ctx
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @classmethod
    def with_tls(
        cls, repo: ModuleRepository, tls_dir: Path, *, host: str = "127.0.0.1", port: int = 0
    ) -> tuple[DevBSRServer, Path]:
        """An HTTPS server for ``repo`` with a CA made in ``tls_dir``; returns it (not yet
        started) and the CA certificate clients must trust."""
        from bsr_team_cache.bsr.devbsr.tls import ensure_tls_files

        tls = ensure_tls_files(tls_dir, [host])
        server = cls(
            DevBSR(repo), host=host, port=port, cert_file=tls.server_cert, key_file=tls.server_key
        )
        return server, tls.ca_cert

    @property
    def address(self) -> str:
        """The registry host as module names spell it, e.g. ``127.0.0.1:8443``."""
        return f"{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> DevBSRServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
