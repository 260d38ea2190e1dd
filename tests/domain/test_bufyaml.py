import pytest

from bsr_team_cache.domain.bufyaml import parse_buf_yaml, read_buf_yaml
from bsr_team_cache.errors import ConfigError

# Every test here runs with both YAML loaders (tests/domain/conftest.py).
pytestmark = pytest.mark.usefixtures("yaml_loader")


def test_v2_with_modules_and_deps(tmp_path):
    (tmp_path / "buf.yaml").write_text(
        "version: v2\n"
        "modules:\n"
        "  - path: proto\n"
        "    name: buf.build/acme/shop\n"
        "  - path: vendor\n"
        "deps:\n"
        "  - buf.build/googleapis/googleapis\n"
        "  - localhost:8443/acme/pets:v1\n"
    )
    config = read_buf_yaml(tmp_path)
    assert config.version == "v2"
    assert [m.path for m in config.modules] == ["proto", "vendor"]
    assert str(config.modules[0].name) == "buf.build/acme/shop"
    assert config.modules[1].name is None
    assert [str(d) for d in config.deps] == [
        "buf.build/googleapis/googleapis",
        "localhost:8443/acme/pets:v1",
    ]


def test_v1_single_module():
    config = parse_buf_yaml(
        "version: v1\nname: buf.build/foo/mod-a\ndeps:\n  - buf.build/foo/mod-b\n"
    )
    assert config.version == "v1"
    assert str(config.modules[0].name) == "buf.build/foo/mod-a"
    assert str(config.deps[0]) == "buf.build/foo/mod-b"


def test_missing_version_is_v1beta1_and_no_deps_is_fine():
    config = parse_buf_yaml("build:\n  roots: [proto]\n")
    assert config.version == "v1beta1" and config.deps == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: v3\n", "buf.yaml:1: unknown version 'v3' (expected v1beta1, v1 or v2)"),
        ("version: v2\ndeps: [\n", "buf.yaml:3: invalid YAML"),
        ("- a\n- b\n", "buf.yaml:1: buf.yaml must be a mapping"),
        ("version: v2\ndeps: buf.build/a/b\n", "buf.yaml:2: deps must be a list"),
        (
            "version: v2\ndeps:\n  - buf.build/a\n",
            "buf.yaml:3: deps[0]: invalid module reference 'buf.build/a'",
        ),
        (
            "version: v2\ndeps:\n  - buf.build/a/b\n  - buf.build/a/b:v2\n",
            "buf.yaml:4: deps[1]: duplicate dependency buf.build/a/b (first listed on line 3)",
        ),
        ("version: v1\nmodules:\n  - path: a\n", "buf.yaml:3: 'modules' needs version v2"),
        (
            "version: v2\nname: buf.build/a/b\nmodules:\n  - path: a\n",
            "buf.yaml:2: top-level 'name' is not allowed",
        ),
        ("version: v2\nversion: v1\n", "buf.yaml:2: duplicate key 'version'"),
        ("version: v2\ndeps:\n  - {a: 1}\n", "buf.yaml:3: deps[0] must be a string"),
    ],
)
def test_malformed_buf_yaml(text, message):
    with pytest.raises(ConfigError) as info:
        parse_buf_yaml(text, "buf.yaml")
    assert message in str(info.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"buf.yaml: file not found"):
        read_buf_yaml(tmp_path / "buf.yaml")
