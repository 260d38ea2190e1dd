"""``bsr-team-cache dev-bsr``: run a BSR-compatible HTTPS server over a directory of modules."""

from __future__ import annotations

import contextlib
import errno
import json
import signal
import tempfile
from pathlib import Path

import click

from bsr_team_cache.bsr.devbsr import (
    DevBSR,
    DevBSRServer,
    ModuleRepository,
    ServerOptions,
    ensure_tls_files,
)
from bsr_team_cache.errors import UsageError
from bsr_team_cache.samples import write_sample_data


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@click.command("dev-bsr")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    help="Modules as DATA/<owner>/<module>/<label>/ (see --init-samples, --samples).",
)
@click.option(
    "--samples",
    is_flag=True,
    help="Serve the packaged sample modules (from a temporary directory; no --data needed).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8443, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--tls-dir",
    type=click.Path(path_type=Path),
    help="Where the CA (ca.pem) and server certificate live; created if missing."
    " Defaults to DATA/.tls. Clients trust it with SSL_CERT_FILE=ca.pem.",
)
@click.option("--insecure-http", is_flag=True, help="Serve plain HTTP (no TLS).")
@click.option(
    "--request-log",
    type=click.Path(path_type=Path),
    help="Append one JSON line per RPC (service, method, refs, status).",
)
@click.option(
    "--ready-file",
    type=click.Path(path_type=Path),
    help="Write {url, host, port, ca_cert} as JSON once listening.",
)
@click.option(
    "--init-samples",
    is_flag=True,
    help="First write the sample modules (acme/*, googleapis/googleapis) into DATA.",
)
@click.option("--require-token", metavar="TOKEN", help="Refuse RPCs without this bearer token.")
@click.option("--deny-owner", multiple=True, help="Answer permission_denied for this owner.")
@click.option("--fail-first", type=int, default=0, help="Fail the first N RPCs (unavailable).")
@click.option(
    "--rate-limit-first",
    type=int,
    default=0,
    help="Then answer N RPCs with 429 resource_exhausted and Retry-After.",
)
@click.option(
    "--retry-after",
    type=click.IntRange(min=0),
    default=0,
    help="Seconds the injected failures ask clients to wait (Retry-After).",
)
@click.option(
    "--delay-ms",
    type=click.IntRange(min=0),
    default=0,
    help="Answer every RPC this much later (a slow BSR, for tests and trials).",
)
@click.option(
    "--compress",
    is_flag=True,
    help="Answer gzip-compressed when the client accepts it (Connect compression).",
)
@click.option(
    "--warning",
    metavar="TEXT",
    default="",
    help="Send TEXT in the buf-warning-bin header of every answer, as the BSR warns buf.",
)
def command(
    data_dir: Path | None,
    samples: bool,
    host: str,
    port: int,
    tls_dir: Path | None,
    insecure_http: bool,
    request_log: Path | None,
    ready_file: Path | None,
    init_samples: bool,
    require_token: str | None,
    deny_owner: tuple[str, ...],
    fail_first: int,
    rate_limit_first: int,
    retry_after: int,
    delay_ms: int,
    compress: bool,
    warning: str,
) -> None:
    """Serve the modules under DATA as a BSR on HOST:PORT (https). Modules are named
    localhost:PORT/<owner>/<module> in buf.yaml."""
    with contextlib.ExitStack() as cleanup:
        if samples and data_dir is None:
            data_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory())) / "data"
        if data_dir is None:
            raise UsageError("dev-bsr needs --data DIR (or --samples to serve the samples)")
        if init_samples or samples:
            write_sample_data(data_dir)
        _serve(
            data_dir,
            host,
            port,
            tls_dir,
            insecure_http,
            ready_file,
            ServerOptions(
                request_log=request_log,
                fail_first=fail_first,
                rate_limit_first=rate_limit_first,
                require_token=require_token,
                deny_owners=set(deny_owner),
                delay_seconds=delay_ms / 1000,
                compress=compress,
                retry_after=retry_after,
                warning=warning,
            ),
        )


def _serve(
    data_dir: Path,
    host: str,
    port: int,
    tls_dir: Path | None,
    insecure_http: bool,
    ready_file: Path | None,
    options: ServerOptions,
) -> None:
    repo = ModuleRepository(data_dir)
    if not repo.modules:
        click.echo(
            f"dev-bsr: warning: {data_dir} holds no modules (expected"
            " DATA/<owner>/<module>/<label>/*.proto; --init-samples writes some)",
            err=True,
        )
    cert = key = ca = None
    if not insecure_http:
        tls = ensure_tls_files(tls_dir or data_dir / ".tls", [host])
        cert, key, ca = tls.server_cert, tls.server_key, tls.ca_cert
    try:
        server = DevBSRServer(
            DevBSR(repo, options), host=host, port=port, cert_file=cert, key_file=key
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is in use: pick another with --port (0: any free port)"
            ) from None
        raise
    scheme = "https" if cert else "http"
    url = f"{scheme}://{server.address}"
    module_host = (
        f"localhost:{server.port}" if host in ("127.0.0.1", "localhost") else (server.address)
    )
    click.echo(
        f"dev-bsr: serving {len(repo.modules)} modules ({len(repo.commits)} commits) on {url}",
        err=True,
    )
    click.echo(
        f"dev-bsr: name them in buf.yaml as {module_host}/<owner>/<module>"
        f" (e.g. {module_host}/acme/pets)",
        err=True,
    )
    if ca is not None:
        click.echo(f"dev-bsr: clients trust it with SSL_CERT_FILE={ca}", err=True)
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(
            json.dumps(
                {"url": url, "host": host, "port": server.port, "ca_cert": str(ca) if ca else None}
            )
        )
        tmp.replace(ready_file)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
