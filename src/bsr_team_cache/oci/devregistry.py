"""A real OCI registry on loopback for tests, benchmarks and trials: CNCF Distribution
(Debian's ``docker-registry``) with an optional htpasswd or token-auth front, storing on the
local filesystem or, as in production, in an S3 bucket (an in-process moto S3 server).

The token service implements the Docker token spec the way Distribution checks it: an ES256
JWT whose ``x5c`` header carries a self-signed certificate listed in the registry's
``rootcertbundle``; ``access`` claims grant what a user's rule allows.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives import serialization

from bsr_team_cache._proc import stop_process
from bsr_team_cache.auth.tokens import Access, SigningKey, issue_token
from bsr_team_cache.errors import BSRTeamCacheError

DISTRIBUTION_BINARIES = ("docker-registry", "registry")


def find_distribution() -> str | None:
    for name in DISTRIBUTION_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    for candidate in ("/usr/bin/docker-registry", "/usr/sbin/docker-registry"):
        if os.path.exists(candidate):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (user, "repository:<name>:<actions>" requested) -> actions granted
GrantRule = Callable[[str, str, list[str]], list[str]]


def grant_all(user: str, name: str, actions: list[str]) -> list[str]:
    return actions


@dataclass
class TokenService:
    """Issues registry tokens to users with a password; ``rule`` decides what each may do."""

    users: dict[str, str]
    rule: GrantRule = grant_all
    issuer: str = "bsr-team-cache-dev"
    service: str = "dev-registry"
    lifetime: int = 300
    issued: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The auth server's signing (auth/tokens.py): one implementation of the token format.
        self._signing = SigningKey.generate(self.issuer, days=30)
        self.certificate = self._signing.certificate
        self._server: ThreadingHTTPServer | None = None

    def token(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            granted = self.rule(user, name, [a for a in actions.split(",") if a])
            if granted:
                access.append(Access("repository", name, tuple(granted)))
        self.issued.append({"user": user, "access": [a.to_json() for a in access]})
        issued = issue_token(
            self._signing,
            issuer=self.issuer,
            service=self.service,
            subject=user,
            access=access,
            lifetime=self.lifetime,
        )
        return issued.token

    def _authenticate(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if self.users.get(user) == password else None

    def start(self) -> str:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                user = service._authenticate(self.headers.get("Authorization"))
                if user is None:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="dev-token"')
                    self.end_headers()
                    return
                query = parse_qs(urlsplit(self.path).query)
                scopes = [s for value in query.get("scope", []) for s in value.split(" ")]
                body = json.dumps(
                    {"token": service.token(user, scopes), "expires_in": service.lifetime}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# Where Distribution keeps a blob's bytes in its storage (under the optional rootdirectory).
_BLOB_KEY = re.compile(
    r"^/?docker/registry/v2/blobs/sha256/[0-9a-f]{2}/(?P<hex>[0-9a-f]{64})/data$"
)


@dataclass
class S3StorageServer:
    """An S3-compatible server on a free loopback port, inside this process: moto's S3 app
    (``moto[server]``, a test dependency imported only by :meth:`start`) behind a WSGI
    middleware that appends one JSON line per request to ``request_log``: ``method``,
    ``path``, ``query`` (the raw query string), ``headers`` (all of them) and ``status``.
    :meth:`start` creates ``bucket``. moto keeps its state per process, so each instance
    gets a bucket of its own."""

    request_log: Path
    bucket: str = field(default_factory=lambda: f"registry-{uuid.uuid4().hex[:12]}")
    access_key: str = "bsr-team-cache-dev-access-key"
    secret_key: str = "bsr-team-cache-dev-secret-key"
    region: str = "us-east-1"
    port: int = 0

    def __post_init__(self) -> None:
        self._server = None
        self._thread: threading.Thread | None = None
        self._log_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _log_requests(self, app: Callable) -> Callable:
        def logged(environ: dict, start_response: Callable) -> object:
            headers = {
                key[5:].replace("_", "-").title(): value
                for key, value in environ.items()
                if key.startswith("HTTP_") and isinstance(value, str)
            }
            for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                if environ.get(key):
                    headers[key.replace("_", "-").title()] = environ[key]
            record: dict = {
                "method": environ.get("REQUEST_METHOD", ""),
                "path": environ.get("PATH_INFO", ""),
                "query": environ.get("QUERY_STRING", ""),
                "headers": headers,
                "status": None,
            }

            def start(status: str, response_headers: list, exc_info: object = None) -> object:
                record["status"] = int(status.split(" ", 1)[0])
                return start_response(status, response_headers, exc_info)

            try:
                return app(environ, start)
            finally:
                line = json.dumps(record, sort_keys=True) + "\n"
                with self._log_lock, open(self.request_log, "a") as log:
                    log.write(line)

        return logged

    def _client(self):  # a boto3 S3 client for this server (boto3 comes with moto)
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}),
        )

    def start(self) -> S3StorageServer:
        try:
            from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
            from werkzeug.serving import make_server
        except ImportError:
            raise BSRTeamCacheError(
                "the S3 storage server needs moto: pip install 'moto[server]' (the test extra)"
            ) from None
        self.request_log.parent.mkdir(parents=True, exist_ok=True)

        class Handler(MotoRequestHandler):
            def log_request(self, *args: object, **kwargs: object) -> None:
                pass  # the JSON request log has it all; errors are still reported

        server = make_server(
            "127.0.0.1",
            self.port,
            self._log_requests(create_backend_app("s3")),
            threaded=True,
            request_handler=Handler,
        )
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        try:
            self._client().create_bucket(Bucket=self.bucket)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def requests(self) -> list[dict]:
        """Every request logged so far, in order."""
        if not self.request_log.exists():
            return []
        return [json.loads(line) for line in self.request_log.read_text().splitlines()]

    def objects(self) -> dict[str, int]:
        """Every object in the bucket (key -> size)."""
        found: dict[str, int] = {}
        pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        for page in pages:
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found

    def blob_digests(self) -> dict[str, int]:
        """The blobs Distribution stored in the bucket (digest -> size)."""
        found = {}
        for key, size in self.objects().items():
            match = _BLOB_KEY.match(key)
            if match:
                found["sha256:" + match["hex"]] = size
        return found


@dataclass(frozen=True)
class TokenAuth:
    """Distribution's ``auth: token`` section: trust tokens signed by ``rootcertbundle``'s key."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path

    def config_lines(self) -> list[str]:
        return [
            "auth:",
            "  token:",
            f"    realm: {self.realm}",
            f"    service: {self.service}",
            f"    issuer: {self.issuer}",
            f"    rootcertbundle: {self.rootcertbundle}",
        ]


