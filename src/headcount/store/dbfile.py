"""A store's SQLite file opened directly, without a :class:`~headcount.store.Store`.

Backups and archives never go through the writer's connection: they open
their own, read-only, so they work while the gate daemon or the relay holds
the data directory. In WAL mode a reader sees one consistent snapshot for
the length of its read transaction (:meth:`StoreFile.snapshot`), and the
online backup API (:func:`copy_store`) copies the database as of one such
snapshot.

A restore builds its store in a staged file that no :class:`Store` holds,
and writes it through a writable :class:`StoreFile`; it also checkpoints the
live file under the data directory's lock before swapping the staged one in.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

from headcount.core.errors import StoreError
from headcount.core.files import OPEN_TO_OTHERS, create_private_file, tighten_private_file

from . import deltarows, eventrows
from .deltarows import DeltaRows
from .eventrows import EventRows
from .eventstate import EventState, chain_tip, event_states, hash_at
from .meta import read_meta, write_meta
from .peers import Archived, read_acks, read_archived, read_public_key

STORE_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")  # the database and SQLite's companions

log = logging.getLogger(__name__)


class StoreFile:
    """A direct connection to a store's SQLite file (see the module docstring).

    Open with :meth:`open_read_only` or :meth:`open_writable`; use as a
    context manager (closed on exit). Reads outside :meth:`snapshot` each
    see the store as of their own statement.
    """

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        """Wrap ``db`` (opened with ``isolation_level=None``); prefer the constructors."""
        self._db = db
        self.path = path

    @classmethod
    def open_read_only(cls, path: Path) -> StoreFile:
        """A read-only connection to the store at ``path`` (it may be in use).

        Raises:
            StoreError: no store there (``not_initialised``) or it cannot be opened.
        """
        if not path.is_file():
            raise StoreError(
                f"no store at {path}: run `headcount init` first", code="not_initialised"
            )
        return cls(_connect(path, "ro", "PRAGMA query_only=1"), path)

    @classmethod
    def open_writable(cls, path: Path) -> StoreFile:
        """A writable connection to the existing file ``path``, which no
        :class:`Store` may hold: a staged restore, or the live store under the
        data directory's lock.

        Raises:
            StoreError: ``path`` cannot be opened (or does not exist).
        """
        return cls(_connect(path, "rw"), path)

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back). Idempotent."""
        self._db.close()

    def __enter__(self) -> StoreFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions -------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees the same state. Inside
        another transaction, part of it."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[None]:
        """One write transaction, committed when the block ends, rolled back
        if it raises.

        Raises:
            sqlite3.OperationalError: a write or the commit failed
                (:func:`~headcount.store.errors.is_disk_full` tells a full disk).
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- the file -------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The store's schema version (``PRAGMA user_version``)."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        """SQLite's integrity check: ``"ok"``, else the first problem found
        (a file that is no database at all included)."""
        try:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            return str(exc)

    def use_rollback_journal(self) -> None:
        """Leave WAL mode: the file is one self-contained database again."""
        self._db.execute("PRAGMA journal_mode=DELETE")

    def checkpoint(self) -> bool:
        """Copy the write-ahead log into the database file and truncate it.

        Returns:
            False if another process is reading and kept part of the log.
        """
        busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return not busy

    # -- reads ----------------------------------------------------------------

    def events(self) -> list[str]:
        """The live events, sorted."""
        return [e for (e,) in self._db.execute("SELECT event FROM events ORDER BY event")]

    def meta(self, key: str, default: object = None) -> object:
        """The metadata value stored under ``key``, else ``default``."""
        return read_meta(self._db, key, default)

    def public_key(self, device: str) -> bytes | None:
        """The public key of a known device (None: unknown)."""
        return read_public_key(self._db, device)

    def acks(self, event: str) -> dict[str, dict[str, int]]:
        """Per peer, the version vector of ``event`` it acknowledged (as
        written: a running store holds newer ones in memory until it saves them)."""
        return read_acks(self._db, event)

    def archived(self) -> Archived:
        """Archived events, ordered: ``event -> (archived_ms, location, version vector)``."""
        return read_archived(self._db)

    def event_states(self) -> dict[str, EventState]:
        """Every event's version vector and chain tips (folded entries included)."""
        return event_states(self._db)

    def hash_at(self, event: str, device: str, seq: int) -> bytes | None:
        """The hash of entry ``seq`` of ``device`` (logged, or the compaction
        anchor); None if neither is here."""
        return hash_at(self._db, event, device, seq)

    def chain_tip(self, event: str, device: str) -> tuple[int, bytes]:
        """``(seq, hash)`` of the newest entry of ``device`` (logged or folded);
        ``(0, ZERO_HASH)`` if none."""
        return chain_tip(self._db, event, device)

    def horizons(self) -> dict[str, dict[str, int]]:
        """Per event, per device, the sequence number compaction folded up to."""
        out: dict[str, dict[str, int]] = {}
        for event, device, seq in self._db.execute("SELECT event, device, seq FROM horizons"):
            out.setdefault(event, {})[device] = int(seq)
        return out

    def newest_hlc(self, event: str) -> int:
        """The clock value of the event's newest logged or pending entry (0 if none)."""
        return eventrows.newest_hlc(self._db, event)

    def event_rows(self, event: str) -> EventRows:
        """Every row of ``event``, read in one snapshot (see :class:`EventRows`).

        Raises:
            StoreError: ``not_found``: no such event.
        """
        with self.snapshot():
            return eventrows.read_event_rows(self._db, event)

    def delta_since(self, base: Mapping[str, Mapping[str, int]]) -> DeltaRows:
        """The rows beyond ``base`` (per event, a version vector; see
        :class:`DeltaRows`). Call inside :meth:`snapshot` to agree with other reads."""
        return deltarows.extract(self._db, base)

    # -- writes (inside write_transaction) -------------------------------------

    def set_meta(self, key: str, value: object) -> None:
        """Store a metadata value (a string, number or bytes)."""
        write_meta(self._db, key, value)

    def apply_delta(self, rows: DeltaRows) -> None:
        """Write ``rows`` (see :func:`~headcount.store.deltarows.apply`) inside
        the caller's :meth:`write_transaction`. Hash chains are not checked here.

        Raises:
            StoreError: ``constraint_failed``: a row does not fit the store.
        """
        deltarows.apply(self._db, rows)


