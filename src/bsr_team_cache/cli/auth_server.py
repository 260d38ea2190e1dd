"""``bsr-team-cache auth-server``: the Docker registry token service that enforces the team
configurations' roles and shares in the registry, and records its notifications."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import click

_STATE_HELP = (
    "State directory: signing key and certificate, users and tokens, audit records (default:"
    " $BSR_TEAM_CACHE_AUTH_STATE, else $XDG_DATA_HOME/bsr-team-cache/auth)."
)
DEFAULT_LISTEN = "127.0.0.1:5001"
DEFAULT_SERVICE = "bsr-team-cache"
DEFAULT_ISSUER = "bsr-team-cache-auth"


def _listen(text: str) -> tuple[str, int]:
    from bsr_team_cache.errors import UsageError

    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, such as {DEFAULT_LISTEN}")
    return host.strip("[]"), int(port)


def _state(state: Path | None) -> Path:
    from bsr_team_cache.auth.users import default_state_dir

    return state or default_state_dir(dict(os.environ))


def registry_config(realm: str, service: str, issuer: str, bundle: Path, notifications: str) -> str:
    """The part of Distribution's config.yml that trusts this server (and notifies it)."""
    return (
        "auth:\n"
        "  token:\n"
        f"    realm: {realm}\n"
        f"    service: {service}\n"
        f"    issuer: {issuer}\n"
        f"    rootcertbundle: {bundle}\n"
        "notifications:\n"
        "  endpoints:\n"
        "    - name: bsr-team-cache-audit\n"
        f"      url: {notifications}\n"
        "      headers:\n"
        "        Authorization: [Bearer <the --notifications-token secret>]\n"
        "      timeout: 2s\n"
        "      threshold: 5\n"
        "      backoff: 2s\n"
    )


def _print_setup(scheme: str, host: str, port: int, service: str, issuer: str, state: Path):
    from bsr_team_cache.auth.tokens import CERT_FILE

    base = f"{scheme}://{host}:{port}"
    click.echo(f"token realm {base}/token (service {service}, issuer {issuer})")
    click.echo(f"registry rootcertbundle: {state / CERT_FILE}")
    click.echo("Distribution config.yml:")
    config = registry_config(
        f"{base}/token", service, issuer, state / CERT_FILE, f"{base}/notifications"
    )
    click.echo("\n".join("  " + line for line in config.splitlines()))


_common = [
    click.option("--state", type=click.Path(file_okay=False, path_type=Path), help=_STATE_HELP),
    click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="HOST:PORT."),
    click.option("--service", default=DEFAULT_SERVICE, show_default=True,
                 help="The registry's auth.token.service (the tokens' audience)."),
    click.option("--issuer", default=DEFAULT_ISSUER, show_default=True,
                 help="The registry's auth.token.issuer."),
    click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                 help="Serve https with this certificate (PEM)."),
    click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                 help="The key of --tls-cert (PEM)."),
]  # fmt: skip


def _with_common(function):
    for option in reversed(_common):
        function = option(function)
    return function


@click.group("auth-server", invoke_without_command=True)
@_with_common
@click.option("--registry", help="The registry's URL (its path, if any, is the namespace).")
@click.option("--namespace", help="Repositories live under this prefix (default: the URL's path).")
@click.option(
    "--token-lifetime",
    type=click.IntRange(30, 3600),
    default=300,
    show_default=True,
    help="Seconds a token is valid.",
)
@click.option(
    "--config-cache-seconds",
    type=click.FloatRange(0, 3600),
    default=5.0,
    show_default=True,
    help="How long a team configuration read is reused.",
)
@click.option(
    "--audit-ship-seconds",
    type=click.FloatRange(0.1, 86400),
    default=10.0,
    show_default=True,
    help="How often audit records ship to teams/<T>/audit.",
)
@click.option(
    "--notifications-token",
    envvar="BSR_TEAM_CACHE_NOTIFICATIONS_TOKEN",
    help="Shared secret Distribution sends as 'Authorization: Bearer …' to"
    " /notifications (or $BSR_TEAM_CACHE_NOTIFICATIONS_TOKEN). Without it the"
    " endpoint is off.",
)
@click.option("--insecure", is_flag=True, help="Allow plain http to a registry not on loopback.")
@click.pass_context
def command(
    ctx: click.Context,
    state: Path | None,
    listen: str,
    service: str,
    issuer: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    registry: str | None,
    namespace: str | None,
    token_lifetime: int,
    config_cache_seconds: float,
    audit_ship_seconds: float,
    notifications_token: str | None,
    insecure: bool,
) -> None:
    """Serve registry tokens (GET /token) granting what the team configurations' roles and
    shares allow, and record the registry's notifications (POST /notifications). Creates the
    signing key on first start and prints the registry configuration that trusts it. Runs in
    the foreground until Ctrl-C or SIGTERM. `auth-server init` only creates the key."""
    if ctx.invoked_subcommand is not None:
        return
    from bsr_team_cache.auth.server import AuthServer, ServerOptions, build_service
    from bsr_team_cache.errors import UsageError

    if not registry:
        raise UsageError("auth-server needs --registry URL (the registry it issues tokens for)")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    host, port = _listen(listen)
    options = ServerOptions(
        registry=registry,
        state_dir=_state(state),
        host=host,
        port=port,
        service=service,
        issuer=issuer,
        namespace=namespace,
        token_lifetime=token_lifetime,
        config_cache_seconds=config_cache_seconds,
        audit_ship_seconds=audit_ship_seconds,
        notifications_token=notifications_token or "",
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure=insecure,
    )
    server = AuthServer(build_service(options))
    _print_setup(options.scheme, host, server.port, service, issuer, options.state_dir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    click.echo("serving (Ctrl-C or SIGTERM stops)")
    while not stop.wait(1.0):
        pass
    server.stop()
    click.echo("stopped")


@command.command("init")
@_with_common
def init(
    state: Path | None,
    listen: str,
    service: str,
    issuer: str,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Create the signing key and certificate (if there are none) and print the registry
    configuration that trusts them."""
    from bsr_team_cache.auth.tokens import SigningKey

    state_dir = _state(state)
    _, created = SigningKey.load_or_create(state_dir, issuer)
    click.echo(("created" if created else "kept") + f" the signing key in {state_dir}")
    host, port = _listen(listen)
    _print_setup("https" if tls_cert else "http", host, port, service, issuer, state_dir)
