"""The Buck2 harness on its own sample workspace (tests/buck2/samples/ws).

The sample has two cells (``root`` and ``shared``), rules in ``//rules`` loading each other with
``:file.bzl`` and ``@shared//lib:strings.bzl``, a Python tool run through ``attrs.exec_dep`` and
``RunInfo``, and a ``greeting`` rule whose outputs feed its dependents.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.buck2.harness import (
    ActionError,
    AnalysisError,
    AttributeCoercionError,
    LoadError,
    TargetLabel,
    Workspace,
    parse_target_label,
)

SAMPLE = Path(__file__).parent / "samples" / "ws"
GEN = "buck-out/v2/gen/root"

# Every attribute of the `kinds` rule (rules/kinds.bzl), with a valid value.
VALID_KINDS = {
    "text": '"t"',
    "flag": "True",
    "count": "1",
    "items": '["a"]',
    "table": '{"a": 1}',
    "maybe": "None",
    "mode": '"fast"',
    "src": '"data.txt"',
    "tool": '"//tools:greet"',
}


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    """A private copy of the sample workspace (builds write its buck-out)."""
    root = tmp_path / "ws"
    shutil.copytree(SAMPLE, root)
    return root


@pytest.fixture
def ws(workspace_dir: Path) -> Workspace:
    return Workspace(workspace_dir)


def write_package(root: Path, package: str, build_file: str, files: dict[str, str]) -> None:
    directory = root / package
    directory.mkdir(parents=True)
    (directory / "BUCK").write_text(build_file)
    for name, content in files.items():
        (directory / name).write_text(content)


def kinds_package(root: Path, package: str, **overrides: str | None) -> str:
    """A package with one `kinds` target `t`; an override of None drops that attribute."""
    values = {**VALID_KINDS, **overrides}
    lines = "".join(f"    {key} = {value},\n" for key, value in values.items() if value is not None)
    build = f'load("//rules:kinds.bzl", "kinds")\n\nkinds(\n    name = "t",\n{lines})\n'
    write_package(root, package, build, {"data.txt": "data\n"})
    return f"//{package}:t"


def test_cells_and_labels(ws: Workspace, workspace_dir: Path) -> None:
    assert ws.root_cell == "root"
    assert ws.cells == {
        "root": workspace_dir.resolve(),
        "shared": (workspace_dir / "shared").resolve(),
    }
    assert parse_target_label(":x", "root", "app") == TargetLabel("root", "app", "x")
    assert parse_target_label("//a/b:c", "root", "app") == TargetLabel("root", "a/b", "c")
    assert parse_target_label("@shared//lib:y", "root", None) == TargetLabel("shared", "lib", "y")
    assert parse_target_label("shared//lib", "root", None) == TargetLabel("shared", "lib", "lib")
    assert str(TargetLabel("root", "app", "top")) == "root//app:top"


def test_every_attribute_type_is_coerced_and_resolved(ws: Workspace) -> None:
    target = ws.target("//kinds:all")
    assert target.rule == "root//rules:kinds.bzl:kinds"
    assert target.rule_name == "kinds"
    assert target.attrs == {
        "text": "some text",
        "flag": True,
        "count": 3,
        "items": ["a", "b"],
        "table": {"one": 1, "two": 2},
        "maybe": None,
        "mode": "safe",
        "src": "kinds/data.txt",
        "tool": "root//tools:greet",
        "runner": "root//tools:greet",
        "fixed": "fixed-value",
        "greeting": "hi",
    }
    assert target.deps == ["root//tools:greet"]
    providers = ws.analyze("//kinds:all").providers
    assert providers == {
        "DefaultInfo": {"default_outputs": [], "other_outputs": [], "sub_targets": {}},
        "KindsInfo": {
            "values": {
                "name": "all",
                "text": "some text",
                "flag": True,
                "count": 3,
                "items": ["a", "b"],
                "table": {"one": 1, "two": 2},
                "maybe": None,
                "mode": "safe",
                "fixed": "fixed-value",
                "greeting": "hi",
                "label": ["root", "kinds", "all"],
            },
            "tool_name": "greet",
            "source_path": "kinds/data.txt",
            "source_short_path": ["data.txt", "data.txt", ".txt"],
        },
    }


@pytest.mark.parametrize(
    ("given", "attr_type", "cause"),
    [
        ({"count": '"three"'}, "attrs.int()", 'Expected `int`, but got `string (repr: "three")`'),
        (
            {"items": '["a", 2]'},
            "attrs.list(attrs.string())",
            "Expected `str`, but got `int (repr: 2)`",
        ),
        (
            {"mode": '"Slow"'},
            'attrs.enum(["fast", "safe"])',
            "enum called with `slow`, only allowed: `fast`, `safe`",
        ),
        (
            {"src": '"nope.txt"'},
            "attrs.source()",
            "Source file `nope.txt` does not exist as a member of package `root//errors`.",
        ),
        (
            {"fixed": '"mine"'},
            "attrs.default_only(attrs.string())",
            'default_only is not allowed to be specified, but got `"mine"`',
        ),
    ],
    ids=["wrong-type", "wrong-type-in-list", "bad-enum", "missing-source", "default-only-set"],
)
def test_coercion_errors_name_rule_target_and_attribute(
    ws: Workspace, workspace_dir: Path, given: dict[str, str], attr_type: str, cause: str
) -> None:
    label = kinds_package(workspace_dir, "errors", **given)
    with pytest.raises(AttributeCoercionError) as error:
        ws.target(label)
    (attr,) = given
    assert str(error.value) == (
        f"Error coercing attribute `{attr}` of `root//errors:t` (rule `kinds`)\n"
        "\n"
        "Caused by:\n"
        f"    0: Error coercing attribute `{attr}` of type `{attr_type}`\n"
        f"    1: {cause}"
    )


def test_missing_mandatory_attribute(ws: Workspace, workspace_dir: Path) -> None:
    label = kinds_package(workspace_dir, "errors", flag=None)
    with pytest.raises(AttributeCoercionError) as error:
        ws.target(label)
    assert str(error.value) == (
        "Missing named-only parameter `flag` for call to `kinds` (target `root//errors:t`)"
    )


def test_unknown_attribute(ws: Workspace, workspace_dir: Path) -> None:
    label = kinds_package(workspace_dir, "errors", colour='"red"', size="2")
    with pytest.raises(AttributeCoercionError) as error:
        ws.target(label)
    assert str(error.value) == (
        "Found `colour` `size` extra named parameter(s) for call to `kinds` "
        "(target `root//errors:t`)"
    )


def test_dep_without_required_provider(ws: Workspace, workspace_dir: Path) -> None:
    label = kinds_package(workspace_dir, "errors", tool='"//app:base"')
    with pytest.raises(AnalysisError) as error:
        ws.analyze(label)
    assert str(error.value) == (
        "Error running analysis for `root//errors:t`\n"
        "\n"
        "Caused by:\n"
        "    0: Attribute requires a dep that provides `ToolInfo`, but it was not found on "
        "`root//app:base`. Found these providers: DefaultInfo, GreetingInfo"
    )


def test_duplicate_and_invalid_target_names(ws: Workspace, workspace_dir: Path) -> None:
    rules = 'load("//rules:broken.bzl", "unbound")\n\n'
    write_package(workspace_dir, "twice", rules + 'unbound(name = "u")\nunbound(name = "u")\n', {})
    with pytest.raises(AttributeCoercionError) as error:
        ws.targets("//twice")
    assert str(error.value) == "Attempted to register target root//twice:u twice"
    write_package(workspace_dir, "badname", rules + 'unbound(name = "a b")\n', {})
    with pytest.raises(AttributeCoercionError) as error:
        ws.targets("//badname")
    assert str(error.value).startswith("Invalid target name `a b`. Target names are non-empty")


def test_load_across_packages_and_cells(ws: Workspace, workspace_dir: Path) -> None:
    # rules/defs.bzl loads `:naming.bzl`, which loads `@shared//lib:strings.bzl`.
    providers = ws.analyze("//app:top-loud").providers
    assert providers["GreetingInfo"]["text"] == "HELLO-TOP!"
    assert ws.analyze("//app:top").providers["GreetingInfo"]["text"] == "hello-top"
    build = (
        'load("@shared//lib:strings.bzl", "SEPARATOR")\n'
        'load("//rules:naming.bzl", loud_name = "loud")\n'
        'load("//rules:broken.bzl", "unbound")\n'
        "unbound(name = loud_name(SEPARATOR + package_name()))\n"
    )
    write_package(workspace_dir, "loads", build, {})
    assert list(ws.targets("//loads")) == ["-LOADS!"]


def test_load_errors(ws: Workspace, workspace_dir: Path) -> None:
    cases = {
        "private": (
            'load("//rules:defs.bzl", "_greeting_impl")\n',
            "Cannot import private symbol `_greeting_impl`",
        ),
        "nosymbol": ('load("//rules:defs.bzl", "nope")\n', "Module has no symbol `nope`"),
    }
    for package, (build, message) in cases.items():
        write_package(workspace_dir, package, build, {})
        with pytest.raises(LoadError) as error:
            ws.targets(f"//{package}")
        assert error.value.message == f"Error evaluating build file: `root//{package}:BUCK`"
        assert message in error.value.causes[0]
    write_package(workspace_dir, "nofile", 'load("//rules:missing.bzl", "x")\n', {})
    with pytest.raises(LoadError) as error:
        ws.targets("//nofile")
    assert str(error.value) == (
        "Error loading `root//rules:missing.bzl`: file `rules/missing.bzl` does not exist"
    )


def test_providers_flow_through_deps(ws: Workspace) -> None:
    analysis = ws.analyze("//app:top")
    assert analysis.providers == {
        "DefaultInfo": {
            "default_outputs": [f"{GEN}/app/__top__/top.txt"],
            "other_outputs": [],
            "sub_targets": {
                "config": {
                    "DefaultInfo": {
                        "default_outputs": [f"{GEN}/app/__top__/top.json"],
                        "other_outputs": [],
                        "sub_targets": {},
                    }
                }
            },
        },
        "GreetingInfo": {"text": "hello-top", "file": f"{GEN}/app/__top__/top.txt"},
    }
    assert list(analysis.analyses) == ["root//tools:greet", "root//app:base", "root//app:top"]
    run = [action for action in analysis.actions if action.owner == "root//app:top"][1]
    assert run.kind == "run"
    assert run.category == "greet"
    assert run.argv == [
        "python3",
        "tools/greet.py",
        "--config",
        f"{GEN}/app/__top__/top.json",
        "--out",
        f"{GEN}/app/__top__/top.txt",
        "--include",
        f"{GEN}/app/__base__/base.txt",
    ]
    assert run.inputs == [
        "tools/greet.py",
        f"{GEN}/app/__top__/top.json",
        f"{GEN}/app/__base__/base.txt",
    ]
    assert run.outputs == [f"{GEN}/app/__top__/top.txt"]
    assert run.env == {"GREETING_TARGET": "top"}


def test_build_executes_actions_in_dependency_order(ws: Workspace, workspace_dir: Path) -> None:
    built = ws.build("//app:top")
    assert [action.description for action in built.executed] == [
        "root//app:base (write_json base.json)",
        "root//app:base (greet)",
        "root//app:top (write_json top.json)",
        "root//app:top (greet)",
    ]
    assert built.default_outputs == [workspace_dir.resolve() / GEN / "app/__top__/top.txt"]
    assert built.default_outputs[0].read_text() == (
        "<hello top>\n<hello base>\ntarget=base\ntarget=top\n"
    )
    config = workspace_dir / GEN / "app/__top__/top.json"
    assert config.read_text() == (
        '{"words":["hello","top"],"loud":false,"template":"app/template.txt"}'
    )
    assert json.loads(config.read_text()) == {
        "words": ["hello", "top"],
        "loud": False,
        "template": "app/template.txt",
    }


def test_run_target_runs_run_info(ws: Workspace) -> None:
    completed = ws.run_target("//tools:greet", ["--help"])
    assert completed.returncode == 0
    assert completed.stdout.startswith("usage: greet.py [-h] --config CONFIG --out OUT")


def test_declared_output_not_produced(ws: Workspace) -> None:
    with pytest.raises(ActionError) as error:
        ws.build("//broken:no-output")
    assert str(error.value) == (
        "Action failed: root//broken:no-output (python no-output)\n"
        "\n"
        "Caused by:\n"
        "    0: Required outputs are missing: Action failed to produce outputs: "
        f"`{GEN}/broken/__no-output__/no-output.out`"
    )


def test_failing_action(ws: Workspace) -> None:
    with pytest.raises(ActionError) as error:
        ws.build("//broken:exit-3")
    assert error.value.message == "Action failed: root//broken:exit-3 (python exit-3)"
    assert error.value.causes[:2] == [
        "Local command returned non-zero exit code 3",
        "Reproduce locally: `python3 -c 'import sys; print('\"'\"'to stdout'\"'\"'); sys.exit(3)' "
        f"{GEN}/broken/__exit-3__/exit-3.out`",
    ]
    assert error.value.causes[2] == "stdout:\nto stdout\n"


def test_unbound_output_and_cycle(ws: Workspace) -> None:
    with pytest.raises(AnalysisError) as error:
        ws.analyze("//broken:unbound")
    assert str(error.value) == (
        "Error running analysis for `root//broken:unbound`\n"
        "\n"
        "Caused by:\n"
        "    0: Artifact must be bound by now. If you are intending to use this artifact as the "
        "output of `run`, are you missing an `.as_output()` call?\n"
        f"  Artifact: {GEN}/broken/__unbound__/never-written.txt (declared by `root//broken:unbound`)"
    )
    with pytest.raises(AnalysisError) as error:
        ws.analyze("//broken:cycle-a")
    assert str(error.value) == (
        "Cycle detected in the target graph: "
        "`root//broken:cycle-a` -> `root//broken:cycle-b` -> `root//broken:cycle-a`"
    )


def test_evaluates_a_small_workspace(workspace_dir: Path) -> None:
    started = time.perf_counter()
    ws = Workspace(workspace_dir)
    packages = ["//tools", "//app", "//kinds", "//broken"]
    declared = {package: sorted(ws.targets(package)) for package in packages}
    analysed = {
        label: ws.analyze(label) for label in ["//app:top", "//app:top-loud", "//kinds:all"]
    }
    built = ws.build("//app:top-loud")
    elapsed = time.perf_counter() - started
    assert declared == {
        "//tools": ["greet"],
        "//app": ["base", "top", "top-loud"],
        "//kinds": ["all"],
        "//broken": ["cycle-a", "cycle-b", "exit-3", "no-output", "unbound"],
    }
    # Each analysis lists the actions of its target and of its deps.
    assert [len(result.actions) for result in analysed.values()] == [4, 4, 0]
    assert built.default_outputs[0].read_text() == (
        "<HELLO TOP>\n<hello base>\ntarget=base\ntarget=top-loud\n"
    )
    print(f"\nloaded 4 packages, analysed 3 targets and built 1 in {elapsed * 1000:.0f} ms")


CHOICE_BZL = """
ChoiceInfo = provider(fields = ["picked", "pair", "files", "greeting"])

