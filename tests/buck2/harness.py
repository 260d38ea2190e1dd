"""A Buck2 harness on starlark-pyo3: evaluate real BUCK and .bzl files, analyse and build targets.

The harness models Buck2's rule API for prelude-free workspaces closely enough that rules
written for Buck2 (``rule``, ``attrs.*``, ``provider``, ``ctx.actions.*``, ``cmd_args``,
``DefaultInfo``, ``RunInfo``) evaluate unchanged, their targets' attributes are checked when the
BUCK file declares them (the way Buck2 coerces attributes), and their actions run for real.
The Starlark half of the model is ``model.bzl``; attribute coercion is in ``attrs.py``.

Usage::

    ws = Workspace(Path("examples/buck2"))          # reads .buckconfig [cells]/[repositories]
    ws.targets("//proto")                           # evaluates proto/BUCK -> {name: Target}
    result = ws.analyze("//proto:api")              # runs impls in dependency order
    result.providers["DefaultInfo"]["default_outputs"]  # ["buck-out/v2/gen/root/proto/__api__/…"]
    built = ws.build("//proto:api")                 # executes the actions those outputs need
    built.default_outputs                           # [<root>/buck-out/v2/gen/root/proto/…]
    ws.run_target("//tools:gen", ["--help"])        # like `buck2 run //tools:gen -- --help`

API:

- ``Workspace(root, *, env=None)``: a Buck2 project (the directory holding ``.buckconfig``);
  ``env`` is added to the environment of every action and of ``run_target``.
  - ``root``, ``cells: dict[str, Path]`` (cell -> absolute directory), ``root_cell``,
    ``config`` (``BuckConfig``: ``get(section, key)``), ``buck_out`` (``<root>/buck-out``).
  - ``load(label) -> starlark.FrozenModule``: evaluates a ``.bzl`` once (``cell//pkg:file.bzl``).
  - ``targets(package) -> dict[str, Target]``: evaluates a package's BUCK file
    (``"//pkg"``, ``"cell//pkg"`` or ``"pkg"``).
  - ``target(label) -> Target``.
  - ``analyze(label) -> AnalysisResult``: analysis of the target and its deps (cached);
    ``//pkg:t[sub]`` gives the providers of sub-target ``sub``.
  - ``build(label) -> BuildResult``: analysis, then the actions that produce the default and
    other outputs (and what ``RunInfo`` needs), in order, for real.
  - ``run_target(label, args=(), **subprocess_kwargs) -> subprocess.CompletedProcess[str]``:
    builds, then runs ``RunInfo.args + args`` from the project root (text, captured output).
  - ``clean()``: removes ``buck-out`` and forgets analyses.
- ``TargetLabel(cell, package, name)``: ``str()`` is ``root//pkg:name``;
  ``parse_target_label(text, current_cell, current_package)``.
- ``Target``: ``label``, ``rule`` (``root//rules:x.bzl:my_rule``), ``rule_name``, ``attrs``
  (coerced values as plain data: a source is its project-relative path or the label of the
  target producing it, a dep its canonical label, an enum its lower-case variant; defaults
  applied), ``deps`` (labels of the targets it depends on), ``internal_attrs`` (``visibility``...),
  ``is_toolchain_rule``, ``toolchain_deps`` / ``other_deps`` (the deps named by a
  ``toolchain_dep``, and the others).
- ``AnalysisResult``: ``label``; ``providers: dict[str, dict]`` (provider name -> fields as plain
  data: an artifact is its project-relative path, ``cmd_args`` a list of strings, a dependency
  a dict of its providers, ``DefaultInfo.sub_targets`` a dict name -> providers);
  ``actions: list[Action]`` (of the target and its deps, in execution order);
  ``analyses: dict[str, dict[str, dict]]`` (providers of every analysed target, by label).
- ``Action``: ``owner`` (target label), ``kind`` (``run``, ``write``, ``write_json``,
  ``copy_file``, ``symlinked_dir``), ``category``, ``identifier``, ``description``
  (``root//pkg:t (category identifier)``), ``outputs``, ``inputs``, ``argv``, ``env`` (paths are
  project-relative: actions run from the project root), ``content`` (the text a write or
  write_json writes; the source a copy copies), ``is_executable``, ``pretty``, ``local_only``,
  ``srcs`` (a symlinked_dir's links).
- ``BuildResult``: ``analysis``, ``default_outputs: list[Path]`` (absolute),
  ``outputs: dict[str, Path]`` (project-relative path -> absolute, of every executed action),
  ``executed: list[Action]``.
- Errors, all ``Buck2Error`` (``message``, ``causes``; ``str()`` is the chain as Buck2 prints it):
  ``LoadError`` (bad label, missing file or symbol, load cycle, a Starlark error while loading),
  ``AttributeCoercionError`` (missing, unknown or wrongly typed attribute, missing source file,
  bad or duplicate target name), ``AnalysisError`` (an impl failed, a dep lacks a required
  provider, bad providers returned, unbound output, dependency cycle, unknown target, a
  toolchain rule used other than as a ``toolchain_dep`` or the reverse, a bad action category
  or a duplicate category/identifier),
  ``ActionError`` (an action failed, or did not produce a declared output).
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import starlark as sl

from tests.buck2.attrs import (
    INTERNAL_ATTRS,
    CoercionContext,
    CoercionFailure,
    coerce_default,
    coerce_value,
    dep_edges,
    display_attr,
    public_value,
)
from tests.buck2.errors import (
    ActionError,
    AnalysisError,
    AttributeCoercionError,
    Buck2Error,
    LoadError,
)
from tests.buck2.labels import (
    BuckConfig,
    TargetLabel,
    invalid_target_name_message,
    is_valid_target_name,
    parse_load_label,
    parse_target_label,
    read_buckconfig,
    split_subtargets,
)

__all__ = [
    "Action",
    "ActionError",
    "AnalysisError",
    "AnalysisResult",
    "AttributeCoercionError",
    "Buck2Error",
    "BuildResult",
    "LoadError",
    "Target",
    "TargetLabel",
    "Workspace",
    "parse_target_label",
]

MODEL_PATH = Path(__file__).with_name("model.bzl")
# The label under which every BUCK/.bzl file loads the model's globals.
MODEL_LABEL = "@buck2_harness//:model.bzl"
# Names the model gives every .bzl file, and the subset BUCK files get (Buck2 build files
# have no `rule`, `attrs` or `provider`).
_TYPE_NAMES = [
    "AnalysisContext",
    "Provider",
    "Artifact",
    "OutputArtifact",
    "Dependency",
    "ProviderCollection",
    "Label",
    "ConfiguredTargetLabel",
    "TargetLabel",
    "CommandLineArgLike",
    "CellPath",
    "Attr",
]
_BZL_GLOBALS = [
    "attrs",
    "provider_field",
    "DefaultInfo",
    "RunInfo",
    "cmd_args",
    "native",
    "read_config",
    "glob",
    "package_name",
    "harness_new_rule",
    "harness_new_provider",
    "harness_export",
    *_TYPE_NAMES,
]
_BUCK_GLOBALS = ["glob", "package_name", "read_config"]
# `rule`/`provider` are per module: each keeps a registry so that the module's exported
# rules and providers can be named after evaluation (Buck2 names them by their variable).
_BZL_PROLOGUE = (
    "load("
    + ", ".join(json.dumps(name) for name in [MODEL_LABEL, *_BZL_GLOBALS])
    + ")\n"
    + """__harness_rules = []