@dataclass(frozen=True)
class NotificationEndpoint:
    """One of Distribution's ``notifications.endpoints``: events POSTed to ``url``."""

    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()

    def config_lines(self) -> list[str]:
        lines = [f"    - name: {self.name}", f"      url: {self.url}"]
        if self.headers:
            lines.append("      headers:")
            lines += [f"        {key}: [{json.dumps(value)}]" for key, value in self.headers]
        # Short timeouts and backoff: tests wait for events, and a retry comes soon.
        return [*lines, "      timeout: 2s", "      threshold: 3", "      backoff: 1s"]


@dataclass
class DistributionServer:
    """``docker-registry serve`` on a free loopback port, storage under ``workdir``, or with
    ``s3`` in that server's bucket (started here if it is not running; its owner stops it)."""

    workdir: Path
    htpasswd: dict[str, str] | None = None  # user -> password (bcrypt-hashed into a file)
    token_service: TokenService | None = None
    port: int = 0
    proc: subprocess.Popen | None = None
    s3: S3StorageServer | None = None
    # An external token service (``bsr-team-cache auth-server``): Distribution trusts it.
    token_auth: TokenAuth | None = None
    notifications: list[NotificationEndpoint] = field(default_factory=list)
    delete: bool = True  # the API may delete manifests (storage.delete.enabled)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def _storage_driver(self) -> list[str]:
        if self.s3 is None:
            return ["  filesystem:", f"    rootdirectory: {self.storage}"]
        # Blob GETs are answered with a 307 to a presigned URL of the bucket (the default,
        # written out): clients download from the storage host, the registry only signs.
        return [
            "  s3:",
            f"    accesskey: {self.s3.access_key}",
            f"    secretkey: {self.s3.secret_key}",
            f"    region: {self.s3.region}",
            f"    regionendpoint: {self.s3.endpoint}",
            f"    bucket: {self.s3.bucket}",
            "    secure: false",
            "    v4auth: true",
            # Path-style URLs: Distribution 3 needs this; 2.x does so when regionendpoint is set.
            "    forcepathstyle: true",
            "  redirect:",
            "    disable: false",
        ]

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            *self._storage_driver(),
            "  delete:",
            f"    enabled: {str(self.delete).lower()}",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: bsr-team-cache-dev",
        ]
        if self.htpasswd is not None:
            import bcrypt  # Distribution's htpasswd accepts bcrypt hashes alone

            path = self.workdir / "htpasswd"
            path.write_text(
                "".join(
                    f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                    for user, pw in self.htpasswd.items()
                )
            )
            lines += ["auth:", "  htpasswd:", "    realm: dev-registry", f"    path: {path}"]
        elif self.token_service is not None:
            realm = self.token_service.start()
            bundle = self.workdir / "token-root.pem"
            bundle.write_bytes(
                self.token_service.certificate.public_bytes(serialization.Encoding.PEM)
            )
            service, issuer = self.token_service.service, self.token_service.issuer
            lines += TokenAuth(realm, service, issuer, bundle).config_lines()
        elif self.token_auth is not None:
            lines += self.token_auth.config_lines()
        if self.notifications:
            lines += ["notifications:", "  endpoints:"]
            for endpoint in self.notifications:
                lines += endpoint.config_lines()
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> DistributionServer:
        binary = find_distribution()
        if binary is None:
            raise BSRTeamCacheError(
                "CNCF Distribution is not installed (Debian: apt-get install docker-registry)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = None
        if self.s3 is not None:
            if not self.s3.running:
                self.s3.start()
            # The config says everything about S3. Distribution 2.8's AWS SDK panics at start-up
            # when AWS_CA_BUNDLE is set (LoadCustomCABundleError), and other AWS_* variables
            # would only make it depend on the machine.
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        log = open(self.workdir / "registry.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BSRTeamCacheError(
                    f"docker-registry exited: {(self.workdir / 'registry.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code in (200, 401):
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise BSRTeamCacheError(f"docker-registry did not answer on {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)
        if self.token_service is not None:
            self.token_service.stop()

    def blob_digests(self) -> dict[str, int]:
        """Every blob stored (digest -> size): Distribution keeps one copy per digest."""
        if self.s3 is not None:
            return self.s3.blob_digests()
        root = self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
        if not root.exists():
            return {}
        files = [p for p in root.glob("*/*/data") if p.is_file()]
        return {"sha256:" + p.parent.name: p.stat().st_size for p in files}

    def blob_count(self) -> tuple[int, int]:
        """(blobs, bytes) in the storage: every blob is stored once, whatever repos link it."""
        if self.s3 is not None:
            blobs = self.s3.blob_digests()
            return len(blobs), sum(blobs.values())
        root = self.storage / "docker" / "registry" / "v2" / "blobs"
        files = [p for p in root.rglob("data") if p.is_file()] if root.exists() else []
        return len(files), sum(p.stat().st_size for p in files)
