"""A real OCI registry on loopback for tests, benchmarks and trials: CNCF Distribution
(Debian's ``docker-registry``) with an optional htpasswd or token-auth front.

The token service implements the Docker token spec the way Distribution checks it: an ES256
JWT whose ``x5c`` header carries a self-signed certificate listed in the registry's
``rootcertbundle``; ``access`` claims grant what a user's rule allows.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
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
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from bsr_team_cache._proc import stop_process
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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
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
                access.append({"type": "repository", "name": name, "actions": granted})
        now = int(time.time())
        header = {
            "alg": "ES256",
            "typ": "JWT",
            "x5c": [
                base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()
            ],
        }
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        self.issued.append({"user": user, "access": access})
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

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


@dataclass
class DistributionServer:
    """``docker-registry serve`` on a free loopback port, storage under ``workdir``."""

    workdir: Path
    htpasswd: dict[str, str] | None = None  # user -> password (bcrypt-hashed into a file)
    token_service: TokenService | None = None
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: bsr-team-cache-dev",
        ]
        if self.htpasswd is not None:
            import bcrypt  # test extra only: Distribution's htpasswd accepts bcrypt alone

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
            lines += [
                "auth:",
                "  token:",
                f"    realm: {realm}",
                f"    service: {self.token_service.service}",
                f"    issuer: {self.token_service.issuer}",
                f"    rootcertbundle: {bundle}",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> DistributionServer:
        binary = find_distribution()
        if binary is None:
            raise BSRTeamCacheError(
                "CNCF Distribution is not installed (Debian: apt-get install docker-registry)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        log = open(self.workdir / "registry.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
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
        root = self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
        if not root.exists():
            return {}
        files = [p for p in root.glob("*/*/data") if p.is_file()]
        return {"sha256:" + p.parent.name: p.stat().st_size for p in files}

    def blob_count(self) -> tuple[int, int]:
        """(blobs, bytes) in the storage: every blob is stored once, whatever repos link it."""
        root = self.storage / "docker" / "registry" / "v2" / "blobs"
        files = [p for p in root.rglob("data") if p.is_file()] if root.exists() else []
        return len(files), sum(p.stat().st_size for p in files)
