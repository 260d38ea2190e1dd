"""Registry URLs: credentials in them are used for their host and never shown, however they are
mistyped."""

from __future__ import annotations

import pytest

from bsr_team_cache.errors import UsageError
from bsr_team_cache.oci.url import HTTPRegistryURL, parse_http_registry_url, redact
from bsr_team_cache.settings import load_settings

SECRET = "s3cr"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bob:s3cr@host/ns", "https://host/ns"),
        ("https://bob:s3cr@ss@host:5000/ns", "https://host:5000/ns"),  # a bare '@' in it
        ("https://bob:s3cr/et@host/ns", "https://host/ns"),  # a bare '/' in it
        ("https://bob:s3cr?et@host", "https://host"),
        ("https://bob:s3cr#et@host/a/b", "https://host/a/b"),
        ("https://host/ns", "https://host/ns"),
        ("oci-layout:/srv/registry", "oci-layout:/srv/registry"),
    ],
)
def test_redact_drops_everything_up_to_the_last_at(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_credentials_are_parsed_for_the_host_and_not_in_its_repr() -> None:
    parsed = parse_http_registry_url("https://bob:s3cr%2Fet@host:5000/team/ns")
    assert parsed == HTTPRegistryURL("https", "host:5000", "team/ns", "bob", "s3cr/et")
    assert parsed.base == "https://host:5000"
    for text in (repr(parsed), str(parsed), f"{parsed}", "%s" % (parsed,)):  # noqa: UP031
        assert text == (
            "HTTPRegistryURL(scheme='https', host='host:5000', namespace='team/ns', username='bob')"
        )


@pytest.mark.parametrize(
    "url",
    [
        "https://bob:s3cr/et@host/ns",  # would be host "bob", port "s3cr"
        "https://bob:1234/5678@host",  # would be host "bob:1234", namespace "5678@host"
        "https://bob:s3cr?et@host",
        "https://bob:s3cr#et@host",
    ],
)
def test_a_password_with_a_bare_separator_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_http_registry_url(url)
    message = str(caught.value)
    assert SECRET not in message and "5678" not in message
    assert message.endswith(
        "'@' after the host (a user or password with '/', '?', '#' or '@' must be percent-encoded)"
    )


def test_an_unparsable_port_is_refused_without_quoting_the_url_s_text() -> None:
    with pytest.raises(UsageError) as caught:
        parse_http_registry_url("https://bob:s3cr@host:99999999/ns")
    assert str(caught.value) == (
        "registry 'https://host:99999999/ns': not a URL (expected"
        " https://[USER:PASSWORD@]HOST[:PORT][/NS]; a user or password with '/', '?', '#' or '@'"
        " must be percent-encoded)"
    )


def test_settings_never_show_the_registry_password() -> None:
    settings = load_settings(registry="https://bob:s3cr@host/ns", team="t", member="m", env={})
    assert settings.registry == "https://bob:s3cr@host/ns"  # used as given
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert "registry='https://host/ns'" in repr(settings)


@pytest.mark.parametrize("url", ["~no-such-user-here/registry", "oci-layout:~no-such-user-here/r"])
def test_a_home_of_an_unknown_user_is_a_usage_error(url: str) -> None:
    from bsr_team_cache.oci import open_registry
    from bsr_team_cache.oci.url import check_registry_url

    for attempt in (check_registry_url, open_registry):
        with pytest.raises(UsageError) as caught:
            attempt(url)
        assert str(caught.value) == (
            f"registry {url!r}: cannot tell which directory it names (~ of an unknown user)"
        )
