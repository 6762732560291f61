"""The simulator's clock: a seeded discrete-event scheduler. No wall clock, no asyncio.

Actions sit in a heap keyed by ``(time, seq)``: ``seq`` grows with every
scheduling call, so two actions due at the same instant run in the order
they were scheduled and a run is a pure function of its seed. Randomness
comes from :class:`Streams`: one :class:`random.Random` per concern (links,
gossip, faults, workload, ...), each seeded from the run's seed and the
concern's name, so adding draws to one concern never shifts another's.
:class:`Trace` folds every notable step into a SHA-256 digest: two runs with
the same seed must end with the same digest.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

Action = Callable[[], None]


@dataclass(eq=False, slots=True)
class Timer:
    """A scheduled action; :meth:`cancel` makes it a no-op."""

    at: float
    action: Action | None

    def cancel(self) -> None:
        self.action = None

    @property
    def cancelled(self) -> bool:
        return self.action is None


class Scheduler:
    """A heap of ``(time, seq, timer)``; :attr:`now` only moves forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self.executed = 0

    def at(self, when: float, action: Action) -> Timer:
        """Run ``action`` at simulated time ``when`` (never before now)."""
        timer = Timer(max(when, self.now), action)
        self._seq += 1
        heapq.heappush(self._heap, (timer.at, self._seq, timer))
        return timer

    def after(self, delay: float, action: Action) -> Timer:
        return self.at(self.now + delay, action)

    @property
    def pending(self) -> int:
        return len(self._heap)

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> None:
        """Run every action due at or before ``until``, in order.

        Args:
            until: the simulated time to stop at (``now`` ends there unless
                ``stop`` ended the run first).
            stop: checked after each action; the run ends as soon as it is true.
        """
        heap = self._heap
        while heap and heap[0][0] <= until:
            when, _, timer = heapq.heappop(heap)
            action = timer.action
            if action is None:
                continue
            self.now = when
            timer.action = None
            self.executed += 1
            action()
            if stop is not None and stop():
                return
        self.now = max(self.now, until)


class Streams:
    """Independent random streams, one per concern, all derived from one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def __call__(self, concern: str) -> random.Random:
        rng = self._streams.get(concern)
        if rng is None:
            digest = hashlib.sha256(f"headcount-sim/{self.seed}/{concern}".encode()).digest()
            rng = self._streams[concern] = random.Random(int.from_bytes(digest[:16], "big"))
        return rng

    def derive(self, concern: str, n_bytes: int = 32) -> bytes:
        """Deterministic bytes for ``concern`` (e.g. a device's key seed)."""
        return hashlib.sha256(f"headcount-sim/{self.seed}/bytes/{concern}".encode()).digest()[
            :n_bytes
        ]


@dataclass(slots=True)
class Trace:
    """A running digest of what happened, plus (optionally) the records.

    Args:
        keep: also keep the records in :attr:`records` (tests and debugging;
            a 1000-node run produces millions).
    """

    keep: bool = False
    records: list[str] = field(default_factory=list)
    count: int = 0
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256)

    def __call__(self, now: float, *parts: object) -> None:
        line = f"{now:.9f} " + " ".join(map(str, parts))
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.count += 1
        if self.keep:
            self.records.append(line)

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()
