"""The Buck2 rules (rules/*.bzl) and the example workspace (examples/buck2), through the harness:
the design document's BUCK blocks evaluate unchanged, attribute errors name the rule, the target
and the attribute, and building runs the recorded actions for real: the CLI against dev-bsr and
a team registry, protoc on the exported tree."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from bsr_team_cache.oci import open_registry
from bsr_team_cache.team.bundles import read_bundle
from tests.buck2.errors import Buck2Error
from tests.buck2.harness import Workspace
from tests.conftest import DevBSRProcess, read_team_settings
from tests.test_seed_document import document_blocks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "buck2"
RULES = ("bsr_team_cache.bzl", "proto.bzl")

# Where the example workspace keeps each of the design document's Starlark blocks, in
# document order, and the targets each declares (name -> rule).
DOCUMENT_PACKAGES = {
    "team": {"platform_team_cache": "setup_team_cache"},
    "services/backend": {"team_cache": "setup_team_cache", "user_service_proto": "proto_library"},
    "services/platform": {
        "platform_cache": "setup_team_cache",
        "user_service": "proto_library",
        "payment_service": "proto_library",
    },
    "org": {
        "backend_cache": "setup_team_cache",
        "frontend_cache": "setup_team_cache",
        "org_common_bundle": "dependency_bundle",
    },
}
EXAMPLE_PACKAGES = {
    **DOCUMENT_PACKAGES,
    "toolchains": {"bsr_team_cache": "bsr_team_cache_toolchain", "protoc": "system_tool"},
    "protos/common": {"common_proto": "proto_library"},
    "protos/shop": {"shop_team_cache": "setup_team_cache", "shop_proto": "proto_library"},
}

# What //protos/shop:shop_proto's descriptor set holds: its source, the proto_library it
# depends on, acme/orders from the BSR and everything they import (--include_imports).
SHOP_DESCRIPTOR_FILES = {
    "acme/shop/v1/cart.proto",
    "acme/shop/common/v1/customer.proto",
    "acme/orders/v1/order.proto",
    "acme/pets/v1/pet.proto",
    "acme/common/v1/page.proto",
    "acme/money/v1/money.proto",
    "google/type/money.proto",
    "google/rpc/status.proto",
    "google/protobuf/any.proto",
    "google/protobuf/timestamp.proto",
    "google/protobuf/descriptor.proto",
    "google/api/field_behavior.proto",
}
SHOP_BSR_MODULES = 5  # acme/orders, its deps acme/pets, acme/common, acme/money, googleapis


def example_workspace(dest: Path, **config: str) -> Path:
    """A copy of examples/buck2 with the repository's rules in //rules and ``config`` set in
    .buckconfig's [bsr_team_cache] section (what `buck2 -c bsr_team_cache.KEY=VALUE` does)."""
    shutil.copytree(EXAMPLE, dest)
    for name in RULES:
        shutil.copyfile(ROOT / "rules" / name, dest / "rules" / name)
    configure(dest, **config)
    return dest


def configure(workspace: Path, **config: str) -> None:
    buckconfig = workspace / ".buckconfig"
    text = buckconfig.read_text()
    for key, value in config.items():
        text, count = re.subn(rf"(?m)^(  {key} =).*$", rf"\1 {value}", text)
        assert count == 1, key
    buckconfig.write_text(text)


@pytest.fixture
def doc_workspace(tmp_path: Path) -> Workspace:
    return Workspace(example_workspace(tmp_path / "ws"))


@pytest.fixture
def team_registry(tmp_path: Path) -> str:
    return f"oci-layout:{tmp_path / 'team-registry'}"


@pytest.fixture
def built_workspace(bsr_env: DevBSRProcess, team_registry: str, tmp_path: Path) -> Path:
    """The example workspace pointed at dev-bsr, a team registry and a fresh local store."""
    return example_workspace(
        tmp_path / "ws",
        cli=str(Path(sys.executable).parent / "bsr-team-cache"),
        bsr_host=bsr_env.host,
        registry=team_registry,
        store_dir=str(tmp_path / "store-1"),
    )


