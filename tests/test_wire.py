"""The bound on every wait of a connection (_wire.Pace): the deadline, and a minimum rate
measured over windows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bsr_team_cache import _wire
from bsr_team_cache.limits import configure, limits


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """A clock the test moves; the minimum rate 1,000 bytes per 10 s."""
    now = [100.0]
    monkeypatch.setattr(_wire.time, "monotonic", lambda: now[0])
    before = limits()
    configure(low_speed_seconds=10.0, low_speed_bytes=1000)
    yield now
    configure(low_speed_seconds=before.low_speed_seconds, low_speed_bytes=before.low_speed_bytes)


def test_a_window_without_its_bytes_bounds_the_wait_by_its_end(clock) -> None:
    pace = _wire.Pace()
    clock[0] = 104.0
    assert pace.bound(None, reading=True) == 6.0
    pace.received(999)
    assert pace.bound(None, reading=True) == 6.0
    clock[0] = 109.0
    assert pace.timed_out() is None
    clock[0] = 110.0
    assert str(pace.timed_out()) == "the server sent less than 1000 bytes in 10 s: abandoned"


def test_a_window_with_its_bytes_bounds_the_wait_by_the_end_of_the_next(clock) -> None:
    """A server that sends a window's bytes at once, then nothing, is given up when the next
    window ends empty: not at the deadline."""
    pace = _wire.Pace()
    pace.received(5000)
    clock[0] = 101.0
    assert pace.bound(None, reading=True) == 19.0
    clock[0] = 119.0
    assert pace.timed_out() is None
    clock[0] = 120.0
    assert str(pace.timed_out()) == "the server sent less than 1000 bytes in 10 s: abandoned"
    # A wait begun after the window ended starts the next one then.
    pace = _wire.Pace()
    pace.received(5000)
    clock[0] = 130.0
    assert pace.bound(None, reading=True) == 10.0


def test_the_deadline_bounds_every_wait(clock) -> None:
    from bsr_team_cache._deadline import _deadline

    token = _deadline.set(103.0)
    try:
        pace = _wire.Pace()
        pace.received(5000)
        assert pace.bound(None, reading=True) == 3.0
        assert pace.bound(1.0, reading=False) == 1.0
        clock[0] = 103.0
        assert str(pace.timed_out()) == "the deadline passed"
        with pytest.raises(_wire.TransferTooSlow, match="the deadline passed"):
            pace.bound(None, reading=True)
    finally:
        _deadline.reset(token)