def copy_store(source: Path, target: Path) -> int:
    """Copy the store at ``source`` to the new file ``target`` as one snapshot.

    The copy is left in rollback-journal mode: one self-contained file.

    Returns:
        The store's schema version (``PRAGMA user_version``).

    Raises:
        StoreError: no store at ``source``, or it cannot be opened.
    """
    try:
        create_private_file(target)
    except OSError as exc:
        raise StoreError(f"cannot create {target}: {exc.strerror}") from None
    with (
        StoreFile.open_read_only(source) as src,
        StoreFile(sqlite3.connect(target, isolation_level=None), target) as copy,
    ):
        src._db.backup(copy._db)  # all pages in one step: one read snapshot
        copy.use_rollback_journal()
        return copy.schema_version


def open_private(path: Path) -> None:
    """Make sure the store at ``path`` is 0600, before SQLite opens it: create
    it so if it does not exist (SQLite gives the ``-wal`` and ``-shm`` files
    it creates the database file's mode), and tighten it and its companions
    if group or others may access them (a store from before this check, or
    copied by hand), with a warning.

    Raises:
        StoreError: it could not be created.
    """
    try:
        create_private_file(path)
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}") from None
    tighten_store_files(path)


def tighten_store_files(path: Path) -> None:
    """Take group and other permissions off the store at ``path`` and its
    ``-wal``, ``-shm`` and ``-journal`` files, logging a warning for each
    one that had them (or could not be changed: it belongs to another user)."""
    for suffix in STORE_FILE_SUFFIXES:
        file = Path(f"{path}{suffix}")
        try:
            old = tighten_private_file(file)
        except OSError as exc:
            log.warning(
                "store file %s is accessible by other users and cannot be made private: %s",
                file,
                exc.strerror,
            )
            continue
        if old is not None:
            log.warning(
                "store file %s was accessible by other users (mode %04o): tightened to %04o",
                file,
                old,
                old & ~OPEN_TO_OTHERS,
            )


def _connect(path: Path, mode: str, *pragmas: str) -> sqlite3.Connection:
    tighten_store_files(path)
    try:
        uri = f"{path.resolve().as_uri()}?mode={mode}"
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        for pragma in pragmas:
            db.execute(pragma)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from None
    return db