# -- evaluation -------------------------------------------------------------------------------


def test_the_example_workspace_vendors_the_repository_rules() -> None:
    for name in RULES:
        assert (EXAMPLE / "rules" / name).read_bytes() == (ROOT / "rules" / name).read_bytes()


def test_the_design_document_blocks_evaluate_unchanged(doc_workspace: Workspace) -> None:
    blocks = [b.text for b in document_blocks() if b.kind == "starlark"]
    assert len(blocks) == len(DOCUMENT_PACKAGES) == 4
    for block, (package, expected) in zip(blocks, DOCUMENT_PACKAGES.items(), strict=True):
        assert block in (EXAMPLE / package / "BUCK").read_text(), package
        targets = doc_workspace.targets("//" + package)
        assert {name: t.rule_name for name, t in targets.items()} == expected
    org = doc_workspace.target("//org:org_common_bundle").attrs
    assert (org["bundle_name"], org["team"], org["dependencies"]) == (
        "organization-common",
        "platform-team",
        ["buf.build/googleapis/googleapis:v1.0.0"],
    )
    platform = doc_workspace.target("//services/platform:platform_cache").attrs
    assert (platform["cache_strategy"], platform["monitor_performance"]) == ("aggressive", True)
    assert platform["members"][0] == "alice@company.com"
    payment = doc_workspace.target("//services/platform:payment_service").attrs
    assert payment["deps"] == [
        "buf.build/googleapis/googleapis:v1.0.0",
        "buf.build/grpc/grpc:v1.5.0",
    ]
    assert payment["team"] == "platform-team"


def test_the_example_workspace_evaluates(doc_workspace: Workspace) -> None:
    started = time.perf_counter()
    declared = {
        package: {name: t.rule_name for name, t in doc_workspace.targets("//" + package).items()}
        for package in EXAMPLE_PACKAGES
    }
    seconds = time.perf_counter() - started
    print(f"\nexample workspace: {len(declared)} BUCK files evaluated in {seconds * 1000:.0f} ms")
    assert declared == EXAMPLE_PACKAGES


def test_analysis_records_the_fetch_and_protoc_actions(doc_workspace: Workspace) -> None:
    analysis = doc_workspace.analyze("//protos/shop:shop_proto")
    runs = [a for a in analysis.actions if a.kind == "run"]
    assert sorted((a.owner.split("//", 1)[1], a.category) for a in runs) == [
        ("protos/common:common_proto", "protoc"),
        ("protos/shop:shop_proto", "bsr_fetch"),
        ("protos/shop:shop_proto", "protoc"),
        ("protos/shop:shop_team_cache", "bsr_team_setup"),
    ]
    # The shop's protoc runs last: it needs the fetched tree and common_proto's sources.
    assert (runs[-1].owner.split("//", 1)[1], runs[-1].category) == (
        "protos/shop:shop_proto",
        "protoc",
    )
    fetch = next(a for a in runs if a.category == "bsr_fetch").argv
    # The fetch command: the CLI from the toolchain, the team of the team_cache target.
    assert fetch[fetch.index("fetch") - 1 : fetch.index("fetch") + 3] == [
        "bsr-team-cache",
        "fetch",
        "--team",
        "backend-team",
    ]
    assert fetch[-4:] == [
        "--export",
        "buck-out/v2/gen/root/protos/shop/__shop_proto__/bsr",
        "--no-buf-cache",
        "--json",
    ]
    assert "--update-lock" not in fetch  # buf.lock pins the deps
    assert "protos/shop/buf.lock" in fetch
    # Hermetic: what the fetch reads is declared (the buf.yaml it writes, the pin file).
    fetch_action = next(a for a in runs if a.category == "bsr_fetch")
    assert fetch_action.inputs == [
        "buck-out/v2/gen/root/protos/shop/__shop_proto__/shop_proto.buf.yaml",
        "protos/shop/buf.lock",
    ]
    # The CLI's actions need the network and the machine's store: never remote.
    assert {a.category: a.local_only for a in runs} == {
        "protoc": False,
        "bsr_fetch": True,
        "bsr_team_setup": True,
    }
    # The toolchain is a toolchain rule, reached the one way Buck2 allows.
    assert doc_workspace.target("//toolchains:bsr_team_cache").is_toolchain_rule
    assert doc_workspace.target("//protos/shop:shop_proto").toolchain_deps == [
        "root//toolchains:bsr_team_cache"
    ]
    buf_yaml = next(a for a in analysis.actions if a.kind == "write_json")
    assert json.loads(buf_yaml.content) == {"version": "v2", "deps": ["buf.build/acme/orders"]}


