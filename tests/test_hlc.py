from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headcount import FutureTimestampError, HybridClock
from headcount.core.hlc import pack, wall_ms


@settings(max_examples=300, print_blob=True)
@given(st.lists(st.integers(0, 10**13), min_size=1, max_size=200))
def test_timestamps_strictly_increase_whatever_the_wall_clock_does(walls):
    clock = HybridClock()
    stamps = [clock.now(w) for w in walls]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    for w, ts in zip(walls, stamps, strict=True):
        assert wall_ms(ts) >= w  # never behind the wall clock


def test_stays_close_to_real_time_after_the_wall_clock_jumps_back():
    clock = HybridClock()
    a = clock.now(10_000)
    b = clock.now(4_000)  # NTP stepped the clock back 6 s
    assert b > a and wall_ms(b) == 10_000
    c = clock.now(10_001)
    assert wall_ms(c) == 10_001


def test_future_timestamps_beyond_the_tolerance_are_rejected_and_change_nothing():
    clock = HybridClock(future_tolerance_ms=5 * 60_000)
    clock.now(1_000_000)
    before = clock.last
    with pytest.raises(FutureTimestampError, match="in the future"):
        clock.observe(pack(1_000_000 + 5 * 60_000 + 1), 1_000_000)
    assert clock.last == before
    clock.observe(pack(1_000_000 + 5 * 60_000), 1_000_000)  # at the tolerance: accepted


def test_observing_a_remote_timestamp_orders_later_local_events_after_it():
    clock = HybridClock()
    remote = pack(50_000, 7)
    clock.observe(remote, 49_000)
    assert clock.now(49_000) > remote
