"""``bsr-team-cache setup``: create or update the team configuration in the team registry."""

from __future__ import annotations

import json

import click

from bsr_team_cache.cli.options import TeamOptions, team_options
from bsr_team_cache.errors import ConfigError, UsageError
from bsr_team_cache.oci.url import redact
from bsr_team_cache.team.config import ROLES, STRATEGIES


@click.command("setup")
@team_options(member=True)
@click.option("--members", multiple=True, help="Members to add (repeat, or several after one).")
@click.option(
    "--strategy",
    "cache_strategy",
    type=click.Choice(sorted(STRATEGIES)),
    help="aggressive / balanced / conservative: 2000 / 1000 / 500 MB per member, preload the"
    " top 20 / 10 / 5 modules, sync every 30 / 60 / 120 minutes.",
)
@click.option("--max-cache-size-mb", type=int, help="Per-member local store limit.")
@click.option("--sync-frequency-minutes", type=int, help="How often members' sync --if-due runs.")
@click.option(
    "--shared-cache/--no-shared-cache",
    default=None,
    help="Publish BSR downloads to the team registry (on by default).",
)
@click.option(
    "--bundle-auto-creation/--no-bundle-auto-creation",
    default=None,
    help="Let sync bundle modules that members' builds keep fetching together.",
)
@click.option(
    "--remove-member",
    "remove_members",
    multiple=True,
    metavar="NAME",
    help="Remove a member, with their role and keys (admins only; repeat).",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="NAME=ROLE",
    help=f"Give a member a role, adding them if needed (admins only; repeat): {', '.join(ROLES)}.",
)
@click.option(
    "--signing-key",
    "signing_keys",
    multiple=True,
    metavar="NAME=FILE",
    help="A member's Ed25519 public key (PEM file) for signing team documents (admins only).",
)
@click.option(
    "--encryption-key",
    "encryption_keys",
    multiple=True,
    metavar="NAME=FILE",
    help="A member's RSA or EC public key (PEM file): a recipient of encrypted layers.",
)
@click.option(
    "--encrypt/--no-encrypt",
    default=None,
    help="Publish module layers encrypted for the members' encryption keys.",
)
@click.option(
    "--rewrap",
    is_flag=True,
    help="Wrap the keys of the team's encrypted layers for the current members again (done"
    " by itself when encryption keys change; needs your private key).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
@click.argument("more_members", nargs=-1)
def command(
    options: TeamOptions,
    members: tuple[str, ...],
    cache_strategy: str | None,
    max_cache_size_mb: int | None,
    sync_frequency_minutes: int | None,
    shared_cache: bool | None,
    bundle_auto_creation: bool | None,
    remove_members: tuple[str, ...],
    roles: tuple[str, ...],
    signing_keys: tuple[str, ...],
    encryption_keys: tuple[str, ...],
    encrypt: bool | None,
    rewrap: bool,
    as_json: bool,
    more_members: tuple[str, ...],
) -> None:
    """Create or update TEAM's configuration (stored in the team registry, so every member and
    CI job sees the same)."""
    cache = options.open_cache()
    config = cache.setup(
        [*members, *more_members],
        cache_strategy=cache_strategy,
        shared_cache=shared_cache,
        bundle_auto_creation=bundle_auto_creation,
        max_cache_size_mb=max_cache_size_mb,
        sync_frequency_minutes=sync_frequency_minutes,
        remove_members=remove_members,
        roles=_pairs(roles, "--role", "NAME=ROLE"),
        signing_keys={
            m: signing_key_text(path, f"--signing-key {m}")
            for m, path in _pairs(signing_keys, "--signing-key", "NAME=FILE").items()
        },
        encryption_keys={
            m: public_key_pem(path, f"--encryption-key {m}")
            for m, path in _pairs(encryption_keys, "--encryption-key", "NAME=FILE").items()
        },
        encrypt=encrypt,
    )
    if rewrap:
        rewrapped = cache.rewrap()
        click.echo(f"re-wrapped the keys of {len(rewrapped)} module layer(s)", err=True)
    if as_json:
        click.echo(json.dumps(config.to_json(), indent=2))
        return
    click.echo(f"team {config.team} in {redact(options.registry)}")
    click.echo(
        "  members: "
        + (", ".join(f"{m} ({config.role_of(m)})" for m in config.members) or "(none)")
    )
    click.echo(
        f"  strategy: {config.cache_strategy} (max {config.max_cache_size_mb} MB per member,"
        f" preload top {config.preload_top}, sync every {config.sync_frequency_minutes} min)"
    )
    click.echo(
        f"  shared cache: {'on' if config.shared_cache else 'off'}, bundle auto-creation:"
        f" {'on' if config.bundle_auto_creation else 'off'}"
    )
    if config.encrypt:
        click.echo(f"  encryption: on, for {len(config.encryption_keys)} member key(s)")


def _pairs(values: tuple[str, ...], option: str, shape: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise UsageError(f"{option} {value!r}: expected {shape}")
        out[name] = rest
    return out


def public_key_pem(path: str, what: str) -> str:
    """The PEM text of a public key file, checked to be one (RSA or EC, as encryption takes)."""
    from bsr_team_cache.oci import encryption

    try:
        key = encryption.load_public_key(path)
    except ConfigError as exc:
        raise UsageError(f"{what}: {exc}") from None
    return encryption.public_key_pem(key).decode()


def signing_key_text(path: str, what: str) -> str:
    """``ed25519:<base64>`` of an Ed25519 public key file (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from bsr_team_cache.trust.keys import public_key_text

    data = _read_small(path, what)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{what}: {path} is not a PEM Ed25519 public key")
    return public_key_text(key)


def _read_small(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(64 * 1024)
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path} ({exc.strerror or exc})") from None