def _choice_impl(ctx: AnalysisContext) -> list[Provider]:
    picked = ctx.attrs.pick
    name, package = ctx.label.name, ctx.label.package  # f-strings take plain names only
    if type(picked) != "string":
        picked = picked[GreetingInfo].text
    return [
        DefaultInfo(),
        ChoiceInfo(
            picked = picked,
            pair = ctx.attrs.pair,
            files = [src.short_path for src in ctx.attrs.srcs],
            greeting = f"{name} in {package}",
        ),
    ]

choice = rule(impl = _choice_impl, attrs = {
    "pick": attrs.one_of(attrs.dep(providers = [GreetingInfo]), attrs.string()),
    "pair": attrs.tuple(attrs.string(), attrs.int()),
    "srcs": attrs.list(attrs.source()),
})
"""


def choice_package(root: Path, pick: str) -> None:
    bzl = 'load("//rules:defs.bzl", "GreetingInfo")\n' + CHOICE_BZL
    build = (
        'load(":choice.bzl", "choice")\n\n'
        f'choice(name = "c", pick = {pick}, pair = ("x", 2), srcs = glob(["*.txt"]))\n'
    )
    write_package(root, "choice", build, {"choice.bzl": bzl, "b.txt": "", "a.txt": ""})


def test_one_of_tuple_glob_and_f_strings(ws: Workspace, workspace_dir: Path) -> None:
    choice_package(workspace_dir, '"//app:base"')
    target = ws.target("//choice:c")
    assert target.attrs == {
        "pick": "root//app:base",
        "pair": ["x", 2],
        "srcs": ["choice/a.txt", "choice/b.txt"],
    }
    assert ws.analyze("//choice:c").providers["ChoiceInfo"] == {
        "picked": "hello-base",
        "pair": ["x", 2],
        "files": ["a.txt", "b.txt"],
        "greeting": "c in choice",
    }


def test_one_of_reports_every_alternative(ws: Workspace, workspace_dir: Path) -> None:
    choice_package(workspace_dir, "3")
    with pytest.raises(AttributeCoercionError) as error:
        ws.target("//choice:c")
    assert str(error.value) == (
        "Error coercing attribute `pick` of `root//choice:c` (rule `choice`)\n"
        "\n"
        "Caused by:\n"
        "    0: Error coercing attribute `pick` of type "
        "`attrs.one_of(attrs.dep(providers=[GreetingInfo]), attrs.string())`\n"
        "    1: one_of fails, the errors against each alternative in turn were:\n"
        "Expected `str`, but got `int (repr: 3)`\n"
        "Expected `str`, but got `int (repr: 3)`"
    )


def test_sub_targets(ws: Workspace, workspace_dir: Path) -> None:
    config = f"{GEN}/app/__top__/top.json"
    analysis = ws.analyze("//app:top[config]")
    assert analysis.label == "root//app:top[config]"
    assert analysis.providers == {
        "DefaultInfo": {"default_outputs": [config], "other_outputs": [], "sub_targets": {}}
    }
    built = ws.build("//app:top[config]")
    assert [action.description for action in built.executed] == [
        "root//app:top (write_json top.json)"
    ]
    assert built.default_outputs == [workspace_dir.resolve() / config]
    build = (
        'load("//rules:broken.bzl", "python_action")\n'
        'python_action(name = "uses", code = "pass", deps = ["//app:top[config]"])\n'
        'python_action(name = "bad", code = "pass", deps = ["//app:top[nope]"])\n'
    )
    write_package(workspace_dir, "subs", build, {})
    assert ws.target("//subs:uses").attrs["deps"] == ["root//app:top[config]"]
    assert ws.target("//subs:uses").deps == ["root//app:top"]
    assert "DefaultInfo" in ws.analyze("//subs:uses").providers
    with pytest.raises(AnalysisError) as error:
        ws.analyze("//subs:bad")
    assert str(error.value) == (
        "Error running analysis for `root//subs:bad`\n"
        "\n"
        "Caused by:\n"
        "    0: The sub target `nope` of `root//app:top` is not available. "
        "Available sub targets are: `config`"
    )


# A toolchain rule, and rules reaching it as a toolchain_dep, as an exec_dep, and a
# non-toolchain target as a toolchain_dep.
TOOLCHAIN_BZL = """
ToolchainInfo = provider(fields = ["tool"])

