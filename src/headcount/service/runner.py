"""Running a long-lived service until it is told to stop: one way for the
gate daemon (``headcount run``) and the relay (``headcount relay``).

A service has ``run(ready)``: it starts, sets ``ready``, serves until its
``stopped`` event is set, and always shuts down cleanly. SIGTERM and SIGINT
(Ctrl-C) set that event instead of raising in the middle of a write, so a
stop never interrupts a transaction half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stopped: asyncio.Event) -> Iterator[None]:
    """Inside, SIGTERM and SIGINT set ``stopped``; the previous handling is
    restored on exit. Must run inside the event loop (where signals cannot
    be handled, e.g. off the main thread, nothing is installed)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stopped.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def serve(run: Callable[[asyncio.Event], Awaitable[None]], banner: Callable[[], str]) -> None:
    """Run a service's ``run(ready)`` to its end in a new event loop, printing
    ``banner()`` on stdout (flushed: supervisors and tests wait for it) once
    the service is ready."""

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.ensure_future(run(ready))
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            print(banner(), flush=True)
        waiter.cancel()
        await task  # a start-up failure raises here

    asyncio.run(main())
