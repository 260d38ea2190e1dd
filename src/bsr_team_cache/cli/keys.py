"""``bsr-team-cache keys``: make a member's key pairs, and show the public half of the
configured ones (never private material)."""

from __future__ import annotations

from pathlib import Path

import click

from bsr_team_cache.errors import UsageError


@click.group("keys")
def command() -> None:
    """A member's signing key (team documents) and encryption key (encrypted layers)."""


@command.command("generate")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for signing.pem, signing.pub.pem, encryption.pem, encryption.pub.pem.",
)
@click.option(
    "--encryption",
    type=click.Choice(["ec", "rsa"]),
    default="ec",
    show_default=True,
    help="The encryption key pair: EC P-256, or RSA 3072.",
)
def generate(out: Path, encryption: str) -> None:
    """Write a new Ed25519 signing key pair and an encryption key pair; private keys are
    readable by you only (0600). Existing files are never overwritten."""
    from bsr_team_cache.trust.keys import generate_keys

    made = generate_keys(out, encryption)
    click.echo(f"signing key:    {made.signing_key_text} (key id {made.signing_key_id})")
    click.echo(f"  private: {made.signing_private}")
    click.echo(f"  public:  {made.signing_public}")
    click.echo(f"encryption key ({encryption}):")
    click.echo(f"  private: {made.encryption_private}")
    click.echo(f"  public:  {made.encryption_public}")
    click.echo("Set, for this member's commands:")
    click.echo(f"  export BSR_TEAM_CACHE_SIGNING_KEY_FILE={made.signing_private}")
    click.echo(f"  export BSR_TEAM_CACHE_PRIVATE_KEY_FILE={made.encryption_private}")
    click.echo("An admin registers the public keys:")
    click.echo(
        f"  bsr-team-cache setup --signing-key NAME={made.signing_public}"
        f" --encryption-key NAME={made.encryption_public}"
    )


@command.command("show")
def show() -> None:
    """Print the public key text and key id of the configured signing key, and the public key
    of the configured encryption key(s)."""
    import os

    from bsr_team_cache.oci.encryption import (
        ENV_PRIVATE_KEY_FILE,
        key_fingerprint,
        private_keys_from_env,
        public_key_pem,
    )
    from bsr_team_cache.trust.keys import SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV, load_signing_key

    signing = load_signing_key()
    encryption = private_keys_from_env(os.environ)
    if signing is None and not encryption:
        raise UsageError(
            f"no keys configured: set {SIGNING_KEY_FILE_ENV} (or {SIGNING_KEY_ENV}) and"
            f" {ENV_PRIVATE_KEY_FILE}; make them with `bsr-team-cache keys generate`"
        )
    if signing is not None:
        click.echo(f"signing key:    {signing.public_text} (key id {signing.key_id})")
        click.echo(f"  from {signing.source}")
    for key in encryption:
        click.echo(f"encryption key (public, fingerprint {key_fingerprint(key)}):")
        click.echo(public_key_pem(key).decode().rstrip())
