"""Resolving a project: buf.lock first; a lock read before is not parsed again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bsr_team_cache.domain.buflock import BufLock, LockedDep, format_buf_lock, read_buf_lock
from bsr_team_cache.domain.digest import parse_digest
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.store import LocalStore

# Resolves the project in a fresh interpreter and says whether YAML had to be loaded.
_RESOLVE = """
import json, sys
from pathlib import Path
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.resolve import TeamContext, resolve_project
with LocalStore(sys.argv[2]) as store:
    resolution = resolve_project(
        Path(sys.argv[1]), bsr=None, team=TeamContext(None, "t", ""), store=store,
        update_lock=False,
    )
deps = [[str(d.module), d.commit, str(d.digest)] for d in resolution.lock.deps]
print(json.dumps({"yaml": "yaml" in sys.modules, "deps": deps, "extra": resolution.lock.extra}))
"""


def _resolve(project: Path, store: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _RESOLVE, str(project), str(store)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def _lock(count: int) -> BufLock:
    return BufLock(
        "v2",
        tuple(
            LockedDep(
                parse_module_name(f"buf.build/acme/m{i}"),
                f"{i:032x}",
                parse_digest(f"b5:{i:0128x}"),
            )
            for i in range(count)
        ),
        "plugins:\n  - name: buf.build/protocolbuffers/go\n",
    )


def test_a_buf_lock_read_before_is_not_parsed_again(tmp_path: Path) -> None:
    project, store = tmp_path / "p", tmp_path / "store"
    project.mkdir()
    (project / "buf.yaml").write_text("version: v2\n")
    (project / "buf.lock").write_text(format_buf_lock(_lock(3)))
    expected = [[str(d.module), d.commit, str(d.digest)] for d in _lock(3).deps]

    first = _resolve(project, store)
    assert first == {"yaml": True, "deps": expected, "extra": _lock(3).extra}
    again = _resolve(project, store)
    assert again == {"yaml": False, "deps": expected, "extra": _lock(3).extra}

    # Other bytes are parsed again, even when they name the same deps.
    (project / "buf.lock").write_text(format_buf_lock(_lock(3)) + "# edited\n")
    assert _resolve(project, store)["yaml"] is True
    (project / "buf.lock").write_text(format_buf_lock(_lock(2)))
    assert _resolve(project, store)["deps"] == expected[:2]
    assert read_buf_lock(project / "buf.lock") == _lock(2)

    # A memo that is not a parsed lock is ignored, and replaced.
    with LocalStore(store) as opened:
        (key,) = [k for (k,) in opened._db.execute("SELECT key FROM kv")]
        memo = json.loads(opened.kv_get(key))
        memo["lock"]["deps"][0][1] = "../../etc"
        opened.kv_put(key, json.dumps(memo))
    parsed = {"yaml": True, "deps": expected[:2], "extra": _lock(2).extra}
    assert _resolve(project, store) == parsed
    assert _resolve(project, store)["yaml"] is False
