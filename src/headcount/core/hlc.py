"""Hybrid logical clock (Kulkarni et al., 2014), free of I/O.

A timestamp is one integer: ``wall_ms << 16 | logical``. It orders like the
pair ``(wall_ms, logical)``, stays within a few milliseconds of real time and
never goes backwards, even when the wall clock does. Wall time is always
passed in, so the clock is deterministic under the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FutureTimestampError

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
DEFAULT_FUTURE_TOLERANCE_MS = 5 * 60 * 1000


def pack(wall_ms: int, logical: int = 0) -> int:
    """Pack a wall time in milliseconds and a logical counter into one timestamp."""
    return (wall_ms << LOGICAL_BITS) | logical


def wall_ms(ts: int) -> int:
    """The wall-clock part of a timestamp, in milliseconds since the epoch."""
    return ts >> LOGICAL_BITS


def logical(ts: int) -> int:
    """The logical counter part of a timestamp."""
    return ts & LOGICAL_MASK


@dataclass(slots=True)
class HybridClock:
    """A per-device hybrid logical clock.

    Args:
        last: the highest timestamp issued or observed so far (persist it and
            pass it back on restart so time never runs backwards).
        future_tolerance_ms: how far ahead of local wall time an observed
            timestamp may be before it is rejected.
    """

    last: int = 0
    future_tolerance_ms: int = DEFAULT_FUTURE_TOLERANCE_MS

    def now(self, wall: int) -> int:
        """Issue a timestamp for a local event at wall time ``wall`` (ms)."""
        last_wall = wall_ms(self.last)
        if wall > last_wall:
            self.last = pack(wall)
        else:
            # Wall clock stalled or went back: keep the old wall part and
            # count up; on counter overflow borrow one millisecond.
            self.last += 1
        return self.last

    def check(self, ts: int, wall: int) -> None:
        """Raise if ``ts`` is further in the future than the tolerance allows.

        Raises:
            FutureTimestampError: ``ts`` is more than ``future_tolerance_ms``
                ahead of ``wall``.
        """
        ahead = wall_ms(ts) - wall
        if ahead > self.future_tolerance_ms:
            raise FutureTimestampError(
                f"timestamp is {ahead / 1000:.1f} s in the future "
                f"(tolerance {self.future_tolerance_ms / 1000:.0f} s); "
                "check the sending device's clock"
            )

    def observe(self, ts: int, wall: int) -> int:
        """Merge a remote timestamp so later local events order after it.

        Raises:
            FutureTimestampError: see :meth:`check`; the clock is unchanged.
        """
        self.check(ts, wall)
        base = max(self.last, ts)
        self.last = max(base, pack(wall)) if wall > wall_ms(base) else base
        return self.last