__harness_providers = []

def rule(*, impl, attrs, doc = "", is_toolchain_rule = False, is_configuration_rule = False, cfg = None):
    return harness_new_rule(__harness_rules, impl, attrs, doc, is_toolchain_rule)

def provider(*, fields, doc = ""):
    return harness_new_provider(__harness_providers, fields, doc)
"""
)
_BUCK_PROLOGUE = (
    "load(" + ", ".join(json.dumps(name) for name in [MODEL_LABEL, *_BUCK_GLOBALS]) + ")\n"
)
_LIBRARY = [
    sl.LibraryExtension.StructType,
    sl.LibraryExtension.Print,
    sl.LibraryExtension.Json,
    sl.LibraryExtension.Typing,
    sl.LibraryExtension.Map,
    sl.LibraryExtension.Filter,
]
_TOP_LEVEL_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=]*)?=(?!=)", re.M)

_T = TypeVar("_T")

_TOOLCHAIN_RULE_AS_NORMAL_DEP = (
    "Target `{}` was used not as a toolchain_dep, but is a toolchain rule"
)


def _unique(items: Iterable[str]) -> list[str]:
    """The items in first-seen order, each once."""
    return list(dict.fromkeys(items))


def bzl_dialect() -> sl.Dialect:
    """Buck2's `.bzl` dialect (buck2_interpreter file_type.rs): types on, f-strings on."""
    dialect = sl.Dialect.extended()
    dialect.enable_def = True
    dialect.enable_lambda = True
    dialect.enable_load = True
    dialect.enable_keyword_only_arguments = True
    dialect.enable_types = sl.DialectTypes.ENABLE
    dialect.enable_load_reexport = False
    dialect.enable_top_level_stmt = True
    dialect.enable_f_strings = True
    return dialect


