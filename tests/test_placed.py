"""A fetch finding every module in place (placed.py): it prints and records exactly what the
full fetch does in that case, and declines, having written nothing, whenever anything is not
as the full fetch's first step requires."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from pathlib import Path

import pytest

from bsr_team_cache import placed
from bsr_team_cache.audit.log import AuditQuery, read
from bsr_team_cache.cli import main
from bsr_team_cache.store.index import lock_memo_key

TEAM = "platform-team"
# acme/orders and its closure.
CLOSURE = ["acme/common", "acme/money", "acme/orders", "acme/pets", "googleapis/googleapis"]


@pytest.fixture
def warm(bsr_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose deps a first fetch placed (from dev-bsr, through the embedded registry)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "buf.yaml").write_text(f"version: v2\ndeps:\n  - {bsr_env.host}/acme/orders\n")
    monkeypatch.setenv("BUF_CACHE_DIR", str(tmp_path / "buf-cache"))
    monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("BSR_TEAM_CACHE_REGISTRY", f"oci-layout:{tmp_path / 'registry'}")
    monkeypatch.setenv("BSR_TEAM_CACHE_TEAM", TEAM)
    monkeypatch.setenv("BSR_TEAM_CACHE_MEMBER", "alice")
    assert main(["fetch", str(project), "--update-lock", "-q"]) == 0
    return project


def _fetch(project: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    capsys.readouterr()
    assert main(["fetch", str(project), *extra]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out.splitlines()


def _full_fetch_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placed, "fetch_if_placed", lambda *a, **k: None)


def _records(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    """This machine's audit records and usage journal, without what differs between two runs
    of the same fetch (times, ids, durations)."""
    audit = [
        {k: v for k, v in r.items() if k != "time"}
        for r in read(tmp_path / "store", AuditQuery()).records
    ]
    journal = tmp_path / "store" / "events.jsonl"
    events = []
    for line in journal.read_text().splitlines():
        event = json.loads(line)
        for varying in ("time", "fetch", "build", "seconds", "fetch_seconds"):
            event.pop(varying, None)
        events.append(event)
    return audit, events


def _state(tmp_path: Path) -> dict[str, object]:
    """What a declined check must leave as it was: the records, the index, buf's cache."""
    db = sqlite3.connect(tmp_path / "store" / "store.db")
    rows = db.execute("SELECT module, commit_id, last_used FROM entries ORDER BY 1").fetchall()
    db.close()
    cache = tmp_path / "buf-cache"
    return {
        "audit": (tmp_path / "store" / "audit.jsonl").read_bytes(),
        "journal": (tmp_path / "store" / "events.jsonl").read_bytes(),
        "rows": rows,
        "cache": sorted(str(p.relative_to(cache)) for p in cache.rglob("*")),
    }


def _check(tmp_path: Path, project: Path) -> placed.PlacedFetch | None:
    return placed.fetch_if_placed(
        project,
        store_root=tmp_path / "store",
        buf_cache=tmp_path / "buf-cache",
        team=TEAM,
        member="alice",
    )


