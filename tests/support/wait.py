"""The one way a test waits for something to become true.

Habit 6: no ``sleep()`` to wait. A test either advances a virtual clock,
drains the simulator, or waits here for an explicit condition, bounded by a
timeout, and fails with :class:`AssertionError` (``"{what}: not true after
{timeout} s"``) when it does not come: a wait never falls through silently.

Where the code under test reports changes (``Node.effect_observers``,
``Node.link_observers``, a callback), hand :func:`await_until` a
:class:`Pulse` that those reports beat: the condition is checked again on
every beat, with no polling. Polling (every ``interval`` seconds) is left for
what nothing reports: another process, a file, a counter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
Description = str | Callable[[], str]
"""What is awaited, for the failure message; a callable is called only then
(to describe the state seen last)."""

POLL_S = 0.02  # between two checks, when nothing reports changes


class Pulse:
    """Beats whenever something a test waits for may have changed.

    :meth:`beat` takes and ignores any arguments, so it is an observer as it
    stands: ``node.effect_observers.append(pulse.beat)``.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.beats = 0

    def beat(self, *_args: object) -> None:
        self.beats += 1
        self._event.set()

    async def next_beat(self) -> None:
        """Wait for the next beat (one that comes after this call)."""
        self._event.clear()
        await self._event.wait()


def _failure(what: Description, timeout: float) -> AssertionError:
    text = what() if callable(what) else what
    return AssertionError(f"{text}: not true after {timeout} s")


def wait_until(
    predicate: Callable[[], T], timeout: float, what: Description, *, interval: float = POLL_S
) -> T:
    """Poll ``predicate()`` until it returns something truthy; return that.

    Raises:
        AssertionError: ``predicate()`` was still falsy ``timeout`` seconds on.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise _failure(what, timeout)
        time.sleep(min(interval, left))


async def await_until(
    predicate: Callable[[], T],
    timeout: float,
    what: Description,
    *,
    pulse: Pulse | None = None,
    interval: float = POLL_S,
) -> T:
    """Await until ``predicate()`` returns something truthy; return that.

    With a ``pulse``, the predicate is checked now and after every beat
    (whatever can make it true must beat the pulse); without one, every
    ``interval`` seconds.

    Raises:
        AssertionError: ``predicate()`` was still falsy ``timeout`` seconds on.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - loop.time()
        if left <= 0:
            raise _failure(what, timeout)
        if pulse is None:
            await asyncio.sleep(min(interval, left))
        else:
            try:
                async with asyncio.timeout(left):
                    await pulse.next_beat()
            except TimeoutError:
                pass  # checked once more, then reported


async def await_event(event: asyncio.Event, timeout: float, what: Description) -> None:
    """Await ``event``.

    Raises:
        AssertionError: it was not set within ``timeout`` seconds.
    """
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        raise _failure(what, timeout) from None
