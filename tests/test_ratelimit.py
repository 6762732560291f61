"""The per-user rate limit forgets idle users as requests arrive.

Time is an argument (no sleeps): every call says what time it is. The
limiter's public face is ``take``, ``forget_idle``, ``len`` and ``in``.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from headcount.relay.ratelimit import RateLimit

WINDOW = 1000


def test_take_forgets_the_users_idle_for_a_window() -> None:
    rate = RateLimit(limit=2, window_ms=WINDOW)
    for i in range(100):
        assert rate.take(f"u{i}", i) == 0
    assert len(rate) == 100
    assert rate.take("late", 1050) == 0  # u0..u50 made their last request <= 50
    assert len(rate) == 49 + 1
    assert "u50" not in rate and "u51" in rate and "late" in rate


def test_a_user_within_the_window_keeps_their_count() -> None:
    rate = RateLimit(limit=2, window_ms=WINDOW)
    assert rate.take("idle", 100) == 0
    assert rate.take("busy", 600) == 0
    assert rate.take("busy", 900) == 0
    assert rate.take("other", 1500) == 0  # forgets "idle" only
    assert "idle" not in rate and "busy" in rate
    assert rate.take("busy", 1500) == 1  # both requests still count: 100 ms, rounded up
    assert rate.take("busy", 1601) == 0  # the request at 600 left the window


def test_forget_idle_alone_bounds_the_table() -> None:
    rate = RateLimit(limit=5, window_ms=WINDOW)
    for i in range(10):
        rate.take(f"u{i}", 0)
    rate.forget_idle(WINDOW - 1)
    assert len(rate) == 10
    rate.forget_idle(WINDOW)
    assert len(rate) == 0


def test_a_clock_that_goes_back_never_forgets_a_user_within_the_window() -> None:
    rate = RateLimit(limit=5, window_ms=WINDOW)
    rate.take("a", 1000)
    rate.take("b", 5000)
    rate.take("c", 3000)  # the clock went back
    rate.forget_idle(4500)
    assert "a" not in rate and "b" in rate  # "c" may stay a little longer
    rate.forget_idle(6000)
    assert len(rate) == 0


class Reference:
    """The limit without forgetting: every accepted request kept forever."""

    def __init__(self, limit: int, window_ms: int) -> None:
        self.limit, self.window_ms = limit, window_ms
        self.hits: dict[str, list[int]] = {}

    def in_window(self, key: str, now_ms: int) -> list[int]:
        return [t for t in self.hits.get(key, []) if t > now_ms - self.window_ms]

    def take(self, key: str, now_ms: int) -> int:
        live = self.in_window(key, now_ms)
        if len(live) >= self.limit:
            return max(1, -(-(live[0] + self.window_ms - now_ms) // 1000))
        self.hits.setdefault(key, []).append(now_ms)
        return 0


KEYS = ["a", "b", "c", "d"]
steps = st.lists(
    st.tuples(st.sampled_from(KEYS), st.integers(min_value=0, max_value=3 * WINDOW)),
    max_size=60,
)


@given(steps, st.integers(min_value=1, max_value=4))
def test_forgetting_never_changes_an_answer(ops: list[tuple[str, int]], limit: int) -> None:
    """Differential: the same answers as a limit that never forgets, and
    after each request exactly the users with a request in the window are
    tracked (time only moves forward here)."""
    rate, ref = RateLimit(limit, WINDOW), Reference(limit, WINDOW)
    now = 0
    for key, step in ops:
        now += step
        assert rate.take(key, now) == ref.take(key, now), (key, now)
        for k in KEYS:
            assert (k in rate) == bool(ref.in_window(k, now)), (k, now)
