"""Where registry credentials come from (docker/podman conventions)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from bsr_team_cache.errors import ConfigError
from bsr_team_cache.oci.credentials import ANONYMOUS, Credentials, credentials_for


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("BSR_TEAM_CACHE_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "config.json"


def _auth(user: str, pw: str) -> str:
    return base64.b64encode(f"{user}:{pw}".encode()).decode()


def test_auths_forms(docker_config: Path) -> None:
    docker_config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://reg.example.com/v1/": {"auth": _auth("u", "p:with:colons")},
                    "other.example.com:5000": {"username": "a", "password": "b"},
                    "tok.example.com": {"identitytoken": "refresh-me"},
                }
            }
        )
    )
    assert credentials_for("reg.example.com") == Credentials("u", "p:with:colons")
    assert credentials_for("OTHER.example.com:5000") == Credentials("a", "b")
    assert credentials_for("tok.example.com") == Credentials(identity_token="refresh-me")
    assert credentials_for("unknown.example.com") == ANONYMOUS
    assert Credentials("u", "p").basic() == "Basic " + _auth("u", "p")


def test_environment_wins(docker_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_config.write_text(json.dumps({"auths": {"r.example": {"auth": _auth("x", "y")}}}))
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY_PASSWORD", "secret")
    assert credentials_for("r.example") == Credentials("ci", "secret")


def test_helpers(docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store = bin_dir / "docker-credential-store"
    store.write_text(
        '#!/bin/sh\nread host\nif [ "$host" = "known.example" ]; then\n'
        'echo \'{"ServerURL":"known.example","Username":"<token>","Secret":"idtok"}\'\n'
        'else echo "credentials not found" >&2; exit 1; fi\n'
    )
    store.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    docker_config.write_text(json.dumps({"credsStore": "store"}))
    assert credentials_for("known.example") == Credentials(identity_token="idtok")
    assert credentials_for("nope.example") == ANONYMOUS
    docker_config.write_text(json.dumps({"credHelpers": {"gone.example": "missing"}}))
    with pytest.raises(ConfigError, match=r"docker-credential-missing.*not on PATH"):
        credentials_for("gone.example")


def test_bad_files_name_the_file(docker_config: Path) -> None:
    docker_config.write_text('{"auths": {"r.example": {"auth": "%%%"}}}')
    with pytest.raises(ConfigError, match=r"config\.json: auths\.r\.example: 'auth' is not base64"):
        credentials_for("r.example")
    docker_config.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        credentials_for("r.example")