def buck_dialect() -> sl.Dialect:
    """Buck2's BUCK dialect: no `def`, no types, no top-level `if`/`for`; f-strings on."""
    dialect = sl.Dialect.extended()
    dialect.enable_def = False
    dialect.enable_lambda = True
    dialect.enable_load = True
    dialect.enable_keyword_only_arguments = False
    dialect.enable_types = sl.DialectTypes.DISABLE
    dialect.enable_load_reexport = False
    dialect.enable_top_level_stmt = False
    dialect.enable_f_strings = True
    return dialect


@dataclass
class Target:
    """A declared target: its rule and its coerced attribute values (plain data)."""

    label: TargetLabel
    rule: str
    rule_name: str
    attrs: dict[str, Any]
    deps: list[str]
    internal_attrs: dict[str, Any] = field(default_factory=dict)
    # The coerced values as analysis resolves them (see attrs.py for their shape).
    coerced: dict[str, Any] = field(default_factory=dict, repr=False)
    # Declared with `rule(is_toolchain_rule = True)`: usable only as a `toolchain_dep`.
    is_toolchain_rule: bool = False
    # The subset of `deps` named by `attrs.toolchain_dep`, and the rest (a label may be both).
    toolchain_deps: list[str] = field(default_factory=list)
    other_deps: list[str] = field(default_factory=list)


@dataclass
class Action:
    """A recorded action; paths are relative to the project root, where actions run."""

    owner: str
    kind: str
    category: str
    identifier: str | None
    outputs: list[str]
    inputs: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    content: Any = None
    is_executable: bool = False
    pretty: bool = False
    local_only: bool = False
    srcs: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """Buck2's action name: ``root//pkg:t (category identifier)``."""
        suffix = f" {self.identifier}" if self.identifier else ""
        return f"{self.owner} ({self.category}{suffix})"


@dataclass
class AnalysisResult:
    label: str
    providers: dict[str, dict[str, Any]]
    actions: list[Action]
    analyses: dict[str, dict[str, dict[str, Any]]]


@dataclass
class BuildResult:
    analysis: AnalysisResult
    default_outputs: list[Path]
    outputs: dict[str, Path]
    executed: list[Action]
    seconds: dict[str, float] = field(default_factory=dict)  # wall time by action description


