"""Group commit: nothing is reported durable before it is committed and synced,
writes to one event never wait for another's, and failures reach every waiter."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from headcount.core.errors import StoreError
from headcount.net.groupcommit import GroupCommit
from headcount.store.sqlite import DB_FILE, Durability, Store

from .support.store_conformance import chain


def committed_seq(path: Path, event: str) -> int:
    """What another connection (a crash survivor) sees of ``event``."""
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT max(seq) FROM log WHERE event=?", (event,)).fetchone()
        return int(row[0] or 0)
    finally:
        db.close()


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / DB_FILE, Durability.FULL)
    yield s
    s.close()


def run_group(
    store: Store, scenario: Callable[[GroupCommit], Awaitable[None]], **options: float
) -> None:
    """Run ``scenario`` in a new event loop with a :class:`GroupCommit` of ``store``
    (made in that loop with ``options``), and close the group after it."""

    async def main() -> None:
        group = GroupCommit(store, **options)
        try:
            await scenario(group)
        finally:
            group.close()

    asyncio.run(main())


def write(store: Store, group: GroupCommit, event: str, n: int = 1, first: int = 1) -> None:
    with store.deferred():
        store.append(chain("dev-a", n, first, event=event), hlc=first, force=True)
    group.schedule()


def test_durable_waits_for_commit_and_sync(store: Store):
    async def scenario(group: GroupCommit) -> None:
        assert store.needs_sync("ev1") == 0
        write(store, group, "ev1")
        assert committed_seq(store.path, "ev1") == 0  # only in the open group
        await asyncio.wait_for(group.durable("ev1"), 5)
        assert committed_seq(store.path, "ev1") == 1
        assert store.synced_gen >= store.commit_gen
        assert group.syncs >= 1  # the fsync ran in the worker thread

    run_group(store, scenario)


def test_many_waiters_share_one_commit(store: Store):
    async def scenario(group: GroupCommit) -> None:
        for i in range(20):
            write(store, group, f"ev{i}")
        await asyncio.wait_for(asyncio.gather(*(group.durable(f"ev{i}") for i in range(20))), 5)
        assert group.commits == 1
        assert all(committed_seq(store.path, f"ev{i}") == 1 for i in range(20))

    run_group(store, scenario, max_delay=60)  # only the loop turn ends a group


def test_an_event_with_durable_writes_waits_for_nobody(store: Store):
    async def scenario(group: GroupCommit) -> None:
        write(store, group, "old")
        await group.durable("old")
        write(store, group, "busy")  # uncommitted writes of another event
        commits = group.commits
        await group.durable("old")  # returns without waiting for busy's commit
        assert store.dirty("busy") and group.commits == commits
        await group.durable("busy")
        assert committed_seq(store.path, "busy") == 1

    run_group(store, scenario, max_delay=60)


def test_an_old_group_is_committed_by_its_next_waiter(store: Store):
    async def scenario(group: GroupCommit) -> None:
        write(store, group, "ev1")
        await group.durable("ev1")
        # committed inline by the waiter (the scheduled commit finds nothing left)
        assert group.commits == 1
        assert committed_seq(store.path, "ev1") == 1

    run_group(store, scenario, max_delay=0.0)


def test_a_failed_commit_fails_every_waiter(store: Store, monkeypatch: pytest.MonkeyPatch):
    async def scenario(group: GroupCommit) -> None:
        write(store, group, "ev1")
        write(store, group, "ev2")

        def broken() -> None:
            raise StoreError("disk on fire")

        monkeypatch.setattr(store, "commit_group", broken)
        results = await asyncio.gather(
            group.durable("ev1"), group.durable("ev2"), return_exceptions=True
        )
        assert all(isinstance(r, StoreError) for r in results)

    run_group(store, scenario, max_delay=60)


def test_a_failed_sync_fails_its_waiters(store: Store, monkeypatch: pytest.MonkeyPatch):
    async def scenario(group: GroupCommit) -> None:
        write(store, group, "ev1")

        def broken() -> int:
            raise StoreError("fsync failed")

        monkeypatch.setattr(store, "sync_wal", broken)
        with pytest.raises(StoreError):
            await asyncio.wait_for(group.durable("ev1"), 5)
        assert group.failures == 1

    run_group(store, scenario, max_delay=60)


def test_background_sync_only_for_full_durability(tmp_path: Path):
    normal = Store(tmp_path / "n.db", Durability.NORMAL)
    full = Store(tmp_path / "f.db", Durability.FULL)
    try:
        assert not normal.use_background_sync()
        assert full.use_background_sync()
        with full.deferred():
            full.append(chain("dev-a", 1), hlc=1, force=True)
        full.commit_group()
        assert full.needs_sync("ev1") > 0  # committed, not yet on disk
        full.sync_wal()
        assert full.needs_sync("ev1") == 0
        full.add_event("ev2", 1)  # an ordinary write syncs before it returns
        assert full.needs_sync("ev2") == 0
    finally:
        normal.close()
        full.close()
