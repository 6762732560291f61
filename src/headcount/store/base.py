"""What the parts of :class:`~headcount.store.Store` share.

:class:`~headcount.store.log.LogTables` and
:class:`~headcount.store.peers.PeerTables` work on the connection and the
caches that :class:`~headcount.store.Store` (``sqlite.py``) creates, inside
the transactions it owns, and call each other's methods. :class:`StoreBase`,
which both inherit, declares that state and those methods so that each part
type-checks on its own.

It costs nothing at run time: the annotations create no class attribute, and
the methods are declared for the type checker only, so the class is empty
and every lookup still finds the one real definition (``Store.__init__``
sets the state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
    from contextlib import AbstractContextManager

    from headcount.core.model import LogEntry

    from .log import Durability
    from .peers import Archived, Horizon


class StoreBase:
    """The state and the methods the parts of the store share."""

    _db: sqlite3.Connection
    durability: Durability

    # Entries buffered with durability ``off`` (until ``flush``): the entries,
    # their clock mark, their version vector per event, and each entry by
    # (event, device, seq) for ``hash_of``.
    _buffer: list[LogEntry]
    _buffer_hlc: int
    _buffer_vv: dict[str, dict[str, int]]
    _buffer_hash: dict[tuple[str, str, int], LogEntry]

    # Caches (see the ``sqlite`` module docstring); any rollback drops them.
    _vv: dict[str, dict[str, int]]  # per event: highest logged seq per device
    _horizons: dict[str, Horizon]
    _quarantined: dict[str, set[str]]
    _events: set[str] | None
    _pending: dict[str, set[tuple[str, int]]]  # per event, (device, seq) pending
    _keys: dict[str, bytes | None]  # public keys by device
    _certs: dict[str, bytes] | None  # certificates by device
    _hlc: int | None  # the clock high-water mark stored
    _archived: Archived | None

    _acks: dict[tuple[str, str], tuple[dict[str, int], int]]  # not yet written
    _group_open: bool  # a commit group is open (see ``Store.deferred``)

    if TYPE_CHECKING:
        # Store (sqlite.py): transactions and metadata.
        def transaction(self) -> AbstractContextManager[None]: ...
        def deferred(self) -> AbstractContextManager[None]: ...
        def _touch(self, *events: str | None) -> None: ...
        def _set_meta(self, key: str, value: object) -> None: ...

        # LogTables (log.py).
        def flush(self) -> None: ...
        def _event_set(self) -> set[str]: ...
        def version_vector(self, event: str) -> dict[str, int]: ...
        def last_log_id(self, event: str) -> int: ...
        def _put_snapshot(self, event: str, upto: int, state: bytes, created_ms: int) -> None: ...

        # PeerTables (peers.py).
        def horizon(self, event: str) -> Horizon: ...
        def archived(self) -> Archived: ...
