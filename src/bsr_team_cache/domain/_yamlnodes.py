"""Reading YAML with line numbers, so that config errors can point at the offending line.

PyYAML is imported on first use (~20 ms that --help and the commands reading no buf.yaml or
buf.lock need not pay), and read with libyaml's loader when PyYAML has it: ~8x faster on a
large buf.lock.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from bsr_team_cache.errors import ConfigError

if TYPE_CHECKING:
    import yaml

# Strings that YAML reads back as the same string when written plain: a letter first (so not a
# number, and not a YAML indicator), then name-like characters. Module names, commits that begin
# with a letter, and digests are of this kind; anything else goes through the full check.
PLAIN_SAFE = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*(?::[A-Za-z0-9._/-]+)*")
# Words YAML reads as something else than that string (booleans, null, numbers).
PLAIN_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"}
# Lowercase hex (commit ids, which may begin with a digit): of these, YAML reads only decimal
# integers, 1.1's binary ones and 1.2's exponent floats as something else (every other number,
# boolean or null form needs a character that is not lowercase hex). Saves importing PyYAML
# (~25 ms) to write a module.yaml.
_HEX = re.compile(r"[0-9a-f]+")
_HEX_NOT_TEXT = re.compile(r"[0-9]+(?:e[0-9]+)?|0b[01]+")
# YAML 1.2 numbers (what buf's Go YAML reads), which PyYAML's 1.1 rules read as strings.
_YAML12_NUMBER = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|0x[0-9a-fA-F]+|0o[0-7]+"
)


def scalar_text(value: str) -> str:
    """``value`` as a YAML scalar: plain when YAML would read it back unchanged, else a
    double-quoted string with every special character escaped (so no value can add keys)."""
    if PLAIN_SAFE.fullmatch(value) and value.lower() not in PLAIN_WORDS:
        return value
    if _HEX.fullmatch(value) and not _HEX_NOT_TEXT.fullmatch(value):
        return value
    import yaml

    try:
        plain_ok = (
            value.isprintable()
            and "#" not in value
            and not _YAML12_NUMBER.fullmatch(value)
            and yaml.safe_load(value) == value
            and value == value.strip()
        )
    except yaml.YAMLError:
        plain_ok = False
    if plain_ok:
        return value
    escaped = value.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{escaped}"'


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


# Where libyaml and PyYAML's own loader disagree (found by differential fuzzing): tabs, a
# byte-order mark past the start, flow collections, explicit keys, tags, block scalars and
# directives (``%YAML 1.1#``), which one of them refuses or marks otherwise. buf writes none.
_PURE_ONLY = "\t\ufeff{}[]?!|>%"
# Block nesting deepens by at most a level a column, so short lines bound the depth: far below
# where the pure loader runs out of recursion (~450 levels) while libyaml goes to 1,000.
_LIBYAML_MAX_LINE = 256


def _libyaml_reads_alike(text: str) -> bool:
    """Whether libyaml reads ``text`` as the pure loader does (the same nodes and marks, or an
    error where it has one). One substring search a character: ~30x faster than a regex."""
    return not any(c in text for c in _PURE_ONLY) and (
        max(map(len, text.split("\n"))) < _LIBYAML_MAX_LINE
    )


def compose(path: Path, text: str) -> yaml.Node | None:
    import yaml

    if yaml.__with_libyaml__ and _libyaml_reads_alike(text):
        try:
            return yaml.compose(text, Loader=yaml.CSafeLoader)
        except (yaml.YAMLError, UnicodeEncodeError, RecursionError):
            pass  # the pure loader says what is wrong: the same message and line either way
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError(path, "invalid YAML: nested too deeply") from None
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
    import yaml

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
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(path, f"{what} must be a string", line=line_of(node))
    if node.tag == "tag:yaml.org,2002:null":
        return ""
    return str(node.value)


def sequence(path: Path, node: yaml.Node | None, what: str) -> list[yaml.Node]:
    import yaml

    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(path, f"{what} must be a list", line=line_of(node))
    return list(node.value)