def test_it_prints_and_records_what_the_full_fetch_does(
    warm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    assert _fetch(warm, capsys, "-q") == []  # reads buf.lock once: its parse is kept
    audit_0, events_0 = _records(tmp_path)
    roundabout = Path(f"{warm}/../{warm.name}")  # recorded as the path it resolves to
    with monkeypatch.context() as m:  # the same fetch by the full machinery
        _full_fetch_only(m)
        full = _fetch(roundabout, capsys)
    audit_full, events_full = _records(tmp_path)
    quick = _fetch(roundabout, capsys)
    audit_quick, events_quick = _records(tmp_path)

    ms = re.compile(r", \d+ ms$")
    assert [ms.sub("", line) for line in quick] == [ms.sub("", line) for line in full]
    lines = quick[:-1]
    assert len(lines) == len(CLOSURE)
    assert sorted(line.split()[1].split(":")[1].split("/", 1)[1] for line in lines) == CLOSURE
    assert all(re.fullmatch(r"local [^ ]+:[0-9a-f]{32}  \d+ B", line) for line in lines)
    total = sum(int(line.split()[2]) for line in lines)
    assert ms.sub("", quick[-1]) == f"5 modules (5 local, 0 team, 0 bsr), {total / 1024:.0f} KiB"
    # What one fetch appends: the same records, whichever path ran.
    assert audit_quick[len(audit_full) :] == audit_full[len(audit_0) :]
    assert events_quick[len(events_full) :] == events_full[len(events_0) :]
    (fetch_record,) = audit_quick[len(audit_full) :]
    assert fetch_record["operation"] == "fetch" and fetch_record["result"] == "ok"
    assert len(fetch_record["refs"]) == 5
    assert all(
        re.fullmatch(r"[^ ]+:[0-9a-f]{32}@b5:[0-9a-f]{128}", r) for r in fetch_record["refs"]
    )
    assert [e["tier"] for e in events_quick[len(events_full) :]] == ["local"] * 5
    assert {e["project"] for e in events_quick[len(events_full) :]} == {str(warm.resolve())}


def test_each_module_s_last_use_is_recorded(warm: Path, tmp_path: Path, capsys) -> None:
    _fetch(warm, capsys, "-q")
    db = sqlite3.connect(tmp_path / "store" / "store.db")
    db.execute("UPDATE entries SET last_used = 1")
    db.commit()
    result = _check(tmp_path, warm)
    assert result is not None and len(result.modules) == 5
    uses = db.execute("SELECT last_used FROM entries").fetchall()
    assert len(uses) == 5 and all(used > 1 for (used,) in uses)
    db.close()


def _entry_yaml(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "buf-cache").rglob("acme/pets/*/module.yaml")
    return found


def _sql(tmp_path: Path, statement: str, *params: object) -> None:
    db = sqlite3.connect(tmp_path / "store" / "store.db")
    db.execute(statement, params)
    db.commit()
    db.close()


def _memo(tmp_path: Path, project: Path) -> dict:
    db = sqlite3.connect(tmp_path / "store" / "store.db")
    (value,) = db.execute(
        "SELECT value FROM kv WHERE key = ?", (lock_memo_key(project / "buf.lock"),)
    ).fetchone()
    db.close()
    return json.loads(value)


def _set_memo(tmp_path: Path, project: Path, memo: dict) -> None:
    key = lock_memo_key(project / "buf.lock")
    _sql(tmp_path, "UPDATE kv SET value = ? WHERE key = ?", json.dumps(memo), key)


def _incomplete_entry(tmp_path: Path, project: Path) -> None:
    _entry_yaml(tmp_path).unlink()


def _other_digest_recorded(tmp_path: Path, project: Path) -> None:
    _sql(
        tmp_path, "UPDATE entries SET digest = ? WHERE module LIKE '%/acme/pets'", "b5:" + "0" * 128
    )


def _module_not_stored(tmp_path: Path, project: Path) -> None:
    _sql(tmp_path, "DELETE FROM entries WHERE module LIKE '%/acme/money'")


def _no_memo(tmp_path: Path, project: Path) -> None:
    _sql(tmp_path, "DELETE FROM kv WHERE key LIKE 'buf.lock:%'")


def _lock_edited(tmp_path: Path, project: Path) -> None:
    lock = project / "buf.lock"
    lock.write_text(lock.read_text() + "# edited\n")


def _memo_naming_a_path_outside(tmp_path: Path, project: Path) -> None:
    memo = _memo(tmp_path, project)
    memo["lock"]["deps"][0][0] = "localhost/../escape"
    _set_memo(tmp_path, project, memo)


def _memo_without_a_digest(tmp_path: Path, project: Path) -> None:
    memo = _memo(tmp_path, project)
    memo["lock"]["deps"][0][2] = None
    _set_memo(tmp_path, project, memo)


def _store_of_another_schema(tmp_path: Path, project: Path) -> None:
    _sql(tmp_path, "PRAGMA user_version = 99")


def _no_buf_yaml(tmp_path: Path, project: Path) -> None:
    (project / "buf.yaml").rename(project / "buf.yaml.aside")


def _memo_nested_too_deeply(tmp_path: Path, project: Path) -> None:
    key = lock_memo_key(project / "buf.lock")
    _sql(tmp_path, "UPDATE kv SET value = ? WHERE key = ?", "[" * 100_000, key)


def _memo_digest_not_hex(tmp_path: Path, project: Path) -> None:
    memo = _memo(tmp_path, project)
    memo["lock"]["deps"][0][2] = "b5:" + "Z" * 128
    _set_memo(tmp_path, project, memo)


def _lock_a_link_to_a_device(tmp_path: Path, project: Path) -> None:
    (project / "buf.lock").unlink()
    (project / "buf.lock").symlink_to("/dev/zero")  # never read (the full fetch: not a file)


def _lock_a_fifo(tmp_path: Path, project: Path) -> None:
    (project / "buf.lock").unlink()
    os.mkfifo(project / "buf.lock")  # never opened for a blocking read


@pytest.mark.parametrize(
    "spoil",
    [
        _incomplete_entry,
        _other_digest_recorded,
        _module_not_stored,
        _no_memo,
        _lock_edited,
        _memo_naming_a_path_outside,
        _memo_without_a_digest,
        _store_of_another_schema,
        _no_buf_yaml,
        _memo_nested_too_deeply,
        _memo_digest_not_hex,
        _lock_a_link_to_a_device,
        _lock_a_fifo,
    ],
)
def test_it_declines_having_written_nothing(warm: Path, tmp_path: Path, capsys, spoil) -> None:
    _fetch(warm, capsys, "-q")
    assert _check(tmp_path, warm) is not None  # in place, until spoiled
    spoil(tmp_path, warm)
    before = _state(tmp_path)
    assert _check(tmp_path, warm) is None
    assert _state(tmp_path) == before


def test_an_invalid_team_name_declines(warm: Path, tmp_path: Path, capsys) -> None:
    _fetch(warm, capsys, "-q")
    result = placed.fetch_if_placed(
        warm, store_root=tmp_path / "store", buf_cache=tmp_path / "buf-cache", team="Bad Team",
        member="alice",
    )  # fmt: skip
    assert result is None  # the full fetch says what is wrong with it


def test_eviction_meanwhile_skips_the_entries_being_used(
    warm: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The full fetch's use locks are held from the index read to the recorded use."""
    from bsr_team_cache.store.local import LocalStore

    _fetch(warm, capsys, "-q")
    evicted = []
    check = placed._placed

    def with_an_eviction_meanwhile(*args):
        with LocalStore(tmp_path / "store") as store:
            evicted.extend(store.evict(0))
        return check(*args)

    monkeypatch.setattr(placed, "_placed", with_an_eviction_meanwhile)
    result = _check(tmp_path, warm)
    assert result is not None and len(result.modules) == 5
    assert evicted == []
    db = sqlite3.connect(tmp_path / "store" / "store.db")
    assert db.execute("SELECT count(*) FROM entries").fetchone() == (5,)
    db.close()


def test_no_store_declines(warm: Path, tmp_path: Path) -> None:
    result = placed.fetch_if_placed(
        warm, store_root=tmp_path / "nowhere", buf_cache=tmp_path / "buf-cache", team=TEAM,
        member="alice",
    )  # fmt: skip
    assert result is None
    assert not (tmp_path / "nowhere").exists()


def test_the_full_fetch_then_mends_what_was_not_in_place(
    warm: Path, tmp_path: Path, capsys
) -> None:
    _fetch(warm, capsys, "-q")
    _incomplete_entry(tmp_path, warm)
    _no_memo(tmp_path, warm)
    assert _check(tmp_path, warm) is None
    lines = _fetch(warm, capsys)  # the full fetch: rewrites the entry, keeps the parse again
    assert lines[-1].startswith("5 modules (5 local, 0 team, 0 bsr)")
    assert _entry_yaml(tmp_path).is_file()
    assert _check(tmp_path, warm) is not None


def test_a_check_of_a_project_in_place_loads_no_fetch_machinery(warm: Path, capsys) -> None:
    _fetch(warm, capsys, "-q")
    probe = (
        "import sys\n"
        "from bsr_team_cache.cli import main\n"
        f"assert main(['fetch', {str(warm)!r}, '-q']) == 0\n"
        "heavy = ['dataclasses', 'inspect', 'yaml', 'click', 'httpx', 'sqlite3.dump',\n"
        "         'bsr_team_cache.team.fetch', 'bsr_team_cache.store.local',\n"
        "         'bsr_team_cache.bufcache.v3', 'bsr_team_cache.domain.moduleref',\n"
        "         'bsr_team_cache.oci.artifact', 'bsr_team_cache.bsr.on_demand',\n"
        "         'bsr_team_cache.oci.base', 'bsr_team_cache.oci.layout', 'shutil']\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "print('bsr_team_cache.placed' in sys.modules)\n"
    )
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.splitlines() == ["[]", "True"]


@pytest.mark.parametrize(
    ("registry", "problem"),
    [
        ("ftp://registry.example", "unknown scheme"),
        ("ghcr.io/acme", "looks like a host, not a directory"),
        ("http://registry.example/ns", "plain http"),
    ],
)
def test_a_bad_registry_url_is_an_error_with_every_dep_in_place(
    warm: Path, capsys, registry: str, problem: str
) -> None:
    capsys.readouterr()
    assert main(["fetch", str(warm), "--registry", registry]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("bsr-team-cache: error: registry ")
    assert problem in err


@pytest.mark.parametrize("machine", ["this one", "a new one"])
def test_a_buf_too_old_for_the_cache_is_refused_before_anything_is_written(
    warm: Path, tmp_path: Path, capsys, monkeypatch, machine: str
) -> None:
    """With a store, before the in-place check (which would record a use); on a new machine
    (whose `buf --version` runs while the fetch loads), before anything reaches buf's cache."""
    _fetch(warm, capsys, "-q")  # in place, and known to the in-place check
    assert _check(tmp_path, warm) is not None
    old = tmp_path / "old" / "buf"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 1.28.1\n")
    old.chmod(0o755)
    monkeypatch.setenv("BUF_BIN", str(old))
    if machine == "a new one":
        monkeypatch.setenv("BSR_TEAM_CACHE_DIR", str(tmp_path / "new" / "store"))
        monkeypatch.setenv("BUF_CACHE_DIR", str(tmp_path / "new" / "buf-cache"))
    before = _state(tmp_path)
    capsys.readouterr()
    assert main(["fetch", str(warm)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"bsr-team-cache: error: {old} is buf 1.28.1, whose module cache layout predates v3"
        " (buf >= 1.32); this version of bsr-team-cache writes only the v3 layout. Upgrade buf,"
        " or pass --no-buf-cache and use --export\n"
    )
    assert _state(tmp_path) == before
    assert not (tmp_path / "new" / "buf-cache").exists()
