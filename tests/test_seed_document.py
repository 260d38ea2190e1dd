"""Every Python and shell block of the design document (docs/design/BSR_TEAM_CACHING.md), run
in document order against real servers, with its hosts swapped for the test ones:
``buf.build`` -> dev-bsr, ``oras.birb.homes`` -> the team registry (Distribution, or the
embedded on-disk registry), ``/tmp/...`` cache directories -> temporary ones.

Blocks that are Buck2 Starlark (``load(...)``) are BUCK file contents: they evaluate unchanged
in the Buck2 harness (tests/buck2), in the example workspace that holds them (examples/buck2);
the document's sample outputs (dashboard, recommendations) are compared with what ``monitor``
and ``recommend`` print.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bsr_team_cache.oci import open_registry
from bsr_team_cache.oci.devregistry import DistributionServer
from bsr_team_cache.team.bundles import read_bundle
from tests.conftest import DevBSRProcess, read_team_settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "design" / "BSR_TEAM_CACHING.md"


@dataclass
class Block:
    lang: str
    text: str
    line: int

    @property
    def kind(self) -> str:
        if self.lang == "python":
            if "load(" in self.text or re.search(
                r"^\s*(setup_team_cache|proto_library)\(", self.text, re.M
            ):
                return "starlark"
            if "import " in self.text or "team_cache." in self.text:
                return "python-api"
            return "python-data"
        if self.lang == "bash":
            commands = [
                line
                for line in self.text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
            if all(c.startswith(("python3 ", "    ")) for c in commands):
                return "shell"
            return "sample-output"
        return self.lang


def document_blocks() -> list[Block]:
    blocks, lines = [], DOCUMENT.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[i])
        if match and match[1]:
            start = i
            body = []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(match[1], "\n".join(body) + "\n", start + 1))
        i += 1
    return blocks


def test_the_document_has_the_blocks_this_test_expects() -> None:
    kinds = [b.kind for b in document_blocks()]
    assert kinds.count("python-api") == 3
    assert kinds.count("python-data") == 4
    assert kinds.count("shell") == 3
    assert kinds.count("sample-output") == 2
    assert kinds.count("starlark") == 4


def test_the_starlark_blocks_evaluate_in_the_buck2_harness(tmp_path: Path) -> None:
    from tests.buck2.harness import Workspace
    from tests.buck2.test_rules import DOCUMENT_PACKAGES, EXAMPLE, example_workspace

    workspace = Workspace(example_workspace(tmp_path / "buck2"))
    blocks = [b for b in document_blocks() if b.kind == "starlark"]
    for block, (package, expected) in zip(blocks, DOCUMENT_PACKAGES.items(), strict=True):
        assert block.text in (EXAMPLE / package / "BUCK").read_text(), f"line {block.line}"
        declared = workspace.targets("//" + package)
        assert {name: t.rule_name for name, t in declared.items()} == expected, package


@pytest.fixture(params=["distribution", "oci-layout"])
def doc_registry(request, distribution: DistributionServer, tmp_path: Path) -> tuple[str, str]:
    """(what replaces oras.birb.homes in the document, the registry URL for the CLI)."""
    if request.param == "distribution":
        host = distribution.url.removeprefix("http://") + f"/doc{uuid.uuid4().hex[:8]}"
        return host, f"http://{host}"
    url = f"oci-layout:{tmp_path / 'team-registry'}"
    return url, url


def _swap(text: str, bsr: DevBSRProcess, registry: str, tmp: Path) -> str:
    return (
        text.replace("oras.birb.homes", registry)
        .replace("buf.build", bsr.host)
        .replace("/tmp/bsr-cache", str(tmp / "bsr-cache"))
        .replace("/tmp/cache", str(tmp / "cache"))
    )


def test_every_block_of_the_design_document(
    bsr_env: DevBSRProcess, tmp_path: Path, doc_registry, monkeypatch
) -> None:
    registry_for_doc, registry_url = doc_registry
    work = tmp_path / "project"
    work.mkdir()
    # The BSR client block reads ./buf.yaml: a project using the document's modules.
    (work / "buf.yaml").write_text(
        "version: v2\ndeps:\n"
        f"  - {bsr_env.host}/googleapis/googleapis:v1.0.0\n"
        f"  - {bsr_env.host}/grpc/grpc:v1.5.0\n"
    )
    env = {
        **os.environ,
        "SSL_CERT_FILE": str(bsr_env.ca_cert),
        "BSR_TEAM_CACHE_REGISTRY": registry_url,
        "BSR_TEAM_CACHE_DIR": str(tmp_path / "cache"),  # the API blocks' OrasClient cache_dir
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY", registry_url)
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    namespace: dict = {"Path": Path}  # the document's snippets use pathlib.Path unimported
    outputs: dict[str, str] = {}
    for block in document_blocks():
        text = _swap(block.text, bsr_env, registry_for_doc, tmp_path)
        where = f"{DOCUMENT.name}:{block.line}"
        if block.kind == "python-api":
            exec(compile(text, where, "exec"), namespace)
        elif block.kind == "python-data":
            tree = ast.parse(text)
            for node in tree.body:
                value = node.value if isinstance(node, ast.Assign | ast.Expr) else None
                assert value is not None, where
                ast.literal_eval(value)  # plain data: the formats usage analysis reports
        elif block.kind == "shell":
            done = subprocess.run(
                ["bash", "-e", "-c", text],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"{where}: {done.stderr}"
            outputs[str(block.line)] = done.stdout
        elif block.kind == "sample-output":
            outputs[f"sample:{block.line}"] = block.text
    _check_results(namespace, outputs, registry_url, bsr_env, work)


def _check_results(ns: dict, outputs: dict[str, str], registry_url: str, bsr, work: Path):
    # BSR client block: the closure resolved with b5 digests; googleapis downloaded.
    deps = ns["dependencies"]
    assert {d.name for d in deps} >= {"googleapis", "grpc"}
    assert all(d.digest.startswith("b5:") and len(d.commit) == 32 for d in deps)
    assert (ns["output_path"] / "google" / "api" / "annotations.proto").is_file()
    # Team cache block: members, the bundle, the metrics object.
    registry = open_registry(registry_url)
    config = read_team_settings(registry, "platform-team")  # the URL carries any namespace
    assert config is not None
    assert {"alice", "bob", "charlie", "david"} <= set(config.members)
    assert {b.name for b in config.bundles} >= {"platform-apis", "common-apis", "test-bundle"}
    assert ns["bundle_ref"].endswith("teams/platform-team/bundles/platform-apis:v1")
    # The document's API blocks download and bundle; none of them is a fetch (a build's
    # usage), so the metrics count no fetch yet, and the store holds what they brought.
    metrics = ns["metrics"]
    assert (metrics.fetches, metrics.modules_fetched, metrics.cache_hit_rate) == (0, 0, 0.0)
    assert metrics.local_store_mb == ns["team_cache"].cache.store.stats().bytes / 1e6
    platform = read_bundle(registry, "teams/platform-team/bundles/platform-apis")
    assert platform is not None
    names = {m.artifact_module.split("/", 1)[1] for m in platform[0].members}
    assert names == {"googleapis/googleapis", "grpc/grpc"}
    # share_bundle block: the seed's layout, shared/organization/bundles/<name>.
    shared = read_bundle(registry, "shared/organization/bundles/common-apis")
    assert shared is not None and shared[0].team == "platform-team"
    assert {"frontend-team", "mobile-team"} == set(
        shared[1]["dev.bsr-team-cache.readers"].split(",")
    )
    # Shell blocks: setup, bundle, monitor, recommend, sync printed what they did.
    text = "\n".join(v for k, v in outputs.items() if not k.startswith("sample:"))
    assert "Team platform-team set up" in text
    assert "Created bundle" in text and "bundles/common-apis:v1" in text
    assert "Cache Performance for team platform-team:" in text
    assert "Cache Recommendations for team platform-team:" in text
    assert "Synced team platform-team" in text
    # The document's sample dashboard: the lines monitor prints today have the same labels.
    sample = next(v for k, v in outputs.items() if k.startswith("sample:") and "Hit Rate" in v)
    for label in (
        "Hit Rate:",
        "Bandwidth Saved:",
        "Shared Cache Efficiency:",
        "Bundle Usage Rate:",
    ):
        assert label in sample and label in text
    json.dumps(ns["metrics"].to_json())  # serializable for dashboards
