"""The credential store: bcrypt passwords, CI tokens that expire and can be revoked, file
modes, and the `auth` command, which never prints a secret it did not just create."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import bcrypt
import pytest

from bsr_team_cache.auth.users import (
    USERS_FILE,
    Authenticated,
    AuthenticationFailed,
    CredentialStore,
    parse_duration,
)
from bsr_team_cache.cli import main
from bsr_team_cache.errors import UsageError


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_passwords_are_bcrypt_hashes_and_checked(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path, rounds=4)
    store.add_user("alice", "correct horse", site_admin=True)
    stored = json.loads((tmp_path / USERS_FILE).read_text())["users"]["alice"]
    assert stored["password_hash"].startswith("$2b$04$")
    assert bcrypt.checkpw(b"correct horse", stored["password_hash"].encode())
    assert "correct horse" not in (tmp_path / USERS_FILE).read_text()
    assert store.authenticate("alice", "correct horse") == Authenticated("alice", True, "password")
    assert store.authenticate("alice", "correct horse") == Authenticated("alice", True, "password")
    for name, password in [("alice", "wrong horse"), ("nobody", "correct horse"), ("alice", "")]:
        with pytest.raises(AuthenticationFailed, match=r"^bad credentials$"):
            store.authenticate(name, password)


def test_password_rules(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path, rounds=4)
    with pytest.raises(UsageError, match="shorter than 8 characters"):
        store.add_user("alice", "short")
    with pytest.raises(UsageError, match="73 bytes long; bcrypt uses only the first 72"):
        store.add_user("alice", "x" * 73)
    store.add_user("alice", "x" * 72)
    with pytest.raises(UsageError, match="exists already"):
        store.add_user("alice", "y" * 10)
    with pytest.raises(UsageError, match="invalid member name"):
        store.add_user("bad:name", "y" * 10)


def test_tokens_are_stored_as_sha256_and_expire(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    store = CredentialStore(tmp_path, clock=clock, rounds=4)
    token, secret = store.add_token("ci-bot", lifetime=parse_duration("30d"), description="CI")
    assert secret.startswith("bsrtc_") and len(secret) == len("bsrtc_") + 43  # 32 bytes
    assert (token.principal, token.created, token.expires) == ("ci-bot", 1_000_000.0, 3_592_000.0)
    saved = json.loads((tmp_path / USERS_FILE).read_text())["tokens"]
    assert saved == [
        {
            "id": token.id,
            "principal": "ci-bot",
            "sha256": hashlib.sha256(secret.encode()).hexdigest(),
            "created": 1_000_000.0,
            "expires": 3_592_000.0,
            "revoked": False,
            "description": "CI",
        }
    ]
    assert store.authenticate("ci-bot", secret) == Authenticated("ci-bot", False, "token", token.id)
    with pytest.raises(AuthenticationFailed, match=r"^bad credentials$"):
        store.authenticate("someone-else", secret)  # a token logs in as its principal only
    with pytest.raises(AuthenticationFailed, match=r"^bad credentials$"):
        store.authenticate("ci-bot", secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    clock.now = 3_592_000.0
    with pytest.raises(AuthenticationFailed, match=r"^token expired$"):
        store.authenticate("ci-bot", secret)
    assert [t.state(clock.now) for t in store.tokens()] == ["expired"]


def test_a_site_admins_token_is_not_a_site_admin(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path, rounds=4)
    store.add_user("root", "long password")
    _, secret = store.add_token("root", lifetime=3600)
    assert store.authenticate("root", secret).site_admin is False


def test_revoking_by_id_and_by_user(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path, rounds=4)
    first, first_secret = store.add_token("ci-bot", lifetime=3600)
    _, second_secret = store.add_token("ci-bot", lifetime=3600)
    _, other_secret = store.add_token("ci-other", lifetime=3600)
    store.revoke_token(first.id)
    with pytest.raises(AuthenticationFailed, match=r"^token revoked$"):
        store.authenticate("ci-bot", first_secret)
    assert store.authenticate("ci-bot", second_secret).name == "ci-bot"
    with pytest.raises(UsageError, match="no active token with id 'tok-nope'"):
        store.revoke_token("tok-nope")
    assert store.revoke_tokens_of("ci-bot") == 1
    with pytest.raises(AuthenticationFailed, match=r"^token revoked$"):
        store.authenticate("ci-bot", second_secret)
    assert store.authenticate("ci-other", other_secret).name == "ci-other"
    # A second store (the CLI while the server runs) sees the change at once.
    assert CredentialStore(tmp_path).revoke_tokens_of("ci-other") == 1
    with pytest.raises(AuthenticationFailed, match=r"^token revoked$"):
        store.authenticate("ci-other", other_secret)


def test_removing_a_user_refuses_their_password_and_tokens(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path, rounds=4)
    store.add_user("bob", "long password")
    _, secret = store.add_token("bob", lifetime=3600)
    assert store.authenticate("bob", "long password").name == "bob"  # now cached
    assert store.remove_user("bob") == 1
    for password in ("long password", secret):
        with pytest.raises(AuthenticationFailed):
            store.authenticate("bob", password)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90m", 5400), ("12h", 43200), ("30d", 2592000), ("4w", 2419200)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0d", "30", "1y", "800d", "-1d", "d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="--expires"):
        parse_duration(text)


def test_the_auth_command_keeps_secrets_out_of_its_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("s3cret-passw0rd\n"))
    assert (
        main(["auth", "--state", str(state), "add-user", "alice", "--admin", "--password-stdin"])
        == 0
    )
    assert (
        main(["auth", "--state", str(state), "add-token", "--user", "ci-bot", "--expires", "7d"])
        == 0
    )
    out = capsys.readouterr()
    token = out.out.splitlines()[1]
    assert out.out.splitlines()[0] == "added user alice (site admin)"
    assert token.startswith("bsrtc_")
    assert "shown only this once" in out.err
    assert main(["auth", "--state", str(state), "list", "--json"]) == 0
    listing = capsys.readouterr().out
    assert token not in listing and "s3cret" not in listing and "$2b$" not in listing
    data = json.loads(listing)
    assert [u["name"] for u in data["users"]] == ["alice"]
    assert [(t["principal"], t["state"]) for t in data["tokens"]] == [("ci-bot", "active")]
    token_id = data["tokens"][0]["id"]
    assert main(["auth", "--state", str(state), "revoke", token_id]) == 0
    assert main(["auth", "--state", str(state), "list"]) == 0
    text = capsys.readouterr().out
    assert f"  {token_id}  ci-bot  revoked  expires " in text
    assert token not in text
    assert main(["auth", "--state", str(state), "revoke"]) == 2
    assert "one of them" in capsys.readouterr().err
    for name in (USERS_FILE, "users.lock"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
