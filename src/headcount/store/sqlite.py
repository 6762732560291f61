"""The local store: SQLite in WAL mode.

Holds every event's log (local and remote entries, numbered per device),
snapshots for fast start-up, entries waiting for missing dependencies, and a
little metadata (the hybrid clock's high-water mark). The schema and its
migrations are in :mod:`headcount.store.schema`.

Three things keep a busy relay off the disk's critical path:

1. Version vectors, horizons, quarantine sets and the event list are cached
   in memory (they are read on every message of every session) and kept in
   step by the writes; any rollback drops the caches.
2. Peer acknowledgements (compaction input, advisory) are held in memory and
   written by :meth:`Store.save_acks` (the node calls it every gossip round)
   and at close; a crash loses only acknowledgements, which peers repeat on
   their next exchange.
3. Group commit: transactions inside :meth:`Store.deferred` join one open
   SQLite transaction that :meth:`Store.commit_group` makes durable with a
   single fsync. The network driver commits before it sends anything (see
   ``net/groupcommit.py``), so nothing is acknowledged or forwarded before it
   is on disk.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from headcount.core.errors import StoreError

from .dbfile import open_private
from .log import Durability, LogTables, Snapshot
from .meta import read_meta, write_meta
from .peers import Horizon, PeerTables
from .revocations import RevocationTables
from .schema import FIXUPS, MIGRATIONS

DB_FILE = "headcount.db"

__all__ = ["DB_FILE", "MIGRATIONS", "Durability", "Horizon", "Snapshot", "Store"]


class Store(LogTables, PeerTables, RevocationTables):
    """One device's SQLite database.

    Raises:
        StoreError: the database cannot be opened, is corrupt, or was written
            by a newer version of headcount.
    """

    def __init__(self, path: Path, durability: Durability = Durability.FULL) -> None:
        self.path = path
        self.durability = durability
        self.on_rollback: list[Callable[[], None]] = []  # called when written state is undone
        # The state the parts share (what each holds: see StoreBase).
        self._buffer = []
        self._buffer_hlc = 0
        self._buffer_vv = {}
        self._buffer_hash = {}
        self._vv = {}
        self._horizons = {}
        self._quarantined = {}
        self._events = None
        self._acks = {}
        self._group_open = False
        self._pending = {}
        self._keys = {}
        self._certs = None
        self._hlc = None
        self._archived = None
        # Store's own state.
        self._deferring = 0
        self._depth = 0  # transaction() nesting
        self._dirty: set[str | None] = set()  # events written in the open group (None: others)
        self._background_sync = False
        self._owner = threading.get_ident()
        self._wal_fd: int | None = None
        self.commit_gen = 0  # commits made
        self.synced_gen = 0  # commits known to be on disk
        self._commit_of: dict[str | None, int] = {}  # per event, its last unsynced commit
        open_private(path)  # 0600, and so the -wal and -shm files SQLite creates
        try:
            # Private: callers outside the store package get methods, never SQL.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            sync = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}[durability.value]
            self._db.execute(f"PRAGMA synchronous={sync}")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"store {self.path} has schema version {version}; this headcount "
                f"knows up to {len(MIGRATIONS)}: upgrade headcount",
                code="store_too_new",
            )
        for number in range(version, len(MIGRATIONS)):
            with self.transaction():
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                if number + 1 in FIXUPS:
                    FIXUPS[number + 1](self._db)
                self._db.execute(f"PRAGMA user_version={number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- transactions and group commit ----------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic SQLite transaction, durable (per the durability setting)
        when it returns -- unless inside :meth:`deferred`, where it joins the
        open group that :meth:`commit_group` makes durable. A transaction
        opened inside another is part of it (one savepoint, not two)."""
        if self._depth:
            yield
            return
        self._depth += 1
        try:
            if not self._group_open and not self._deferring:
                with self._top_level():
                    yield
                return
            if not self._group_open:
                self._db.execute("BEGIN IMMEDIATE")
                self._group_open = True
            self._db.execute("SAVEPOINT op")
            try:
                yield
            except BaseException:
                self._rollback("ROLLBACK TO op")
                self._db.execute("RELEASE op")
                raise
            self._db.execute("RELEASE op")
        finally:
            self._depth -= 1
        if not self._deferring:  # an ordinary write is durable when it returns
            self.commit_group()
            if self._background_sync:
                self.sync_wal()

    @contextmanager
    def _top_level(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._rollback("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._committed({None})
        if self._background_sync:
            self.sync_wal()

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Transactions inside join one group; nothing is durable until
        :meth:`commit_group` (the caller must make sure it is called before
        anything written here is reported to anyone)."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Like :meth:`deferred`, committed (one fsync) when the block ends."""
        try:
            with self.deferred():
                yield
        finally:
            if not self._deferring:
                self.commit_group()

    @property
    def uncommitted(self) -> bool:
        """Writes of a group are waiting for :meth:`commit_group`."""
        return self._group_open

    def dirty(self, event: str) -> bool:
        """The open group holds writes to ``event`` (or writes of unknown scope)."""
        return self._group_open and (event in self._dirty or None in self._dirty)

    def _touch(self, *events: str | None) -> None:
        if self._group_open:
            self._dirty.update(events)

    def commit_group(self) -> None:
        """Commit the open group (one fsync; with :meth:`use_background_sync`
        none: see :meth:`sync_wal`); a no-op without one.

        Raises:
            StoreError: the commit failed; the group was rolled back, the
                caches dropped and the ``on_rollback`` hooks called.
        """
        if not self._group_open:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with _suppress_sqlite():
                self._db.execute("ROLLBACK")
            self._group_open = False
            self._dirty.clear()
            self._dropped(group=True)
            raise StoreError(f"could not commit to the store: {exc}") from exc
        self._group_open = False
        self._committed(self._dirty)
        self._dirty = set()

    def _committed(self, events: set[str | None]) -> None:
        self.commit_gen += 1
        if not self._background_sync:
            self.synced_gen = self.commit_gen  # SQLite synced it in the COMMIT
            return
        for event in events:
            self._commit_of[event] = self.commit_gen

    # -- background sync ----------------------------------------------------

    def use_background_sync(self) -> bool:
        """Commit without fsync (``synchronous=NORMAL``: crash-safe, never
        corrupt) and make commits durable with :meth:`sync_wal`, which may
        run in another thread, so that a busy node's event loop does not
        wait for the disk. Ordinary transactions still sync before they
        return. Only with durability ``full``; returns whether it is on.

        Durable before acknowledged still holds: the driver sends nothing
        about an event until :meth:`needs_sync` says its commits are synced.
        """
        if self.durability is not Durability.FULL or self._group_open or self._depth:
            return False
        if self._background_sync:
            return True
        try:
            self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except OSError:
            return False  # no write-ahead log to sync (not in WAL mode?): stay synchronous
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._background_sync = True
        return True

    def sync_wal(self) -> int:
        """fsync the write-ahead log: every commit made before the call is
        durable once it returns. Thread-safe (touches no SQLite object).
        Returns the commit generation it covers; call :meth:`mark_synced`
        with it on the owning thread (done here when called there).

        Raises:
            StoreError: the fsync failed.
        """
        gen = self.commit_gen
        if self._wal_fd is None:
            return gen  # closed
        try:
            os.fsync(self._wal_fd)
        except OSError as exc:
            raise StoreError(f"could not sync the store to disk: {exc}") from exc
        if threading.get_ident() == self._owner:
            self.mark_synced(gen)
        return gen

    def mark_synced(self, gen: int) -> None:
        if gen > self.synced_gen:
            self.synced_gen = gen
            self._commit_of = {e: g for e, g in self._commit_of.items() if g > gen}

    def needs_sync(self, event: str) -> int:
        """The commit generation that must be synced before anything about
        ``event`` may be sent: 0 if it is durable already; ``commit_gen + 1``
        while it has uncommitted writes (the next commit)."""
        if self.dirty(event):
            return self.commit_gen + 1
        gen = max(self._commit_of.get(event, 0), self._commit_of.get(None, 0))
        return gen if gen > self.synced_gen else 0

    def _rollback(self, statement: str) -> None:
        """Undo one failed operation (its caller handles its own in-memory state)."""
        with _suppress_sqlite():
            self._db.execute(statement)
        self._dropped(group=False)

    def _dropped(self, group: bool) -> None:
        """Written state was undone: forget every cache; if a whole commit
        group was lost, tell the owners (``on_rollback``) too."""
        self._vv.clear()
        self._horizons.clear()
        self._quarantined.clear()
        self._pending.clear()
        self._keys.clear()
        self._certs = None
        self._events = None
        self._hlc = None
        self._archived = None
        if group:
            for hook in self.on_rollback:
                hook()

    # -- metadata -------------------------------------------------------

    def get_meta(self, key: str, default: object = None) -> object:
        return read_meta(self._db, key, default)

    def set_meta(self, key: str, value: object) -> None:
        """Store a metadata value (a string, number or bytes), durably."""
        with self.transaction():
            self._touch(None)
            self._set_meta(key, value)

    def _set_meta(self, key: str, value: object) -> None:
        write_meta(self._db, key, value)

    def close(self) -> None:
        """Write everything held (buffer, acknowledgements, an open group) and close."""
        try:
            self.flush()
            self.save_acks()
            self.commit_group()
            if self._background_sync and self.synced_gen < self.commit_gen:
                self.sync_wal()
        finally:
            self._db.close()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None


@contextmanager
def _suppress_sqlite() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error:
        pass
