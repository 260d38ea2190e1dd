import pytest

from bsr_team_cache.domain.moduleref import (
    ModuleName,
    normalize_commit_id,
    parse_module_name,
    parse_module_ref,
)
from bsr_team_cache.errors import InvalidModuleRefError


def test_plain_name_has_no_ref():
    ref = parse_module_ref("buf.build/googleapis/googleapis")
    assert ref.module == ModuleName("buf.build", "googleapis", "googleapis")
    assert ref.ref is None and ref.label is None and not ref.is_commit


def test_registry_with_port_and_label():
    ref = parse_module_ref("localhost:8443/acme/pets:v1.2.0")
    assert ref.module.registry == "localhost:8443"
    assert ref.label == "v1.2.0"
    assert str(ref) == "localhost:8443/acme/pets:v1.2.0"


def test_commit_ref_is_recognized():
    ref = parse_module_ref("buf.build/acme/pets:fc7d540124fd42db92511c19a60a1d98")
    assert ref.is_commit and ref.label is None


def test_dashed_commit_is_normalized():
    assert normalize_commit_id("FC7D5401-24FD-42DB-9251-1C19A60A1D98") == (
        "fc7d540124fd42db92511c19a60a1d98"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty module reference"),
        ("googleapis", "expected registry/owner/name"),
        ("buf.build/googleapis", "expected registry/owner/name"),
        ("buf.build/a/b/c", "expected registry/owner/name"),
        ("buf.build/acme/pets:", "empty ref"),
        ("buf.build/acme/pets:a:b", "not a label or commit id"),
        ("buf.build/acme/pets@v1", "no '@' syntax"),
        ("bad_host!/acme/pets", "not a host name"),
        ("localhost:99999/acme/pets", "port 99999 is out of range"),
        ("buf.build/-acme/pets", "invalid owner"),
    ],
)
def test_malformed_refs_say_what_is_wrong(text, message):
    with pytest.raises(InvalidModuleRefError, match=message):
        parse_module_ref(text)


def test_module_name_takes_no_ref():
    with pytest.raises(InvalidModuleRefError, match="takes no ':ref'"):
        parse_module_name("buf.build/acme/pets:main")