# -- attribute errors -------------------------------------------------------------------------


def _evaluate_bad_package(workspace: Workspace, buck: str) -> str:
    package = workspace.cells[workspace.root_cell] / "bad"
    package.mkdir(exist_ok=True)
    (package / "BUCK").write_text(
        'load("//rules:bsr_team_cache.bzl", "dependency_bundle", "setup_team_cache")\n\n' + buck
    )
    with pytest.raises(Buck2Error) as raised:
        workspace.targets("//bad")
    return str(raised.value)


# -- builds -----------------------------------------------------------------------------------


def _fetch_report(workspace: Workspace) -> dict:
    analysis = workspace.analyze("//protos/shop:shop_proto")
    fetch = next(a for a in analysis.actions if a.category == "bsr_fetch")
    report = next(o for o in fetch.outputs if o.endswith(".fetch.json"))
    return json.loads((workspace.buck_out.parent / report).read_text())


def _downloads(bsr: DevBSRProcess) -> int:
    return sum(1 for r in bsr.requests() if "Download" in r["service"])


def test_a_string_where_a_list_is_required(doc_workspace: Workspace) -> None:
    message = _evaluate_bad_package(
        doc_workspace,
        'setup_team_cache(name = "cache", team = "t", members = "alice")\n',
    )
    assert message == (
        "Error coercing attribute `members` of `root//bad:cache` (rule `setup_team_cache`)\n\n"
        "Caused by:\n"
        "    0: Error coercing attribute `members` of type"
        " `attrs.list(attrs.string(), default=[])`\n"
        '    1: Expected `list`, but got `string (repr: "alice")`'
    )


def test_a_missing_team(doc_workspace: Workspace) -> None:
    message = _evaluate_bad_package(
        doc_workspace,
        'dependency_bundle(name = "b", bundle_name = "b", dependencies = ["buf.build/a/b"])\n',
    )
    assert message == (
        "Missing named-only parameter `team` for call to `dependency_bundle` (target `root//bad:b`)"
    )


def test_an_unknown_cache_strategy(doc_workspace: Workspace) -> None:
    message = _evaluate_bad_package(
        doc_workspace,
        'setup_team_cache(name = "cache", team = "t", cache_strategy = "reckless")\n',
    )
    assert message == (
        "Error coercing attribute `cache_strategy` of `root//bad:cache`"
        " (rule `setup_team_cache`)\n\n"
        "Caused by:\n"
        "    0: Error coercing attribute `cache_strategy` of type"
        ' `attrs.enum(["aggressive", "balanced", "conservative"], default="balanced")`\n'
        "    1: enum called with `reckless`, only allowed: `aggressive`, `balanced`, `conservative`"
    )


def test_a_malformed_bsr_module_fails_at_analysis(doc_workspace: Workspace) -> None:
    package = doc_workspace.cells[doc_workspace.root_cell] / "bad"
    package.mkdir()
    (package / "x.proto").write_text('syntax = "proto3";\n')
    (package / "BUCK").write_text(
        'load("//rules:proto.bzl", "proto_library")\n'
        'proto_library(name = "x", srcs = ["x.proto"], deps = ["buf.build/acme"])\n'
    )
    with pytest.raises(Buck2Error) as raised:
        doc_workspace.analyze("//bad:x")
    assert (
        "proto_library //bad:x: attribute `deps`: `buf.build/acme` is not a BSR module"
        " (expected registry/owner/module[:label], e.g. buf.build/acme/pets:v1)"
    ) in str(raised.value)


