"""Recording appends to a journal; the next reader of the log moves it in, whole lines only,
and appends that race with the move are kept."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bsr_team_cache.usage import journal
from bsr_team_cache.usage.log import open_event_log
from bsr_team_cache.usage.record import Served, record


def served(n: int, start: int = 0) -> list[Served]:
    return [
        Served(
            f"buf.build/acme/m{i}", f"{i:032x}", "team", 100 * i, 0.01, "shop:v2" if i % 2 else ""
        )
        for i in range(start, start + n)
    ]


def test_recording_writes_no_database_and_the_reader_moves_it_in(tmp_path: Path) -> None:
    warnings = ["team registry http://r: down", "BSR: busy"]
    env = {"BSR_TEAM_CACHE_HOST": "ci-7", "GITHUB_RUN_ID": "99"}
    record(tmp_path, served(3), team="t", member="alice", operation="fetch", started=1.8e9,
           warnings=warnings, env=env)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]
    with open_event_log(tmp_path) as log:
        events = list(log.events())
        assert [(e.module, e.tier, e.bundle, e.bytes) for e in events] == [
            ("buf.build/acme/m0", "team", "", 0),
            ("buf.build/acme/m1", "bundle", "shop:v2", 100),
            ("buf.build/acme/m2", "team", "", 200),
        ]
        assert {(e.member, e.host, e.build, e.team, e.time) for e in events} == {
            ("alice", "ci-7", "GITHUB_RUN_ID:99", "t", 1.8e9)
        }
        assert log.counters() == {"errors:registry": 1, "errors:bsr_warning": 1}
    assert not (tmp_path / "events.jsonl").exists()
    with open_event_log(tmp_path) as log:  # moved once
        assert log.count() == 3 and log.counters()["errors:registry"] == 1


def test_a_torn_or_damaged_line_is_skipped_and_counted(tmp_path: Path) -> None:
    record(tmp_path, served(2), team="t", member="a", operation="warm", started=1.8e9, env={})
    with open(tmp_path / "events.jsonl", "ab") as f:
        f.write(b'{"counter": "../../x", "n": 1}\n{"not": "an event"}\n{"time": "2026-11-2')
    with open_event_log(tmp_path) as log:
        assert log.count() == 2
        assert log.counters() == {"errors:journal": 2}  # the torn last line is not a line


def test_recording_off(tmp_path: Path) -> None:
    env = {"BSR_TEAM_CACHE_RECORD_USAGE": "0"}
    record(tmp_path, served(2), team="t", member="a", operation="fetch", started=1.8e9, env=env)
    assert list(tmp_path.iterdir()) == []


def test_appends_racing_a_reader_are_all_kept(tmp_path: Path) -> None:
    stop = threading.Event()
    written = []

    def writer(k: int) -> None:
        i = 0
        while not stop.is_set():
            record(tmp_path, served(1, start=1000 * k + i), team="t", member=f"w{k}",
                   operation="fetch", started=1.8e9 + i, env={})  # fmt: skip
            written.append(1)
            i += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    total = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        with open_event_log(tmp_path) as log:
            total = log.count()
    stop.set()
    for t in threads:
        t.join()
    with open_event_log(tmp_path) as log:
        assert log.count() == len(written)
    assert total <= len(written)
    assert not list(tmp_path.glob(".events.jsonl.*"))


def test_a_journal_left_by_a_reader_that_died_is_taken(tmp_path: Path) -> None:
    record(tmp_path, served(2), team="t", member="a", operation="fetch", started=1.8e9, env={})
    (tmp_path / "events.jsonl").rename(tmp_path / ".events.jsonl.123.dead")
    record(tmp_path, served(1, start=5), team="t", member="a", operation="fetch", started=1.9e9,
           env={})  # fmt: skip
    with open_event_log(tmp_path) as log:
        assert log.count() == 3
    assert sorted(p.name for p in tmp_path.iterdir() if "jsonl" in p.name) == [
        f"{journal.JOURNAL}.lock"
    ]
