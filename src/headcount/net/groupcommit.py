"""Group commit: many sessions' writes made durable by one fsync, off the loop.

A relay with a thousand gates receives thousands of small batches a second.
Committing each before acknowledging it costs an fsync per batch, more than
everything else the relay does with it. Instead:

1. What the sessions write joins one open store transaction
   (:meth:`~headcount.store.Store.deferred`), committed once per turn of the
   event loop, or at once by a waiter that finds it older than
   ``max_delay`` (with a thousand busy links, waiting for the next turn lets
   every link wake on the same commit and the turns grow long: a convoy).
2. With durability ``full`` the store commits without an fsync
   (:meth:`~headcount.store.Store.use_background_sync`) and a worker thread
   fsyncs the write-ahead log, one sync covering every commit made before
   it, while the loop goes on serving.
3. Every driver awaits :meth:`GroupCommit.durable` before it sends a frame
   about an event; that returns only once the event's writes are committed
   and synced. A frame about an event whose writes are durable already
   (forwarding what was stored earlier) waits for nobody.

So nothing is acknowledged or forwarded before it is on disk, and the disk's
latency is paid once per group, not once per batch, and not on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from headcount.core.errors import StoreError
from headcount.store.interface import LogStore


class GroupCommit:
    """The commit and sync scheduler of one store, for drivers on one event loop.

    Args:
        store: the store (switched to background sync if its durability is ``full``).
        max_delay: the age (seconds) past which a waiter commits the open group itself.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        store: LogStore,
        max_delay: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_delay = max_delay
        self.clock = clock
        self.commits = 0  # commits made by this scheduler
        self.syncs = 0  # background fsyncs
        self.failures = 0
        self._background = store.use_background_sync()
        self._pool: ThreadPoolExecutor | None = None
        # (needed commit generation, arrival, future): a heap, smallest need first
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._scheduled = False
        self._opened = 0.0  # when the open group was first scheduled
        self._syncer: asyncio.Task[None] | None = None

    def schedule(self) -> None:
        """Something was written into the open group: commit it soon."""
        if not self._scheduled:
            self._scheduled = True
            self._opened = self.clock()
            asyncio.get_running_loop().call_soon(self._commit_soon)

    async def durable(self, event: str) -> None:
        """Return once everything written so far to ``event`` is durable.

        Raises:
            StoreError: the commit or the sync failed (a failed commit rolls
                the store back and the replica reloads from disk). The caller
                must not send.
        """
        need = self.store.needs_sync(event)
        if not need:
            return
        if self.store.dirty(event) and self.clock() - self._opened >= self.max_delay:
            self._commit()  # raises StoreError to this caller too
            need = self.store.needs_sync(event)
            if not need:
                return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (need, next(self._arrivals), future))
        if self.store.dirty(event):
            self.schedule()
        else:
            self._ensure_syncer()
        await future

    def close(self) -> None:
        """Stop the sync thread (the store syncs what is left when it closes)."""
        if self._syncer is not None:
            self._syncer.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- internals -------------------------------------------------------------

    def _commit_soon(self) -> None:
        with contextlib.suppress(StoreError):  # delivered to every waiter
            self._commit()

    def _commit(self) -> None:
        """Commit the open group; settle or pass on the waiters.

        Raises:
            StoreError: the commit failed (the waiters of the lost group get
                the same error).
        """
        self._scheduled = False
        if not self.store.uncommitted:
            self._release()
            return
        try:
            self.store.commit_group()
        except StoreError as exc:
            self.failures += 1
            self._fail(-1, exc)  # the lost group was what they waited for
            raise
        self.commits += 1
        self._release()

    def _release(self) -> None:
        """Settle the waiters whose commits are synced; start a sync for the rest."""
        synced = self.store.synced_gen
        waiters = self._waiters
        while waiters and waiters[0][0] <= synced:
            future = heapq.heappop(waiters)[2]
            if not future.done():
                future.set_result(None)
        if waiters and self._background:
            self._ensure_syncer()

    def _fail(self, upto: int, exc: StoreError) -> None:
        """Fail the waiters that need a generation up to ``upto`` (all: -1)."""
        waiters = self._waiters
        while waiters and (upto < 0 or waiters[0][0] <= upto):
            future = heapq.heappop(waiters)[2]
            if not future.done():
                future.set_exception(exc)

    def _ensure_syncer(self) -> None:
        if self._syncer is None or self._syncer.done():
            self._syncer = asyncio.ensure_future(self._sync_loop())

    async def _sync_loop(self) -> None:
        """fsync in the worker thread while some waiter needs a committed,
        unsynced generation; one sync covers every commit made before it."""
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="headcount-fsync")
        while self._waiters and self._waiters[0][0] <= self.store.commit_gen:
            try:
                gen = await loop.run_in_executor(self._pool, self.store.sync_wal)
            except StoreError as exc:
                self.failures += 1
                self._fail(self.store.commit_gen, exc)
                return
            self.syncs += 1
            self.store.mark_synced(gen)
            self._release()