# -- builds -----------------------------------------------------------------------------------


def test_proto_library_builds_through_the_team_cache(
    built_workspace: Path, bsr_env: DevBSRProcess, team_registry: str, tmp_path: Path
) -> None:
    workspace = Workspace(built_workspace)
    label = "//protos/shop:shop_proto"

    built = workspace.build(label)  # cold: the BSR, published to the team registry
    assert _fetch_report(workspace)["hits"] == {"local": 0, "team": 0, "bsr": SHOP_BSR_MODULES}
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(
        built.outputs[_output(built, ".binpb")].read_bytes()
    )
    files = {f.name: f for f in descriptor_set.file}
    assert set(files) == SHOP_DESCRIPTOR_FILES
    assert [m.name for m in files["acme/shop/v1/cart.proto"].message_type] == [
        "Cart",
        "CheckoutRequest",
    ]
    assert [m.name for m in files["acme/orders/v1/order.proto"].message_type] == ["Order"]
    assert [m.name for m in files["acme/shop/common/v1/customer.proto"].message_type] == [
        "Customer"
    ]
    python = built.outputs[_output(built, "/python")]
    assert (python / "acme" / "shop" / "v1" / "cart_pb2.py").is_file()

    # A teammate's machine: a fresh local store gets every module from the team registry.
    downloads = _downloads(bsr_env)
    configure(built_workspace, store_dir=str(tmp_path / "store-2"))
    workspace = Workspace(built_workspace)
    workspace.clean()
    workspace.build(label)
    assert _fetch_report(workspace)["hits"] == {"local": 0, "team": SHOP_BSR_MODULES, "bsr": 0}
    assert _downloads(bsr_env) == downloads  # not one download from the BSR

    # Again on that machine: the warm local store.
    workspace.clean()
    started = time.perf_counter()
    warm = workspace.build(label)
    seconds = time.perf_counter() - started
    report = _fetch_report(workspace)
    assert report["hits"] == {"local": SHOP_BSR_MODULES, "team": 0, "bsr": 0}
    fetch_action = next(t for d, t in warm.seconds.items() if "bsr_fetch" in d)
    print(
        f"\nproto_library from a warm local store: the fetch action {fetch_action * 1000:.0f} ms"
        f" as a process (the CLI's own timing {report['seconds'] * 1000:.0f} ms), the whole"
        f" build {seconds * 1000:.0f} ms"
    )


def test_dependency_bundle_creates_the_bundle(built_workspace: Path, team_registry: str) -> None:
    built = Workspace(built_workspace).build("//org:org_common_bundle")
    log = built.outputs[_output(built, "org_common_bundle.bundle.txt")]
    assert log.read_text() == "bundle teams/platform-team/bundles/organization-common:v1\n"
    found = read_bundle(
        open_registry(team_registry), "teams/platform-team/bundles/organization-common"
    )
    assert found is not None
    bundle = found[0]
    assert (bundle.team, bundle.description) == (
        "platform-team",
        "Dependencies shared across all teams",
    )
    assert [m.artifact_module.split("/", 1)[1] for m in bundle.members] == ["googleapis/googleapis"]


def test_setup_team_cache_and_its_monitor(built_workspace: Path, team_registry: str) -> None:
    workspace = Workspace(built_workspace)
    built = workspace.build("//protos/shop:shop_team_cache")
    config = json.loads(built.outputs[_output(built, "shop_team_cache.team.json")].read_text())
    assert (config["team"], config["cache_strategy"]) == ("backend-team", "balanced")
    settings = read_team_settings(open_registry(team_registry), "backend-team")
    assert settings is not None and {"alice", "bob"} <= set(settings.members)
    monitor = workspace.run_target("//protos/shop:shop_team_cache[monitor]")
    assert monitor.returncode == 0, monitor.stderr
    assert monitor.stdout.startswith("Cache Performance for team backend-team:\n")


def _output(built, suffix: str) -> str:
    """The one built artifact whose project-relative path ends with ``suffix``."""
    (found,) = [path for path in built.outputs if path.endswith(suffix)]
    return found
