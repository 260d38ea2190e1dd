"""Large layers read whole into memory decode at most LARGE_LAYER_SLOTS at a time, and inside
``holding_large_layers`` keep their slot until the block ends (oci/layer.py)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from bsr_team_cache.errors import InvalidContentError
from bsr_team_cache.limits import INFLATE_RATIO_FLOOR
from bsr_team_cache.oci import layer
from bsr_team_cache.oci.artifact import LAYER_MEDIA_TYPE
from bsr_team_cache.oci.layer import (
    LARGE_LAYER_SLOTS,
    decode_files_layer,
    files_layer,
    holding_large_layers,
)

# Over the floor once inflated (bytes that do not compress, so no bomb), and a small one.
LARGE = files_layer({"big.proto": random.Random(0).randbytes(INFLATE_RATIO_FLOOR + 1024)})
SMALL = files_layer({"small.proto": b'syntax = "proto3";\n'})


def _free_slots() -> int:
    return layer._large_slots._value  # BoundedSemaphore's count


def test_a_large_decode_takes_a_slot_and_gives_it_back():
    assert _free_slots() == LARGE_LAYER_SLOTS
    files, _ = decode_files_layer(LARGE, "test", LAYER_MEDIA_TYPE)
    assert len(files["big.proto"]) == INFLATE_RATIO_FLOOR + 1024
    assert _free_slots() == LARGE_LAYER_SLOTS
    decode_files_layer(SMALL, "test", LAYER_MEDIA_TYPE)
    assert _free_slots() == LARGE_LAYER_SLOTS


def test_a_refused_large_layer_gives_its_slot_back():
    truncated = LARGE[: len(LARGE) // 2]
    with pytest.raises(InvalidContentError, match="the files layer ends early"):
        decode_files_layer(truncated, "test", LAYER_MEDIA_TYPE)
    assert _free_slots() == LARGE_LAYER_SLOTS


def test_a_block_keeps_one_slot_until_it_ends_however_many_layers_it_reads():
    with holding_large_layers():
        decode_files_layer(LARGE, "test", LAYER_MEDIA_TYPE)
        assert _free_slots() == LARGE_LAYER_SLOTS - 1
        decode_files_layer(
            LARGE, "test", LAYER_MEDIA_TYPE
        )  # the same slot: a holder never waits for another
        assert _free_slots() == LARGE_LAYER_SLOTS - 1
    assert _free_slots() == LARGE_LAYER_SLOTS
    with holding_large_layers():
        decode_files_layer(SMALL, "test", LAYER_MEDIA_TYPE)
        assert _free_slots() == LARGE_LAYER_SLOTS  # small layers take none


def test_more_blocks_than_slots_wait_their_turn():
    """Four workers each read a large layer and hold it a while: never more than two at once."""
    inside, most, lock = 0, 0, threading.Lock()

    def worker() -> None:
        nonlocal inside, most
        with holding_large_layers():
            decode_files_layer(LARGE, "test", LAYER_MEDIA_TYPE)
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.2)  # storing and placing the module
            with lock:
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert most == LARGE_LAYER_SLOTS == 2
    assert _free_slots() == LARGE_LAYER_SLOTS