def _top_level_names(source: str) -> list[str]:
    """Names assigned at a module's top level (where Buck2 requires rules/providers to live)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return sorted(set(_TOP_LEVEL_ASSIGNMENT.findall(source)))
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names += [target.id for target in targets if isinstance(target, ast.Name)]
    return sorted(set(names))


class Workspace:
    """A Buck2 project: evaluates its BUCK and .bzl files, analyses and builds targets."""

    def __init__(self, root: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.root = Path(root).resolve()
        self.config: BuckConfig = read_buckconfig(self.root)
        self.cells: dict[str, Path] = self.config.cells
        self.root_cell: str = self.config.root_cell
        self.buck_out = self.root / "buck-out"
        self.env = dict(env or {})
        self._globals = sl.Globals.extended_by(_LIBRARY)
        self._modules: dict[str, sl.FrozenModule] = {}
        self._loading: list[str] = []
        self._packages: dict[str, dict[str, Target]] = {}
        self._current_package: tuple[str, str] | None = None  # (cell, package) being evaluated
        self._pending: Buck2Error | None = None  # a Python error raised inside Starlark
        self._actions: list[Action] = []
        self._analysing: str | None = None
        self._analyses: dict[str, AnalysisResult] = {}
        self._model = self._load_model()

    # -- evaluation ---------------------------------------------------------------------------

    def _surface(self, function: Callable[..., _T]) -> Callable[..., _T]:
        """Wraps a Python callable given to Starlark so its Buck2Error survives the crossing."""

        def call(*args: Any, **kwargs: Any) -> _T:
            try:
                return function(*args, **kwargs)
            except Buck2Error as error:
                self._pending = error
                raise

        return call

    @contextmanager
    def _starlark_errors(self, wrap: Callable[[sl.StarlarkError], Buck2Error]) -> Iterator[None]:
        """Re-raises a Python error raised inside Starlark as itself, else ``wrap(error)``."""
        self._pending = None
        try:
            yield
        except sl.StarlarkError as error:
            pending, self._pending = self._pending, None
            raise (pending or wrap(error)) from error

    def _load_model(self) -> sl.FrozenModule:
        module = sl.Module()
        callables: dict[str, Callable[..., Any]] = {
            "harness_py_error": self._raise_from_starlark,
            "harness_py_internal_attrs": lambda: list(INTERNAL_ATTRS),
            "harness_py_declare_target": self._declare_target,
            "harness_py_record_action": self._record_action,
            "harness_py_begin_analysis": self._begin_analysis,
            "harness_py_shell_quote": shlex.quote,
            "harness_py_read_config": self.config.get,
            "harness_py_glob": self._glob,
            "harness_py_package_name": self._package_name,
        }
        for name, function in callables.items():
            module.add_callable(name, self._surface(function))
        ast_module = sl.parse("model.bzl", MODEL_PATH.read_text(encoding="utf-8"), bzl_dialect())
        with self._starlark_errors(
            lambda e: LoadError("Error evaluating the Buck2 model", [str(e)])
        ):
            sl.eval(module, ast_module, self._globals)
        return module.freeze()

    def _raise_from_starlark(self, kind: str, message: str) -> None:
        error_types: dict[str, type[Buck2Error]] = {"load": LoadError, "analysis": AnalysisError}
        if kind == "analysis" and self._analysing is not None:
            raise AnalysisError(f"Error running analysis for `{self._analysing}`", [message])
        raise error_types[kind](message)

    def cell_path(self, cell: str) -> Path:
        if cell not in self.cells:
            known = ", ".join(sorted(self.cells))
            raise LoadError(f"Unknown cell `{cell}` (cells in .buckconfig: {known})")
        return self.cells[cell]

    def _loader(self, cell: str, package: str) -> sl.FileLoader:
        """Resolves ``load()`` labels relative to the file being evaluated."""

        def load(label: str) -> sl.FrozenModule:
            if label == MODEL_LABEL:
                return self._model
            module_cell, module_package, filename = parse_load_label(label, cell, package)
            return self._load_bzl(module_cell, module_package, filename)

        return sl.FileLoader(self._surface(load))

    def load(self, label: str) -> sl.FrozenModule:
        """Evaluates (once) the ``.bzl`` file at ``cell//package:file.bzl``."""
        cell, package, filename = parse_load_label(label, self.root_cell, "")
        return self._load_bzl(cell, package, filename)

    def _load_bzl(self, cell: str, package: str, filename: str) -> sl.FrozenModule:
        label = f"{cell}//{package}:{filename}"
        if label in self._modules:
            return self._modules[label]
        if label in self._loading:
            cycle = [*self._loading[self._loading.index(label) :], label]
            raise LoadError('Load cycle detected (`->` means "loads"):\n  ' + "\n  -> ".join(cycle))
        path = self.cell_path(cell) / package / filename
        if not path.is_file():
            raise LoadError(f"Error loading `{label}`: file `{self._display(path)}` does not exist")
        source = path.read_text(encoding="utf-8")
        module = sl.Module()
        self._loading.append(label)
        try:
            with self._starlark_errors(
                lambda e: LoadError(f"Error evaluating module: `{label}`", [str(e)])
            ):
                self._eval(module, "<buck2 prelude>", _BZL_PROLOGUE, bzl_dialect(), cell, package)
                self._eval(module, self._display(path), source, bzl_dialect(), cell, package)
                export = (
                    "harness_exports = harness_export(__harness_rules, __harness_providers, {"
                    + ", ".join(f'"{name}": {name}' for name in _top_level_names(source))
                    + f"}}, {json.dumps(label)})\n"
                )
                self._eval(module, "<buck2 export>", export, bzl_dialect(), cell, package)
        finally:
            self._loading.pop()
        frozen = module.freeze()
        self._modules[label] = frozen
        return frozen

    def _eval(
        self,
        module: sl.Module,
        name: str,
        source: str,
        dialect: sl.Dialect,
        cell: str,
        package: str,
    ) -> Any:
        ast_module = sl.parse(name, source, dialect)
        return sl.eval(module, ast_module, self._globals, self._loader(cell, package))

    def _display(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    # -- packages and targets ----------------------------------------------------------------

    def _package_key(self, package: str) -> tuple[str, str]:
        text = package if "//" in package else f"//{package}"
        cell, rest = text.split("//", 1)
        return cell.removeprefix("@") or self.root_cell, rest.strip("/")

    def targets(self, package: str) -> dict[str, Target]:
        """The targets of a package (``//proto``, ``cell//pkg`` or ``proto``), by name."""
        cell, package_path = self._package_key(package)
        key = f"{cell}//{package_path}"
        if key not in self._packages:
            self._packages[key] = self._evaluate_package(cell, package_path)
        return self._packages[key]

    def _evaluate_package(self, cell: str, package: str) -> dict[str, Target]:
        package_dir = self.cell_path(cell) / package
        build_file = package_dir / self.config.buildfile_name
        if not build_file.is_file():
            raise LoadError(
                f"Package `{cell}//{package}` does not exist: no `{self.config.buildfile_name}` "
                f"file in `{self._display(package_dir)}`"
            )
        self._declared: dict[str, Target] = {}
        self._current_package = (cell, package)
        display = self._display(build_file)
        try:
            with self._starlark_errors(
                lambda e: LoadError(
                    f"Error evaluating build file: `{cell}//{package}:{build_file.name}`", [str(e)]
                )
            ):
                module = sl.Module()
                self._eval(module, "<buck2 prelude>", _BUCK_PROLOGUE, buck_dialect(), cell, package)
                self._eval(
                    module,
                    display,
                    build_file.read_text(encoding="utf-8"),
                    buck_dialect(),
                    cell,
                    package,
                )
        finally:
            self._current_package = None
        return self._declared

    def target(self, label: str) -> Target:
        """A declared target (a sub-target path such as ``[name]`` is ignored)."""
        parsed = parse_target_label(label, self.root_cell, None)
        targets = self.targets(parsed.package_label)
        if parsed.name not in targets:
            raise AnalysisError(
                f"Unknown target `{parsed.name}` from package `{parsed.package_label}`."
            )
        return targets[parsed.name]

    def _package_name(self) -> str:
        if self._current_package is None:
            raise LoadError("`package_name()` can only be called while evaluating a build file")
        return self._current_package[1]

    def _glob(self, include: list[str], exclude: list[str]) -> list[str]:
        """Buck2's ``glob``: package-relative files matching ``include`` but not ``exclude``."""
        if self._current_package is None:
            raise LoadError("`glob()` can only be called while evaluating a build file")
        cell, package = self._current_package
        package_dir = self.cell_path(cell) / package
        found = {
            path.relative_to(package_dir).as_posix()
            for pattern in include
            for path in package_dir.glob(pattern)
            if path.is_file()
        }
        return sorted(f for f in found if not any(fnmatch.fnmatch(f, x) for x in exclude))

    def _declare_target(
        self,
        rule_id: str,
        rule_name: str,
        specs: dict[str, dict[str, Any]],
        kwargs: dict[str, Any],
        is_toolchain_rule: bool,
    ) -> None:
        """Called by a rule in a BUCK file: checks the attributes like Buck2 and records it."""
        if self._current_package is None:
            raise LoadError(f"Rule `{rule_name}` can only be called while evaluating a build file")
        cell, package = self._current_package
        if "name" not in kwargs:
            raise AttributeCoercionError(
                f"Missing named-only parameter `name` for call to `{rule_name}`"
            )
        name = kwargs["name"]
        if not isinstance(name, str) or not is_valid_target_name(name):
            raise AttributeCoercionError(invalid_target_name_message(str(name)))
        label = TargetLabel(cell, package, name)
        where = f"(target `{label}`)"
        missing = [
            attr
            for attr, spec in specs.items()
            if not spec["has_default"] and kwargs.get(attr) is None
        ]
        if missing:
            raise AttributeCoercionError(
                f"Missing named-only parameter `{missing[0]}` for call to `{rule_name}` {where}"
            )
        unknown = [attr for attr in kwargs if attr not in specs and attr not in INTERNAL_ATTRS]
        if unknown:
            names = "` `".join(unknown)
            raise AttributeCoercionError(
                f"Found `{names}` extra named parameter(s) for call to `{rule_name}` {where}"
            )
        if name in self._declared:
            raise AttributeCoercionError(f"Attempted to register target {label} twice")
        coerced, edges = self._coerce_attrs(label, rule_id, rule_name, specs, kwargs)
        attrs = {attr: public_value(specs[attr], value) for attr, value in coerced.items()}
        internal = {k: v for k, v in kwargs.items() if k in INTERNAL_ATTRS and k != "name"}
        self._declared[name] = Target(
            label,
            rule_id,
            rule_name,
            attrs,
            deps=_unique(dep for dep, _ in edges),
            internal_attrs=internal,
            coerced=coerced,
            is_toolchain_rule=bool(is_toolchain_rule),
            toolchain_deps=_unique(dep for dep, kind in edges if kind == "toolchain_dep"),
            other_deps=_unique(dep for dep, kind in edges if kind != "toolchain_dep"),
        )

    def _coerce_attrs(
        self,
        label: TargetLabel,
        rule_id: str,
        rule_name: str,
        specs: dict[str, dict[str, Any]],
        kwargs: dict[str, Any],
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The coerced attribute values, and the dependency edges (label, attribute kind)."""
        package_dir = self.cell_path(label.cell) / label.package
        target_ctx = CoercionContext(
            label.cell, label.package, package_dir, self.root, label.package_label
        )
        rule_cell = rule_id.split("//", 1)[0]
        default_ctx = CoercionContext(rule_cell, None, None, self.root, f"{rule_cell}//")
        attrs: dict[str, Any] = {}
        edges: list[tuple[str, str]] = []
        for attr, spec in specs.items():
            user_value = kwargs.get(attr)
            try:
                if user_value is None:
                    value = coerce_default(spec, default_ctx)
                else:
                    value = coerce_value(spec, user_value, target_ctx)
            except CoercionFailure as failure:
                raise AttributeCoercionError(
                    f"Error coercing attribute `{attr}` of `{label}` (rule `{rule_name}`)",
                    [
                        f"Error coercing attribute `{attr}` of type `{display_attr(spec)}`",
                        *failure.chain,
                    ],
                ) from None
            attrs[attr] = value
            edges += dep_edges(spec, value)
        return attrs, edges

    # -- analysis -----------------------------------------------------------------------------

    def _analysis_order(self, top: Target) -> list[Target]:
        """Targets in dependency order (deps first); a cycle is an error, as in Buck2."""
        order: list[Target] = []
        done: set[str] = set()
        path: list[str] = []

        def visit(target: Target) -> None:
            label = str(target.label)
            if label in done:
                return
            if label in path:
                cycle = " -> ".join(f"`{x}`" for x in [*path[path.index(label) :], label])
                raise AnalysisError(f"Cycle detected in the target graph: {cycle}")
            path.append(label)
            for dep in target.deps:
                dependency = self.target(dep)
                self._check_toolchain_use(target, dependency)
                visit(dependency)
            path.pop()
            done.add(label)
            order.append(target)

        if top.is_toolchain_rule:
            # Built on its own, a toolchain target is not a toolchain_dep either.
            raise AnalysisError(
                f"Error configuring `{top.label}`",
                [_TOOLCHAIN_RULE_AS_NORMAL_DEP.format(top.label)],
            )
        visit(top)
        return order

    @staticmethod
    def _check_toolchain_use(target: Target, dependency: Target) -> None:
        """Buck2 configures a toolchain_dep for the exec platform of its dependent: a toolchain
        rule's target must be depended on that way, and only such a target (nodes.rs)."""
        dep = str(dependency.label)
        if dependency.is_toolchain_rule and dep in target.other_deps:
            message = _TOOLCHAIN_RULE_AS_NORMAL_DEP.format(dep)
        elif not dependency.is_toolchain_rule and dep in target.toolchain_deps:
            message = f"Target `{dep}` was used as a toolchain_dep, but is not a toolchain rule"
        else:
            return
        raise AnalysisError(f"Error configuring dependencies of `{target.label}`", [message])

    def analyze(self, label: str) -> AnalysisResult:
        """Runs the implementation of ``label`` and of its deps, recording their actions.

        For ``//pkg:t[name]`` the providers are those of the sub-target ``name``."""
        top = self.target(label)
        key = str(top.label)
        subtargets = split_subtargets(label)[1]
        if subtargets:
            return self._subtarget_analysis(self.analyze(key), subtargets)
        if key in self._analyses:
            return self._analyses[key]
        order = self._analysis_order(top)
        plan = [self._plan_entry(target) for target in order]
        modules = sorted({target.rule.rsplit(":", 1)[0] for target in order})
        driver = "\n".join(
            [
                f'load({json.dumps(MODEL_LABEL)}, "harness_analyze")',
                *(
                    f'load({json.dumps(module)}, __export{index} = "harness_exports")'
                    for index, module in enumerate(modules)
                ),
                "harness_analyze(__plan, ["
                + ", ".join(f"__export{index}" for index in range(len(modules)))
                + "])",
            ]
        )
        module = sl.Module()
        module["__plan"] = plan
        self._actions = []
        try:
            with self._starlark_errors(self._analysis_failure):
                analyses = self._eval(
                    module, "<buck2 analysis>", driver, bzl_dialect(), self.root_cell, ""
                )
        finally:
            self._analysing = None
        result = AnalysisResult(key, analyses[key], self._actions, analyses)
        self._analyses[key] = result
        return result

    @staticmethod
    def _subtarget_analysis(analysis: AnalysisResult, names: list[str]) -> AnalysisResult:
        providers = analysis.providers
        for name in names:
            sub_targets = providers["DefaultInfo"]["sub_targets"]
            if name not in sub_targets:
                available = ", ".join(f"`{sub}`" for sub in sub_targets) or "none"
                raise AnalysisError(
                    f"The sub target `{name}` of `{analysis.label}` is not available. "
                    f"Available sub targets are: {available}"
                )
            providers = sub_targets[name]
        label = analysis.label + "".join(f"[{name}]" for name in names)
        return AnalysisResult(label, providers, analysis.actions, analysis.analyses)

    def _analysis_failure(self, error: sl.StarlarkError) -> Buck2Error:
        where = self._analysing or "the target graph"
        return AnalysisError(f"Error running analysis for `{where}`", [str(error)])

    def _plan_entry(self, target: Target) -> dict[str, Any]:
        label = target.label
        return {
            "label": str(label),
            "cell": label.cell,
            "package": label.package,
            "name": label.name,
            "rule": target.rule,
            "attrs": target.coerced,
            "out_dir": self._out_dir(label),
        }

    def _out_dir(self, label: TargetLabel) -> str:
        """Buck2's output directory of a target, relative to the project root."""
        package = f"{label.package}/" if label.package else ""
        return f"buck-out/v2/gen/{label.cell}/{package}__{label.name}__"

    def _begin_analysis(self, label: str) -> None:
        self._analysing = label

    def _record_action(
        self,
        owner: str,
        kind: str,
        category: str,
        identifier: str | None,
        outputs: list[str],
        data: dict[str, Any],
    ) -> None:
        self._actions.append(
            Action(
                owner=owner,
                kind=kind,
                category=category,
                identifier=identifier,
                outputs=list(outputs),
                inputs=list(data.get("inputs", [])),
                argv=list(data.get("argv", [])),
                env=dict(data.get("env", {})),
                content=self._action_content(kind, data),
                is_executable=bool(data.get("is_executable", False)),
                pretty=bool(data.get("pretty", False)),
                local_only=bool(data.get("local_only", False)),
                srcs=dict(data.get("srcs", {})),
            )
        )

    @staticmethod
    def _action_content(kind: str, data: dict[str, Any]) -> Any:
        """What a write/write_json action writes (as text), or the source a copy copies."""
        if kind == "write_json":
            # Buck2 writes compact JSON (serde_json), or indented with `pretty = True`.
            if data.get("pretty"):
                return json.dumps(data["content"], indent=2, ensure_ascii=False)
            return json.dumps(data["content"], separators=(",", ":"), ensure_ascii=False)
        return data.get("content", data.get("src"))

    # -- build --------------------------------------------------------------------------------

    def build(self, label: str) -> BuildResult:
        """Analyses ``label`` and executes the actions its default outputs need, in order."""
        analysis = self.analyze(label)
        default_info = analysis.providers["DefaultInfo"]
        wanted = [*default_info["default_outputs"], *default_info["other_outputs"]]
        run_info = analysis.providers.get("RunInfo")
        if run_info is not None:
            wanted += run_info["args"]
        seconds: dict[str, float] = {}
        executed = self._execute(analysis.actions, wanted, seconds)
        outputs = {path: self.root / path for action in executed for path in action.outputs}
        default_outputs = [self.root / path for path in default_info["default_outputs"]]
        return BuildResult(analysis, default_outputs, outputs, executed, seconds)

    def _needed_actions(self, actions: list[Action], wanted: Sequence[str]) -> list[Action]:
        producers = {path: action for action in actions for path in action.outputs}
        needed: set[int] = set()
        pending = [path for path in wanted if path in producers]
        while pending:
            action = producers[pending.pop()]
            if id(action) not in needed:
                needed.add(id(action))
                pending += [path for path in action.inputs if path in producers]
                pending += [path for path in action.argv if path in producers]
        return [action for action in actions if id(action) in needed]

    def _execute(
        self, actions: list[Action], wanted: Sequence[str], seconds: dict[str, float] | None = None
    ) -> list[Action]:
        executed = []
        for action in self._needed_actions(actions, wanted):
            started = time.perf_counter()
            for output in action.outputs:
                self._clear_output(self.root / output)
            runner = {
                "run": self._run_action,
                "write": self._write_action,
                "write_json": self._write_action,
                "copy_file": self._copy_action,
                "symlinked_dir": self._symlinked_dir_action,
            }[action.kind]
            runner(action)
            missing = [path for path in action.outputs if not (self.root / path).exists()]
            if missing:
                raise ActionError(
                    f"Action failed: {action.description}",
                    [
                        "Required outputs are missing: Action failed to produce outputs: "
                        + ", ".join(f"`{path}`" for path in missing)
                    ],
                )
            executed.append(action)
            if seconds is not None:
                seconds[action.description] = time.perf_counter() - started
        return executed

    @staticmethod
    def _clear_output(path: Path) -> None:
        # Buck2 deletes stale outputs before running an action, and creates their parents.
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)

    def _action_env(self, action: Action) -> dict[str, str]:
        scratch = self.buck_out / "v2" / "tmp" / action.owner.replace("//", "/").replace(":", "/")
        scratch.mkdir(parents=True, exist_ok=True)
        return {**os.environ, **self.env, **action.env, "BUCK_SCRATCH_PATH": self._display(scratch)}

    def _run_action(self, action: Action) -> None:
        completed = subprocess.run(
            action.argv,
            cwd=self.root,
            env=self._action_env(action),
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise ActionError(
                f"Action failed: {action.description}",
                [
                    f"Local command returned non-zero exit code {completed.returncode}",
                    f"Reproduce locally: `{shlex.join(action.argv)}`",
                    f"stdout:\n{completed.stdout}",
                    f"stderr:\n{completed.stderr}",
                ],
            )

    def _write_action(self, action: Action) -> None:
        path = self.root / action.outputs[0]
        path.write_text(action.content, encoding="utf-8")
        if action.is_executable:
            path.chmod(0o755)

    def _copy_action(self, action: Action) -> None:
        source, destination = self.root / action.content, self.root / action.outputs[0]
        if source.is_dir():
            shutil.copytree(source, destination, symlinks=True)
        else:
            shutil.copy2(source, destination)

    def _symlinked_dir_action(self, action: Action) -> None:
        directory = self.root / action.outputs[0]
        for name, source in action.srcs.items():
            link = directory / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(self.root / source, link.parent))

    def run_target(
        self, label: str, args: Sequence[str] = (), **subprocess_kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Like ``buck2 run label -- args``: builds, then runs its ``RunInfo`` from the root."""
        built = self.build(label)
        run_info = built.analysis.providers.get("RunInfo")
        if run_info is None:
            raise AnalysisError(
                f"Target `{built.analysis.label}` is not a binary: it has no `RunInfo`"
            )
        options: dict[str, Any] = {
            "cwd": self.root,
            "env": {**os.environ, **self.env},
            "capture_output": True,
            "text": True,
            "check": False,
            **subprocess_kwargs,
        }
        return subprocess.run([*run_info["args"], *args], **options)

    def clean(self) -> None:
        """Removes ``buck-out`` (like ``buck2 clean``) and forgets analyses."""
        shutil.rmtree(self.buck_out, ignore_errors=True)
        self._analyses.clear()