def _toolchain_impl(ctx: AnalysisContext) -> list[Provider]:
    return [DefaultInfo(), ToolchainInfo(tool = ctx.attrs.tool)]

my_toolchain = rule(impl = _toolchain_impl, attrs = {"tool": attrs.string()}, is_toolchain_rule = True)

def _plain_impl(ctx: AnalysisContext) -> list[Provider]:
    return [DefaultInfo()]

plain = rule(impl = _plain_impl, attrs = {})

def _user_impl(ctx: AnalysisContext) -> list[Provider]:
    out = ctx.actions.write(ctx.label.name + ".txt", ctx.attrs.toolchain[ToolchainInfo].tool)
    return [DefaultInfo(default_output = out)]

def _user(kind):
    return rule(impl = _user_impl, attrs = {"toolchain": kind(providers = [ToolchainInfo])})

uses_toolchain_dep = _user(attrs.toolchain_dep)
uses_exec_dep = _user(attrs.exec_dep)
"""

TOOLCHAIN_BUCK = """load(":tc.bzl", "my_toolchain", "plain", "uses_exec_dep", "uses_toolchain_dep")

my_toolchain(name = "tc", tool = "cc")
plain(name = "not_tc")
uses_toolchain_dep(name = "good", toolchain = ":tc")
uses_exec_dep(name = "exec", toolchain = ":tc")
uses_toolchain_dep(name = "not_toolchain", toolchain = ":not_tc")
"""


def test_toolchain_rules_are_reached_through_toolchain_dep_only(
    ws: Workspace, workspace_dir: Path
) -> None:
    write_package(workspace_dir, "tc", TOOLCHAIN_BUCK, {"tc.bzl": TOOLCHAIN_BZL})
    assert ws.target("//tc:tc").is_toolchain_rule is True
    assert ws.target("//tc:good").toolchain_deps == ["root//tc:tc"]
    good = ws.analyze("//tc:good")
    assert good.providers["DefaultInfo"]["default_outputs"] == [f"{GEN}/tc/__good__/good.txt"]
    expected = {
        "//tc:exec": (
            "Error configuring dependencies of `root//tc:exec`",
            "Target `root//tc:tc` was used not as a toolchain_dep, but is a toolchain rule",
        ),
        "//tc:not_toolchain": (
            "Error configuring dependencies of `root//tc:not_toolchain`",
            "Target `root//tc:not_tc` was used as a toolchain_dep, but is not a toolchain rule",
        ),
        # Built on its own, a toolchain target is no toolchain_dep either.
        "//tc:tc": (
            "Error configuring `root//tc:tc`",
            "Target `root//tc:tc` was used not as a toolchain_dep, but is a toolchain rule",
        ),
    }
    for label, (message, cause) in expected.items():
        with pytest.raises(AnalysisError) as error:
            ws.analyze(label)
        assert (error.value.message, error.value.causes) == (message, [cause])


# One rule per action-naming case: `categories` lists (category, identifier) pairs to run.
CATEGORY_BZL = """
def _impl(ctx: AnalysisContext) -> list[Provider]:
    outs = []
    for index, (category, identifier) in enumerate(ctx.attrs.actions):
        out = ctx.actions.declare_output("out{}".format(index))
        ctx.actions.run(
            cmd_args("touch", out.as_output()),
            category = category,
            identifier = identifier or None,
        )
        outs.append(out)
    return [DefaultInfo(default_outputs = outs)]

