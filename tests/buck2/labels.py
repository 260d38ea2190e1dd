"""Buck2 labels and cells: ``cell//package:name`` parsing and ``.buckconfig`` reading."""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

from tests.buck2.errors import LoadError

# Buck2's TargetName: alphanumerics and `,.=-/~@!+$_` (buck2_core target/name.rs).
_TARGET_NAME = re.compile(r"^[A-Za-z0-9,.=\-/~@!+$_]+$")


def invalid_target_name_message(name: str) -> str:
    return (
        f"Invalid target name `{name}`. Target names are non-empty strings and can only "
        "contain alpha numeric characters, and symbols `,`, `.`, `=`, `-`, `/`, `~`, `@`, "
        "`!`, `+`, `$`, and `_`. No other characters are allowed."
    )


def is_valid_target_name(name: str) -> bool:
    return bool(_TARGET_NAME.match(name))


@dataclass(frozen=True, order=True)
class TargetLabel:
    """A target: ``root//proto:api`` is cell ``root``, package ``proto``, name ``api``."""

    cell: str
    package: str
    name: str

    def __str__(self) -> str:
        return f"{self.cell}//{self.package}:{self.name}"

    @property
    def package_label(self) -> str:
        return f"{self.cell}//{self.package}"


def split_subtargets(text: str) -> tuple[str, list[str]]:
    """``//pkg:t[a][b]`` -> (``//pkg:t``, [``a``, ``b``]): a target and the sub-target path."""
    if not text.endswith("]") or "[" not in text:
        return text, []
    base, _, rest = text.partition("[")
    return base, rest[:-1].split("][")


def _split_cell(text: str, current_cell: str) -> tuple[str, str] | None:
    """``@cell//x``/``cell//x``/``//x`` -> (cell, x); None for package-relative text."""
    if "//" not in text:
        return None
    cell, rest = text.split("//", 1)
    return (cell.removeprefix("@") or current_cell), rest


def parse_target_label(text: str, current_cell: str, current_package: str | None) -> TargetLabel:
    """Resolves ``:name``, ``//pkg:name``, ``cell//pkg:name`` or ``@cell//pkg:name``."""
    split = _split_cell(split_subtargets(text)[0], current_cell)
    if split is None:
        if not text.startswith(":") or current_package is None:
            raise LoadError(f"Invalid target label `{text}`: expected `//package:name` or `:name`")
        cell, package, name = current_cell, current_package, split_subtargets(text)[0][1:]
    else:
        cell, rest = split
        if ":" not in rest:
            # `//pkg/sub` is shorthand for `//pkg/sub:sub`, as in Buck2.
            package, name = rest, rest.rsplit("/", 1)[-1]
        else:
            package, name = rest.split(":", 1)
    if not is_valid_target_name(name):
        raise LoadError(invalid_target_name_message(name))
    return TargetLabel(cell, package.strip("/"), name)


def parse_load_label(text: str, current_cell: str, current_package: str) -> tuple[str, str, str]:
    """A ``load()`` label -> (cell, package, file name); e.g. ``:defs.bzl`` or ``@c//p:x.bzl``."""
    split = _split_cell(text, current_cell)
    if split is None:
        if not text.startswith(":"):
            raise LoadError(
                f"Invalid load label `{text}`: expected `//package:file.bzl`, "
                "`:file.bzl` or `@cell//package:file.bzl`"
            )
        cell, package, filename = current_cell, current_package, text[1:]
    else:
        cell, rest = split
        if ":" not in rest:
            raise LoadError(f"Invalid load label `{text}`: missing `:` before the file name")
        package, filename = rest.split(":", 1)
    if not filename.endswith(".bzl"):
        raise LoadError(f"Invalid load label `{text}`: only `.bzl` files can be loaded")
    return cell, package.strip("/"), filename


@dataclass(frozen=True)
class BuckConfig:
    """The parts of ``.buckconfig`` the model reads: cells, build file name, other values."""

    cells: dict[str, Path]
    root_cell: str
    buildfile_name: str
    values: dict[tuple[str, str], str]

    def get(self, section: str, key: str) -> str | None:
        return self.values.get((section, key))


def read_buckconfig(root: Path) -> BuckConfig:
    path = root / ".buckconfig"
    if not path.is_file():
        raise LoadError(f"No `.buckconfig` in `{root}`: it is not a Buck2 project root")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    cells: dict[str, Path] = {}
    for section in ("repositories", "cells"):
        if parser.has_section(section):
            for name, cell_path in parser.items(section):
                cells[name] = (root / cell_path).resolve()
    root_cells = [name for name, cell_path in cells.items() if cell_path == root.resolve()]
    if not root_cells:
        raise LoadError(f"`{path}` declares no cell for the project root (e.g. `root = .`)")
    buildfile_name = "BUCK"
    if parser.has_section("buildfile"):
        buildfile_name = parser.get("buildfile", "name_v2", fallback=None) or parser.get(
            "buildfile", "name", fallback="BUCK"
        )
    values = {
        (section, key): value
        for section in parser.sections()
        for key, value in parser.items(section)
    }
    return BuckConfig(cells, root_cells[0], buildfile_name, values)
