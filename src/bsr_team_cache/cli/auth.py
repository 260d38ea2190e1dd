"""``bsr-team-cache auth``: the auth server's users, site admins and CI tokens."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from bsr_team_cache.usage.events import format_time

_STATE_HELP = (
    "The auth server's state directory (default: $BSR_TEAM_CACHE_AUTH_STATE, else"
    " $XDG_DATA_HOME/bsr-team-cache/auth)."
)


def _store(ctx: click.Context):
    from bsr_team_cache.auth.users import CredentialStore, default_state_dir

    state = ctx.obj or default_state_dir(dict(os.environ))
    return CredentialStore(Path(state))


@click.group("auth")
@click.option("--state", type=click.Path(file_okay=False, path_type=Path), help=_STATE_HELP)
@click.pass_context
def command(ctx: click.Context, state: Path | None) -> None:
    """Manage who may log in to `bsr-team-cache auth-server`: users (bcrypt-hashed passwords,
    optionally site admins) and CI tokens (long random secrets that expire). What each may do
    in the registry comes from the team configurations' roles, not from here."""
    ctx.obj = state


@command.command("add-user")
@click.argument("name")
@click.option("--admin", is_flag=True, help="A site admin: may create teams and do anything.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@click.pass_context
def add_user(ctx: click.Context, name: str, admin: bool, password_stdin: bool) -> None:
    """Add user NAME (asks for the password twice unless --password-stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _store(ctx).add_user(name, password, site_admin=admin)
    click.echo(f"added user {user.name}" + (" (site admin)" if user.site_admin else ""))


@command.command("remove-user")
@click.argument("name")
@click.pass_context
def remove_user(ctx: click.Context, name: str) -> None:
    """Remove user NAME and revoke their CI tokens."""
    revoked = _store(ctx).remove_user(name)
    click.echo(f"removed user {name}; {revoked} token(s) revoked")


@command.command("add-token")
@click.option("--user", "principal", required=True, help="The member name the token logs in as.")
@click.option("--expires", default="90d", show_default=True, help="Lifetime: 90m, 12h, 30d, 4w.")
@click.option("--description", default="", help="What the token is for (shown by `auth list`).")
@click.pass_context
def add_token(ctx: click.Context, principal: str, expires: str, description: str) -> None:
    """Create a CI token for --user and print it once: use it as the password of that user
    (BSR_TEAM_CACHE_REGISTRY_USERNAME=USER, BSR_TEAM_CACHE_REGISTRY_PASSWORD=TOKEN). Only
    its sha256 is kept. A token never has site-admin rights."""
    from bsr_team_cache.auth.users import parse_duration

    token, secret = _store(ctx).add_token(
        principal, lifetime=parse_duration(expires), description=description
    )
    click.echo(secret)
    click.echo(
        f"token {token.id} for {token.principal}, expires {format_time(token.expires)};"
        " it is shown only this once",
        err=True,
    )


@command.command("revoke")
@click.argument("token_id", required=False)
@click.option("--user", "principal", help="Revoke every token of this member instead.")
@click.pass_context
def revoke(ctx: click.Context, token_id: str | None, principal: str | None) -> None:
    """Revoke the token TOKEN_ID, or every token of --user."""
    from bsr_team_cache.errors import UsageError

    if (token_id is None) == (principal is None):
        raise UsageError("revoke takes a TOKEN_ID or --user NAME (one of them)")
    store = _store(ctx)
    if token_id is not None:
        store.revoke_token(token_id)
        click.echo(f"revoked {token_id}")
    else:
        assert principal is not None
        click.echo(f"revoked {store.revoke_tokens_of(principal)} token(s) of {principal}")


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print users and tokens as JSON.")
@click.pass_context
def list_credentials(ctx: click.Context, as_json: bool) -> None:
    """Users and tokens, without any secret or hash."""
    import time

    store = _store(ctx)
    now = time.time()
    users = [
        {"name": u.name, "site_admin": u.site_admin, "created": format_time(u.created)}
        for u in store.users()
    ]
    tokens = [
        {
            "id": t.id,
            "principal": t.principal,
            "state": t.state(now),
            "created": format_time(t.created),
            "expires": format_time(t.expires),
            "description": t.description,
        }
        for t in store.tokens()
    ]
    if as_json:
        click.echo(json.dumps({"users": users, "tokens": tokens}, indent=2))
        return
    click.echo("users:")
    for u in users:
        admin = "  site admin" if u["site_admin"] else ""
        click.echo(f"  {u['name']}{admin}  (created {u['created']})")
    click.echo("tokens:")
    for t in tokens:
        note = f"  {t['description']}" if t["description"] else ""
        click.echo(f"  {t['id']}  {t['principal']}  {t['state']}  expires {t['expires']}{note}")