actions = rule(impl = _impl, attrs = {
    "actions": attrs.list(attrs.tuple(attrs.string(), attrs.string())),
})
"""


def test_action_categories_and_identifiers_follow_buck2(ws: Workspace, workspace_dir: Path) -> None:
    cases = {
        # Buck2 accepts these...
        "ok": '[("cxx_compile", "a"), ("cxx_compile", "b"), ("link2", ""), ("z_a1_b", "")]',
        # ...an identifier after a category's single unnamed action too (registry.rs order).
        "unnamed_first": '[("c", ""), ("c", "x")]',
        # ...and rejects these.
        "upper": '[("Compile", "")]',
        "digit": '[("cxx_2compile", "")]',
        "trailing": '[("cxx_", "")]',
        "named_then_unnamed": '[("c", "x"), ("c", "")]',
        "two_unnamed": '[("c", ""), ("c", "")]',
        "same_identifier": '[("c", "x"), ("c", "x")]',
    }
    build = 'load(":cat.bzl", "actions")\n' + "".join(
        f'actions(name = "{name}", actions = {value})\n' for name, value in cases.items()
    )
    write_package(workspace_dir, "cat", build, {"cat.bzl": CATEGORY_BZL})
    assert [a.description for a in ws.analyze("//cat:ok").actions] == [
        "root//cat:ok (cxx_compile a)",
        "root//cat:ok (cxx_compile b)",
        "root//cat:ok (link2)",
        "root//cat:ok (z_a1_b)",
    ]
    assert len(ws.analyze("//cat:unnamed_first").actions) == 2

    def invalid(category: str) -> str:
        return (
            f"Invalid category `{category}`. Must be a snake_cased identifier consisting of "
            "lowercase alphanumeric characters, e.g. `cxx_compile`. Each section of the "
            "snake_cased identifier must begin with a lowercase letter (not a number)."
        )

    singleton = (
        "Analysis produced multiple actions with category `c` and at least one of them had no "
        "identifier. Add an identifier to these actions to disambiguate them"
    )
    expected = {
        "upper": invalid("Compile"),
        "digit": invalid("cxx_2compile"),
        "trailing": invalid("cxx_"),
        "named_then_unnamed": singleton,
        "two_unnamed": singleton,
        "same_identifier": (
            "Action category `c` contains duplicate identifier `x`; category-identifier pairs "
            "must be unique within a rule"
        ),
    }
    for name, cause in expected.items():
        with pytest.raises(AnalysisError) as error:
            ws.analyze(f"//cat:{name}")
        assert (error.value.message, error.value.causes) == (
            f"Error running analysis for `root//cat:{name}`",
            [cause],
        )


def test_attrs_options_are_named_only_and_cmd_args_has_no_hidden_method(
    ws: Workspace, workspace_dir: Path
) -> None:
    # Buck2 takes `default`/`doc` by name only: `attrs.string("x")` is no default.
    bzl = 'def _impl(ctx):\n    return [DefaultInfo()]\n\nr = rule(impl = _impl, attrs = {"a": attrs.string("x")})\n'
    write_package(workspace_dir, "named", "", {"defs.bzl": bzl})
    with pytest.raises(LoadError) as error:
        ws.load("//named:defs.bzl")
    assert error.value.message == "Error evaluating module: `root//named:defs.bzl`"
    assert _starlark_error_line(error.value.causes[0]) == (
        "error: Found 1 extra positional argument(s) for call to model.bzl._attr_string"
    )
    # `hidden` is a cmd_args argument; the `.hidden()` method was removed from Buck2.
    bzl = (
        "def _impl(ctx):\n"
        '    out = ctx.actions.declare_output("o")\n'
        '    ctx.actions.run(cmd_args("touch", out.as_output()).hidden("x"), category = "t")\n'
        "    return [DefaultInfo(default_output = out)]\n\n"
        "r = rule(impl = _impl, attrs = {})\n"
    )
    write_package(
        workspace_dir, "hidden", 'load(":defs.bzl", "r")\nr(name = "t")\n', {"defs.bzl": bzl}
    )
    with pytest.raises(AnalysisError) as error:
        ws.analyze("//hidden:t")
    assert error.value.message == "Error running analysis for `root//hidden:t`"
    assert _starlark_error_line(error.value.causes[0]) == (
        "error: Object of type `struct` has no attribute `hidden`, did you mean `_hidden`?"
    )


def _starlark_error_line(traceback: str) -> str:
    """The `error: ...` line of a starlark-rust error report."""
    return next(line for line in traceback.splitlines() if line.startswith("error: "))
