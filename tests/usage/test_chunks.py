"""The team's events in the registry: shipped as content-addressed chunks, merged once by every
reader, compacted, and refused (as a warning) when a chunk is not what it should be."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from bsr_team_cache.errors import InvalidContentError
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.usage import chunks
from bsr_team_cache.usage.chunks import (
    decode_chunk,
    encode_chunk,
    machine_tag,
    merge,
    read_machine_log,
    ship,
    usage_repository,
)
from bsr_team_cache.usage.events import UsageEvent
from bsr_team_cache.usage.log import MERGED, OWN, open_event_log

REPO = usage_repository("t")
T0 = 1_790_000_000.0


def events(member: str, n: int, *, start: int = 0, team: str = "t") -> list[UsageEvent]:
    return [
        UsageEvent(
            time=T0 + i * 60.5,
            member=member,
            build=f"{member}-b{i // 3}",
            module=f"buf.build/acme/m{i % 7}",
            commit=f"{i % 5:x}" * 32,
            tier=("local", "team", "bundle", "bsr")[i % 4],
            bytes=1000 + i,
            seconds=0.001 * (i % 50),
            team=team,
            host=f"{member}-laptop",
            fetch=f"{member}-f{i // 3}",
            project="/src/shop",
            bundle="shop:v1" if i % 4 == 2 else "",
            fetch_seconds=0.25,
        )
        for i in range(start, start + n)
    ]


def test_chunk_round_trip_is_exact_and_deterministic() -> None:
    batch = events("alice", 50)
    data = encode_chunk(batch)
    assert encode_chunk(list(reversed(batch))) == data  # same events, same digest
    # Times and durations travel as whole microseconds.
    exact = [
        e._replace(time=round(e.time * 1e6) / 1e6, seconds=round(e.seconds * 1e6) / 1e6)
        for e in sorted(batch, key=lambda e: (e.time, e.event_id()))
    ]
    assert decode_chunk(data, "chunk").events() == exact
    assert [e.event_id() for e in exact] == [
        e.event_id() for e in sorted(batch, key=lambda e: (e.time, e.event_id()))
    ]


def test_two_machines_ship_and_merge(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "reg")
    alice, bob = open_event_log(tmp_path / "a"), open_event_log(tmp_path / "b")
    alice.add(events("alice", 30))
    bob.add(events("bob", 20))
    shipped = ship(alice, registry, REPO, team="t", member="alice", host="h-a", store_bytes=123)
    assert (shipped.events, shipped.chunks) == (30, 1)
    assert ship(bob, registry, REPO, team="t", member="bob", host="h-b", store_bytes=9).events == 20
    # Nothing new: nothing shipped again.
    assert (
        ship(alice, registry, REPO, team="t", member="alice", host="h-a", store_bytes=1).events == 0
    )

    merged = merge(alice, registry, REPO, team="t", own_tag=machine_tag("alice", "h-a"))
    assert (merged.machines, merged.chunks, merged.events, merged.warnings) == (2, 1, 20, [])
    assert merged.store_bytes == {machine_tag("alice", "h-a"): 1, machine_tag("bob", "h-b"): 9}
    assert alice.count(team="t") == 50
    assert alice.count(member="bob", source=MERGED) == 20
    assert alice.count(source=OWN) == 30
    # Merging again reads no chunk; merged events are not shipped back as alice's own.
    again = merge(alice, registry, REPO, team="t", own_tag=machine_tag("alice", "h-a"))
    assert (again.chunks, again.events) == (0, 0)
    alice.add(events("alice", 5, start=30))
    assert (
        ship(alice, registry, REPO, team="t", member="alice", host="h-a", store_bytes=1).events == 5
    )


def test_only_the_team_s_own_events_are_shipped_and_merged(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "reg")
    alice = open_event_log(tmp_path / "a")
    alice.add(events("alice", 4) + events("alice", 3, start=100, team="other"))
    assert (
        ship(alice, registry, REPO, team="t", member="alice", host="h", store_bytes=0).events == 4
    )
    # A chunk that smuggles another team's events into t's repository: those are ignored.
    forged = encode_chunk(events("mallory", 2, team="other") + events("mallory", 3, start=9))
    _push_machine(registry, "mallory.1", [forged])
    bob = open_event_log(tmp_path / "b")
    merged = merge(bob, registry, REPO, team="t", own_tag="bob.2")
    assert merged.events == 4 + 3
    assert merged.warnings == [
        f"team usage {registry.describe()}/{REPO}:mallory.1: 2 events of other teams, older than"
        " the retention or dated in the future ignored"
    ]
    assert bob.count(team="other") == 0


def test_compaction_keeps_every_event_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(chunks, "COMPACT_ABOVE", 4)
    monkeypatch.setattr(chunks, "COMPACT_TO", 2)
    registry = OCILayoutRegistry(tmp_path / "reg")
    alice, bob = open_event_log(tmp_path / "a"), open_event_log(tmp_path / "b")
    now = lambda: T0 + 86400  # noqa: E731 - within the retention of every event
    for i in range(6):
        alice.add(events("alice", 10, start=10 * i))
        ship(alice, registry, REPO, team="t", member="alice", host="h", store_bytes=0, now=now)
        if i == 1:  # bob reads the first two chunks before they are compacted
            merge(bob, registry, REPO, team="t", own_tag="bob.x")
    log = read_machine_log(registry, REPO, machine_tag("alice", "h"))
    assert log is not None and len(log.layers) <= 4
    assert sum(layer.events for layer in log.layers) == 60
    assert any(layer.replaces for layer in log.layers)
    merged = merge(bob, registry, REPO, team="t", own_tag="bob.x")
    assert bob.count(member="alice") == 60  # every event once, whatever chunks held it
    assert merged.events == 40
    # A reader that had every part of a compacted chunk skips it without reading it.
    carol = open_event_log(tmp_path / "c")
    merge(carol, registry, REPO, team="t", own_tag="carol.x")
    assert carol.count(member="alice") == 60


def _push_machine(registry: OCILayoutRegistry, tag: str, blobs: list[bytes]) -> None:
    layers = []
    for data in blobs:
        digest = sha256_digest(data)
        registry.push_blob(REPO, data, digest)
        layers.append(chunks.Layer(digest, len(data), 1))
    for layer in layers:  # the annotation counts are only hints: readers count themselves
        layer.events = 1
    registry.push_blob(REPO, b"{}", sha256_digest(b"{}"))
    registry.push_manifest(REPO, tag, chunks.machine_manifest(layers, {}), OCI_MANIFEST)


def _gz(document: object) -> bytes:
    return gzip.compress(json.dumps(document).encode(), mtime=0)


def _document(**changes) -> dict:
    good = json.loads(gzip.decompress(encode_chunk(events("eve", 3))))
    for key, value in changes.items():
        if key.startswith("col_"):
            good["columns"][key[4:]] = value
        else:
            good[key] = value
    return good


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not gzip", "not gzip"),
        (gzip.compress(b"[1, 2"), "not a JSON document"),
        (gzip.compress(b"\0" * (600 << 20)), "inflates past 29 MiB (50x its size or 512 MiB)"),
        (encode_chunk(events("eve", 2)) + b"trailing", "trailing data"),
        (_gz(_document(version=2)), "version: expected a version 1 chunk"),
        (_gz(_document(count=4)), "columns.team: expected a list of 4 integers"),
        (_gz(_document(col_module=[0, 0, 99])), "columns.module: values outside"),
        (_gz(_document(col_tier=[0, 1, 7])), "columns.tier: values outside 0..3"),
        (_gz(_document(col_bytes=[1, -1, 2])), "columns.bytes: values outside"),
        (_gz(_document(col_bytes=[1, 2.5, 2])), "columns.bytes: expected integers"),
        (_gz(_document(col_time_us=[1, 0, 0])), "a time outside the years 2000 to 2200"),
        (_gz(_document(strings=["t", "eve", "e\x00", "x"] * 5)), "control characters"),
        (_gz({**_document(), "extra": [0] * 10}), "unknown or missing top-level fields"),
        (_gz(_document(strings=[*_document()["strings"], "unused"])), "distinct and used"),
        (gzip.compress(b"[" + b"0," * (3 << 20) + b"0]"), "inflates past 4 MiB"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_chunks_are_refused_whole(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidContentError) as caught:
        decode_chunk(data, "chunk")
    assert problem in str(caught.value)


def test_a_bad_chunk_is_a_warning_and_is_not_read_again(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "reg")
    team = _document()["strings"].index("t")
    bad = _gz(_document(col_commit=[team] * 3))  # the team's name where a commit should be
    _push_machine(registry, "eve.1", [bad, encode_chunk(events("eve", 4, start=10))])
    log = open_event_log(tmp_path / "l")
    merged = merge(log, registry, REPO, team="t", own_tag="me.1")
    assert merged.events == 4
    assert len(merged.warnings) == 1
    assert "commit 't': expected a commit id" in merged.warnings[0]
    assert merge(log, registry, REPO, team="t", own_tag="me.1").warnings == []
    assert log.count() == 4


def test_a_manifest_with_too_many_chunks_is_skipped_with_a_warning(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "reg")
    _push_machine(registry, "eve.1", [encode_chunk(events("eve", 1, start=i)) for i in range(65)])
    log = open_event_log(tmp_path / "l")
    merged = merge(log, registry, REPO, team="t", own_tag="me.1")
    assert merged.events == 0 and log.count() == 0
    assert merged.warnings == [
        f"team usage {registry.describe()}/{REPO}:eve.1: {registry.describe()}/{REPO}:eve.1:"
        " more than 64 chunks; skipped"
    ]


# -- what a member with push rights can try (each found by an attacker's review) -----------


def _ship(log, registry, member: str, host: str = "h") -> None:
    ship(log, registry, REPO, team="t", member=member, host=host, store_bytes=0)


def test_a_compacted_chunk_on_another_tag_cannot_hide_a_member_s_events(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "reg")
    alice, reader = open_event_log(tmp_path / "a"), open_event_log(tmp_path / "r")
    mallory_chunk = encode_chunk(events("mallory", 3))
    _push_machine(registry, "mallory.1", [mallory_chunk])
    merge(reader, registry, REPO, team="t", own_tag="r.1")  # the reader has mallory's chunk
    alice.add(events("alice", 40))
    _ship(alice, registry, "alice")
    alice_layer = read_machine_log(registry, REPO, machine_tag("alice", "h")).layers[0]
    # Mallory lists alice's chunk as "replacing" the chunk the reader has seen.
    forged = chunks.Layer(alice_layer.digest, alice_layer.size, 40, (sha256_digest(mallory_chunk),))
    registry.push_manifest(REPO, "0", chunks.machine_manifest([forged], {}), OCI_MANIFEST)
    merge(reader, registry, REPO, team="t", own_tag="r.1")
    assert reader.count(member="alice") == 40


def test_chunks_planted_in_a_machine_s_own_tag_do_not_hide_others(tmp_path: Path) -> None:
    registry = OCILayoutRegistry(tmp_path / "reg")
    alice, bob = open_event_log(tmp_path / "a"), open_event_log(tmp_path / "b")
    bob.add(events("bob", 30))
    _ship(bob, registry, "bob")
    alice.add(events("alice", 5))
    _ship(alice, registry, "alice")
    # Someone appends bob's chunk to alice's tag; alice ships again on top of it.
    tag = machine_tag("alice", "h")
    own = read_machine_log(registry, REPO, tag)
    bob_layer = read_machine_log(registry, REPO, machine_tag("bob", "h")).layers[0]
    registry.push_manifest(
        REPO, tag, chunks.machine_manifest([*own.layers, bob_layer], {}), OCI_MANIFEST
    )
    alice.add(events("alice", 5, start=5))
    _ship(alice, registry, "alice")
    merge(alice, registry, REPO, team="t", own_tag=tag)
    assert alice.count(member="bob") == 30


@pytest.mark.parametrize(
    ("annotation", "value"),
    [(chunks.ANN_STORE_BYTES, "²"), (chunks.ANN_STORE_BYTES, "9" * 400), (chunks.ANN_EVENTS, "²")],
)
def test_odd_numbers_in_annotations_are_warnings(tmp_path: Path, annotation: str, value: str):
    registry = OCILayoutRegistry(tmp_path / "reg")
    data = encode_chunk(events("eve", 2))
    registry.push_blob(REPO, data, sha256_digest(data))
    registry.push_blob(REPO, b"{}", sha256_digest(b"{}"))
    layer = chunks.Layer(sha256_digest(data), len(data), 2).descriptor()
    notes = {}
    if annotation == chunks.ANN_EVENTS:
        layer["annotations"][annotation] = value
    else:
        notes[annotation] = value
    manifest = json.loads(chunks.machine_manifest([], notes))
    manifest["layers"] = [layer]
    registry.push_manifest(REPO, "eve.1", json.dumps(manifest).encode(), OCI_MANIFEST)
    merged = merge(open_event_log(tmp_path / "l"), registry, REPO, team="t", own_tag="me.1")
    assert merged.store_bytes == {}
    if annotation == chunks.ANN_EVENTS:
        assert merged.events == 0 and "has no valid event count" in merged.warnings[0]
    else:
        assert merged.events == 2 and merged.warnings == []


def test_a_chunk_that_could_not_be_read_is_tried_again(tmp_path: Path, monkeypatch) -> None:
    registry = OCILayoutRegistry(tmp_path / "reg")
    data = encode_chunk(events("eve", 4))
    layers = [chunks.Layer(sha256_digest(data), len(data), 4)]
    registry.push_blob(REPO, b"{}", sha256_digest(b"{}"))
    registry.push_manifest(REPO, "eve.1", chunks.machine_manifest(layers, {}), OCI_MANIFEST)
    log = open_event_log(tmp_path / "l")
    first = merge(log, registry, REPO, team="t", own_tag="me.1")  # the blob is not there yet
    assert first.events == 0 and "tried again next time" in first.warnings[0]
    registry.push_blob(REPO, data, sha256_digest(data))
    assert merge(log, registry, REPO, team="t", own_tag="me.1").events == 4


def test_compaction_never_makes_a_chunk_readers_refuse(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(chunks, "COMPACT_ABOVE", 3)
    monkeypatch.setattr(chunks, "COMPACT_TO", 1)
    monkeypatch.setattr(chunks, "MAX_CHUNK_EVENTS", 40)
    registry = OCILayoutRegistry(tmp_path / "reg")
    alice = open_event_log(tmp_path / "a")
    for i in range(6):
        alice.add(events("alice", 10, start=10 * i))
        ship(alice, registry, REPO, team="t", member="alice", host="h", store_bytes=0,
             now=lambda: T0 + 86400)  # fmt: skip
    log = read_machine_log(registry, REPO, machine_tag("alice", "h"))
    assert [layer.events for layer in log.layers] == [20, 20, 20]
    reader = open_event_log(tmp_path / "r")
    merge(reader, registry, REPO, team="t", own_tag="r.1", now=T0 + 86400)
    assert reader.count(member="alice") == 60


def test_a_bad_chunk_planted_in_a_machine_s_tag_does_not_stop_it_shipping(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(chunks, "COMPACT_ABOVE", 3)
    monkeypatch.setattr(chunks, "COMPACT_TO", 2)
    registry = OCILayoutRegistry(tmp_path / "reg")
    tag = machine_tag("alice", "h")
    good = [encode_chunk(events("alice", 2, start=2 * i)) for i in range(3)]
    _push_machine(registry, tag, [b"not gzip", *good])
    alice = open_event_log(tmp_path / "a")
    alice.add(events("alice", 2, start=50))
    report = ship(alice, registry, REPO, team="t", member="alice", host="h", store_bytes=0,
                  now=lambda: T0 + 86400)  # fmt: skip
    assert report.events == 2
    assert len(report.warnings) == 1 and "not gzip" in report.warnings[0]
