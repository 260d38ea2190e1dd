from __future__ import annotations

import json

from tests.conftest import run_cli


def test_resolve_prints_commits_and_graph(bsr_env):
    env = {"SSL_CERT_FILE": str(bsr_env.ca_cert)}
    result = run_cli("resolve", f"{bsr_env.host}/acme/pets:v1", "--json", env=env)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["name"] == f"{bsr_env.host}/acme/pets" and row["digest"].startswith("b5:")
    graph = run_cli("resolve", f"{bsr_env.host}/acme/orders", "--graph", env=env)
    assert graph.returncode == 0, graph.stderr
    assert len(graph.stdout.splitlines()) == 5  # orders, pets, money, common, googleapis


def test_resolve_unknown_label_exits_1_with_a_clear_message(bsr_env):
    env = {"SSL_CERT_FILE": str(bsr_env.ca_cert)}
    result = run_cli("resolve", f"{bsr_env.host}/acme/pets:v42", env=env)
    assert result.returncode == 1
    assert "label or commit 'v42' not found for module acme/pets" in result.stderr
    assert "Traceback" not in result.stderr
