"""Attribute coercion: a target's values checked against its rule's ``attrs.*`` like Buck2 does.

Specs arrive from Starlark as plain dicts (``{"type": "list", "inner": {...}, "has_default":
..., "default": ...}``), values as JSON data. Coerced values are plain data too: sources become
``{"path": <project-relative>, "short_path": <cell-relative>}`` (or ``{"target": label}`` when a
target's output is used as a source), deps their canonical label string.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.buck2.errors import LoadError
from tests.buck2.labels import TargetLabel, parse_target_label, split_subtargets

AttrSpec = dict[str, Any]

# Attributes every Buck2 rule has besides its own (buck2_node attrs/internal.rs).
INTERNAL_ATTRS = (
    "name",
    "default_target_platform",
    "target_compatible_with",
    "compatible_with",
    "exec_compatible_with",
    "visibility",
    "within_view",
    "metadata",
    "tests",
    "modifiers",
)
DEP_TYPES = ("dep", "exec_dep", "toolchain_dep")


class CoercionFailure(Exception):
    """One coercion problem, with Buck2's innermost-last chain of messages."""

    def __init__(self, chain: list[str]) -> None:
        self.chain = chain
        super().__init__("\n".join(chain))


def starlark_repr(value: Any) -> str:
    """How Starlark prints a value (``True``, ``"s"``, ``[1, 2]``, ``{"k": None}``)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(starlark_repr(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{starlark_repr(k)}: {starlark_repr(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return repr(value)


def starlark_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "NoneType"
    return {str: "string", int: "int", float: "float", list: "list", dict: "dict"}.get(
        type(value), type(value).__name__
    )


def for_type_error(value: Any) -> str:
    """starlark-rust's ``display_for_type_error``: type and (long reprs shortened) repr."""
    text = starlark_repr(value)
    if len(text) > 60:
        keep = (60 - len("<<...>>")) // 3
        text = text[: keep * 2] + "<<...>>" + text[len(text) - keep :]
    return f"{starlark_type(value)} (repr: {text})"


def display_attr(spec: AttrSpec, with_default: bool = True) -> str:
    """Buck2's display of an attribute type, e.g. ``attrs.list(attrs.string(), default=[])``."""
    kind = spec["type"]
    args: list[str] = []
    if kind in ("list", "option", "default_only"):
        args.append(display_attr(spec["inner"], with_default=False))
    elif kind == "dict":
        args += [display_attr(spec["key"], False), display_attr(spec["value"], False)]
        args.append(f"sorted={spec.get('sorted', False)}")
    elif kind == "enum":
        args.append(starlark_repr(spec["variants"]))
    elif kind in ("one_of", "tuple"):
        args += [display_attr(alternative, False) for alternative in spec["alternatives"]]
    elif kind in DEP_TYPES and spec.get("providers"):
        args.append("providers=[" + ", ".join(spec["providers"]) + "]")
    if with_default and spec.get("has_default") and kind not in ("option", "default_only"):
        args.append(f"default={starlark_repr(spec.get('default'))}")
    return f"attrs.{kind}({', '.join(args)})"


@dataclass(frozen=True)
class CoercionContext:
    """Where a value is coerced: labels resolve against ``cell``/``package``."""

    cell: str
    package: str | None
    package_dir: Path | None
    project_root: Path
    package_label: str

    def target(self, text: str) -> TargetLabel:
        return parse_target_label(text, self.cell, self.package)


def _expect(value: Any, python_type: type | tuple[type, ...], type_name: str) -> Any:
    wrong_bool = isinstance(value, bool) and python_type is int
    if not isinstance(value, python_type) or wrong_bool:
        raise CoercionFailure([f"Expected `{type_name}`, but got `{for_type_error(value)}`"])
    return value


def _coerce_enum(spec: AttrSpec, value: Any, ctx: CoercionContext) -> str:
    # Buck2 accepts any case and normalises variants to lower case.
    text = _expect(value, str, "str").lower()
    if text not in spec["variants"]:
        allowed = ", ".join(f"`{variant}`" for variant in spec["variants"])
        raise CoercionFailure([f"enum called with `{text}`, only allowed: {allowed}"])
    return text


def _looks_like_target(text: str) -> bool:
    return text.startswith(":") or "//" in text


def _coerce_source(spec: AttrSpec, value: Any, ctx: CoercionContext) -> dict[str, str]:
    text = _expect(value, str, "str")
    if _looks_like_target(text):
        return {"target": _providers_label(text, ctx)}
    if ctx.package_dir is None:
        raise CoercionFailure(
            [f"Expected a package: `{text}` can only be specified in a build file."]
        )
    relative = text.removeprefix("./").rstrip("/")
    path = ctx.package_dir / relative
    if not path.exists():
        raise CoercionFailure(
            [
                f"Source file `{relative}` does not exist as a member of package `{ctx.package_label}`."
            ]
        )
    if path.is_dir() and not spec.get("allow_directory"):
        raise CoercionFailure(
            [
                f"Expected file, but got a directory for path `{relative}` in package `{ctx.package_label}`."
            ]
        )
    # A source artifact's short_path is its path in its package (buck2_execute artifact_path.rs).
    return {"path": path.relative_to(ctx.project_root).as_posix(), "short_path": relative}


def _label(text: str, ctx: CoercionContext) -> TargetLabel:
    try:
        return ctx.target(text)
    except LoadError as error:
        raise CoercionFailure([str(error)]) from None


def _providers_label(text: str, ctx: CoercionContext) -> str:
    """A dep: the canonical label, with its sub-target path (``root//p:t[sub]``) if any."""
    subtargets = split_subtargets(text)[1]
    return str(_label(text, ctx)) + "".join(f"[{name}]" for name in subtargets)


