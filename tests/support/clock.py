"""A wall clock the tests move by hand."""

from __future__ import annotations

T0 = 1_780_000_000_000  # a fixed wall time (ms) so tests are reproducible


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms
