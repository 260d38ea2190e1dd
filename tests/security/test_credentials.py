"""Credentials go only to the host that holds them, and never appear in any output."""

from __future__ import annotations

import base64
import json

import pytest

from bsr_team_cache.oci.devregistry import DistributionServer
from tests.security.conftest import Legit, fetch, hits, one_line_error, publish, run_cli
from tests.security.hostile import HostileRegistry, Machine, Recorder

pytestmark = pytest.mark.slow

USER, PASSWORD = "alice", "s3cret-pw-7f1c"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
CREDENTIALS = {
    "BSR_TEAM_CACHE_REGISTRY_USERNAME": USER,
    "BSR_TEAM_CACHE_REGISTRY_PASSWORD": PASSWORD,
}


@pytest.fixture
def recorder():
    other = Recorder().start()
    yield other
    other.stop()


def test_an_upload_location_on_another_host_gets_no_credentials(
    machine: Machine, legit: Legit, distribution: DistributionServer, recorder: Recorder
) -> None:
    front = HostileRegistry(
        distribution.url, "foreign-location", foreign=recorder.url, basic=(USER, PASSWORD)
    ).start()
    try:
        result = fetch(machine, f"{front.url}/loc", legit.ca, env=CREDENTIALS)
    finally:
        front.stop()

    assert hits(result) == {"local": 0, "team": 0, "bsr": 6}
    uploads = [r for r in recorder.requests if r["method"] == "PUT"]
    assert len(uploads) == 12  # each module's config and files layer, sent to the other host
    assert recorder.credentials_seen(PASSWORD, BASIC) == []
    assert result.stderr.count("could not publish") == 6


def test_a_tags_link_to_another_host_is_not_followed(
    machine: Machine, legit: Legit, distribution: DistributionServer, recorder: Recorder
) -> None:
    publish(f"{distribution.url}/link", legit.artifacts)
    front = HostileRegistry(
        distribution.url, "foreign-link", foreign=recorder.url, basic=(USER, PASSWORD)
    ).start()
    argv = ("bundle", "--team", "platform-team", "--registry", f"{front.url}/link")
    argv += ("--name", "shop", "--deps", f"{legit.host}/acme/orders")
    env = {"SSL_CERT_FILE": str(legit.ca), **CREDENTIALS}
    try:
        first = run_cli(machine, *argv, env=env)  # no tags yet: nothing to page through
        assert first.returncode == 0, first.stderr
        result = run_cli(machine, *argv, env=env)  # v1 exists: its tags page links elsewhere
    finally:
        front.stop()

    assert result.returncode == 1
    assert "the next page is not on this registry" in one_line_error(result)
    assert recorder.requests == []


def test_a_plain_http_token_realm_gets_no_credentials(
    machine: Machine, legit: Legit, distribution: DistributionServer
) -> None:
    front = HostileRegistry(distribution.url, "http-realm").start()
    try:
        result = fetch(machine, f"{front.url}/realm", legit.ca, env=CREDENTIALS)
    finally:
        front.stop()

    assert hits(result) == {"local": 0, "team": 0, "bsr": 6}
    assert (
        "refusing to send credentials to the token service"
        " 'http://token.example.test/token': it is not https" in result.stderr
    )


def test_credentials_in_the_registry_url_are_used_and_never_shown(
    machine: Machine, legit: Legit, distribution: DistributionServer, tmp_path
) -> None:
    front = HostileRegistry(distribution.url, basic=(USER, PASSWORD)).start()
    url = f"http://{USER}:{PASSWORD}@{front.url.split('://')[1]}/urlcreds"
    try:
        cold = fetch(machine, url, legit.ca)
        assert hits(cold) == {"local": 0, "team": 0, "bsr": 6}
        assert all(m["published"] for m in json.loads(cold.stdout)["modules"])
    finally:
        front.stop()
    # The registry is gone: warnings and --json name it, without the password.
    other = Machine(tmp_path / "other")
    other.project.rmdir()
    machine.project.rename(other.project)
    down = fetch(other, url, legit.ca)
    assert hits(down) == {"local": 0, "team": 0, "bsr": 6}
    assert "team registry unavailable" in down.stderr
    for result in (cold, down):
        assert PASSWORD not in result.stdout + result.stderr
        assert BASIC not in result.stdout + result.stderr
    assert front.url.split("://")[1] in down.stderr  # the host is named, not the password


def test_a_mistyped_buf_token_is_never_echoed(
    machine: Machine, legit: Legit, layout_url: str
) -> None:
    secret = "tok-BBBB-9d2e71"
    result = fetch(
        machine, layout_url, legit.ca, env={"BUF_TOKEN": f"tok-AAAA@{legit.host},{secret}"}
    )

    assert result.returncode == 2
    assert "BUF_TOKEN: entry 2 is not token@host" in one_line_error(result)
    assert secret not in result.stdout + result.stderr
