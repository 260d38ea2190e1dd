"""Reading YAML with line numbers, so that config errors can point at the offending line."""

from __future__ import annotations

from pathlib import Path

import yaml

from bsr_team_cache.errors import ConfigError


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def compose(path: Path, text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(path, f"invalid YAML: {exc.problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"invalid YAML: {exc}") from None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror}") from None


def mapping(path: Path, node: yaml.Node | None, what: str) -> dict[str, yaml.Node]:
    """A mapping node as {key: value node}; duplicate keys are an error, as in buf."""
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(path, f"{what} must be a mapping", line=line_of(node))
    out: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            raise ConfigError(path, f"{what} has a non-string key", line=line_of(key_node))
        if key in out:
            raise ConfigError(path, f"duplicate key {key!r} in {what}", line=line_of(key_node))
        out[key] = value_node
    return out


def scalar(path: Path, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(path, f"{what} must be a string", line=line_of(node))
    if node.tag == "tag:yaml.org,2002:null":
        return ""
    return str(node.value)


def sequence(path: Path, node: yaml.Node | None, what: str) -> list[yaml.Node]:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(path, f"{what} must be a list", line=line_of(node))
    return list(node.value)
