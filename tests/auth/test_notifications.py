"""Distribution's notification envelopes as audit records: validated field by field."""

from __future__ import annotations

import json

import pytest

from bsr_team_cache.auth.notifications import (
    EnvelopeError,
    RegistryEvent,
    parse_envelope,
)

DIGEST = "sha256:" + "ab" * 32


def _event(action: str = "pull", **target: object) -> dict:
    return {
        "id": "e1",
        "action": action,
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "repository": "teams/a/config", "digest": DIGEST, "size": 10, **target},
        "request": {"addr": "127.0.0.1:5555", "method": "GET", "useragent": "skopeo"},
        "actor": {"name": "alice"},
    }  # fmt: skip


def test_pushes_and_pulls_become_records() -> None:
    pull = _event(tag="latest")
    push = {**_event("push"), "actor": {}}
    parsed = parse_envelope(json.dumps({"events": [pull, push]}).encode())
    assert parsed.events == [
        RegistryEvent(
            "registry-pull",
            "alice",
            "teams/a/config",
            (f"teams/a/config@{DIGEST}", "teams/a/config:latest"),
        ),
        RegistryEvent(
            "registry-push", "anonymous", "teams/a/config", (f"teams/a/config@{DIGEST}",)
        ),
    ]
    assert (parsed.skipped, parsed.own) == (0, 0)


@pytest.mark.parametrize(
    "event",
    [
        _event("delete"),
        _event("mount"),
        _event(repository="Teams/A"),
        _event(repository="teams/a/" + "x" * 260),
        _event(digest="md5:abc"),
        _event(digest=17),
        _event(tag="bad tag"),
        _event(tag=["latest"]),
        {"action": "pull", "target": "teams/a/config"},
        "pull",
        None,
    ],
)
def test_other_actions_and_malformed_events_are_skipped(event: object) -> None:
    parsed = parse_envelope(json.dumps({"events": [event]}).encode())
    assert (parsed.events, parsed.skipped) == ([], 1)


def test_odd_actor_names_are_not_trusted_as_members() -> None:
    event = {**_event(), "actor": {"name": "alice\nroot"}}
    assert parse_envelope(json.dumps({"events": [event]}).encode()).events[0].member == "unknown"


def test_the_servers_own_requests_are_counted_not_recorded() -> None:
    own = {**_event(), "actor": {"name": "auth-server:self"}}
    parsed = parse_envelope(json.dumps({"events": [own]}).encode(), own_actor="auth-server:self")
    assert (parsed.events, parsed.skipped, parsed.own) == ([], 0, 1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "envelope is not JSON"),
        (b"[]", "expected"),
        (b'{"events": {}}', "expected"),
        (json.dumps({"events": [{}] * 10_001}).encode(), "at most 10000 events"),
        (b" " * (4 << 20) + b"{}", "larger than 4194304 bytes"),
    ],
)
def test_bad_envelopes_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        parse_envelope(body)
