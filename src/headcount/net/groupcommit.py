"""Group commit: many sessions' writes made durable by one fsync.

A relay with a thousand gates receives thousands of small batches a second.
Committing each before acknowledging it costs an fsync per batch (~0.4 ms
here), more than everything else the relay does with it. Instead, what the
sessions write joins one open store transaction
(:meth:`~headcount.store.Store.deferred`), and this object commits it once
per turn of the event loop: every batch that arrived in the same turn shares
the fsync, and while the disk works more batches gather for the next one.

Nothing is acknowledged or forwarded early: every driver awaits
:meth:`GroupCommit.durable` before it sends anything, and that returns only
once everything written so far is on disk.

A group is also bounded in age (``max_delay``): with a thousand busy links,
waiting for the next turn of the loop lets every link wake on the same
commit, and the turns grow to hundreds of milliseconds (a convoy). A waiter
that finds the group older than ``max_delay`` commits it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from ..errors import StoreError
from ..store import Store


class GroupCommit:
    """The commit scheduler of one store, for drivers on one event loop."""

    def __init__(
        self,
        store: Store,
        max_delay: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_delay = max_delay
        self.clock = clock
        self.commits = 0  # fsyncs made
        self.failures = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled = False
        self._opened = 0.0  # when the open group was first scheduled

    def schedule(self) -> None:
        """Something was written into the open group: commit it soon."""
        if not self._scheduled:
            self._scheduled = True
            self._opened = self.clock()
            asyncio.get_running_loop().call_soon(self._commit_soon)

    def _commit_soon(self) -> None:
        with contextlib.suppress(StoreError):  # delivered to every waiter
            self._commit()

    async def durable(self, event: str) -> None:
        """Return once everything written so far to ``event`` is durable.
        A frame about an event whose writes were committed waits for nobody
        (forwarding does not queue behind other links' fresh writes).

        Raises:
            StoreError: the commit failed (the store rolled back; the replica
                reloads its documents from disk). The caller must not send.
        """
        if not self.store.dirty(event):
            return
        if self._scheduled and self.clock() - self._opened >= self.max_delay:
            self._commit()  # raises StoreError to this caller too
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self.schedule()
        await future

    def _commit(self) -> None:
        """Commit the open group and settle every waiter (a no-op once the
        group was committed by someone else: the scheduled call finds none).

        Raises:
            StoreError: when called directly by :meth:`durable` and the
                commit failed (the waiters get the same error).
        """
        if not self._scheduled and not self._waiters:
            return
        self._scheduled = False
        waiters, self._waiters = self._waiters, []
        try:
            self.store.commit_group()
        except StoreError as exc:
            self.failures += 1
            for future in waiters:
                if not future.done():
                    future.set_exception(exc)
            raise
        self.commits += 1
        for future in waiters:
            if not future.done():
                future.set_result(None)