def _coerce_list(spec: AttrSpec, value: Any, ctx: CoercionContext) -> list[Any]:
    return [coerce_value(spec["inner"], item, ctx) for item in _expect(value, list, "list")]


def _coerce_dict(spec: AttrSpec, value: Any, ctx: CoercionContext) -> dict[Any, Any]:
    coerced = {
        coerce_value(spec["key"], key, ctx): coerce_value(spec["value"], item, ctx)
        for key, item in _expect(value, dict, "dict").items()
    }
    return dict(sorted(coerced.items())) if spec.get("sorted") else coerced


def _coerce_option(spec: AttrSpec, value: Any, ctx: CoercionContext) -> Any:
    return None if value is None else coerce_value(spec["inner"], value, ctx)


def _coerce_one_of(spec: AttrSpec, value: Any, ctx: CoercionContext) -> dict[str, Any]:
    """The first alternative that accepts the value, remembered for resolution at analysis."""
    chains = []
    for index, alternative in enumerate(spec["alternatives"]):
        try:
            return {"alternative": index, "value": coerce_value(alternative, value, ctx)}
        except CoercionFailure as failure:
            chains.append(": ".join(failure.chain))
    raise CoercionFailure(
        ["one_of fails, the errors against each alternative in turn were:\n" + "\n".join(chains)]
    )


def _coerce_tuple(spec: AttrSpec, value: Any, ctx: CoercionContext) -> list[Any]:
    items = _expect(value, list, "tuple")
    alternatives = spec["alternatives"]
    if len(items) != len(alternatives):
        raise CoercionFailure([f"Expected tuple of {len(alternatives)} elements, got {len(items)}"])
    return [
        coerce_value(item_spec, item, ctx)
        for item_spec, item in zip(alternatives, items, strict=True)
    ]


def _coerce_default_only(spec: AttrSpec, value: Any, ctx: CoercionContext) -> Any:
    raise CoercionFailure(
        [f"default_only is not allowed to be specified, but got `{starlark_repr(value)}`"]
    )


_COERCERS: dict[str, Callable[[AttrSpec, Any, CoercionContext], Any]] = {
    "string": lambda spec, value, ctx: _expect(value, str, "str"),
    "bool": lambda spec, value, ctx: _expect(value, bool, "bool"),
    "int": lambda spec, value, ctx: _expect(value, int, "int"),
    "any": lambda spec, value, ctx: value,
    "list": _coerce_list,
    "dict": _coerce_dict,
    "option": _coerce_option,
    "enum": _coerce_enum,
    "source": _coerce_source,
    "label": lambda spec, value, ctx: str(_label(_expect(value, str, "str"), ctx)),
    "default_only": _coerce_default_only,
    "one_of": _coerce_one_of,
    "tuple": _coerce_tuple,
    **{
        kind: lambda spec, value, ctx: _providers_label(_expect(value, str, "str"), ctx)
        for kind in DEP_TYPES
    },
}


def coerce_value(spec: AttrSpec, value: Any, ctx: CoercionContext) -> Any:
    coercer = _COERCERS.get(spec["type"])
    if coercer is None:
        raise CoercionFailure([f"The Buck2 model does not support `attrs.{spec['type']}`"])
    return coercer(spec, value, ctx)


def coerce_default(spec: AttrSpec, ctx: CoercionContext) -> Any:
    """A default, coerced in the rule's cell (Buck2 resolves default labels there)."""
    inner = spec["inner"] if spec["type"] == "default_only" else spec
    default = spec.get("default")
    return None if default is None else coerce_value(inner, default, ctx)


def public_value(spec: AttrSpec, value: Any) -> Any:
    """A coerced value as users read it: a source is its project-relative path (or the label
    of the target producing it), a `one_of` the value of the alternative that matched."""
    if value is None:
        return None
    kind = spec["type"]
    if kind == "source":
        return value.get("target", value.get("path"))
    if kind == "one_of":
        return public_value(spec["alternatives"][value["alternative"]], value["value"])
    if kind == "list":
        return [public_value(spec["inner"], item) for item in value]
    if kind == "tuple":
        return [public_value(s, item) for s, item in zip(spec["alternatives"], value, strict=True)]
    if kind in ("option", "default_only"):
        return public_value(spec["inner"], value)
    if kind == "dict":
        return {key: public_value(spec["value"], item) for key, item in value.items()}
    return value


def dep_labels(spec: AttrSpec, value: Any) -> list[str]:
    """The targets a coerced value depends on (deps and target-produced sources)."""
    return [label for label, _ in dep_edges(spec, value)]


def dep_edges(spec: AttrSpec, value: Any) -> list[tuple[str, str]]:
    """The targets a coerced value depends on, each with the kind of attribute that names it
    (``dep``, ``exec_dep``, ``toolchain_dep`` or ``source``): Buck2 configures a
    ``toolchain_dep`` differently, and only toolchain rules may be one."""
    if value is None:
        return []
    kind = spec["type"]
    if kind in DEP_TYPES:
        return [(split_subtargets(value)[0], kind)]
    if kind == "source":
        return [(split_subtargets(value["target"])[0], kind)] if "target" in value else []
    if kind in ("list",):
        return [edge for item in value for edge in dep_edges(spec["inner"], item)]
    if kind in ("option", "default_only"):
        return dep_edges(spec["inner"], value)
    if kind == "one_of":
        return dep_edges(spec["alternatives"][value["alternative"]], value["value"])
    if kind == "tuple":
        return [
            edge
            for item_spec, item in zip(spec["alternatives"], value, strict=True)
            for edge in dep_edges(item_spec, item)
        ]
    if kind == "dict":
        return [
            edge
            for key, item in value.items()
            for edge in dep_edges(spec["key"], key) + dep_edges(spec["value"], item)
        ]
    return []
