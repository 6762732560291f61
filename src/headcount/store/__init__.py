"""Durable storage: the store interface every driver uses, the SQLite (WAL)
implementation, its migrations, the relay's audit trail, and the direct
access to a store's file that backups and archives need (:class:`StoreFile`:
event states, an event's rows, the rows of an incremental). Every SQL
statement of the project lives in this package, and no other package
imports :mod:`sqlite3` (checked by tests/test_layers.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headcount._lazy import exports

if TYPE_CHECKING:
    from .audit import AuditLog, AuditRecord
    from .dbfile import StoreFile, copy_store
    from .deltarows import DeltaRows
    from .errors import is_disk_full
    from .eventrows import EventRows
    from .eventstate import EventState
    from .interface import LogStore
    from .log import Durability, Snapshot
    from .peers import Horizon
    from .sqlite import DB_FILE, Store

__all__ = [
    "DB_FILE",
    "AuditLog",
    "AuditRecord",
    "DeltaRows",
    "Durability",
    "EventRows",
    "EventState",
    "Horizon",
    "LogStore",
    "Snapshot",
    "Store",
    "StoreFile",
    "copy_store",
    "is_disk_full",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        ".interface": ["LogStore"],
        ".log": ["Durability", "Snapshot"],
        ".peers": ["Horizon"],
        ".sqlite": ["DB_FILE", "Store"],
        ".audit": ["AuditLog", "AuditRecord"],
        ".dbfile": ["StoreFile", "copy_store"],
        ".deltarows": ["DeltaRows"],
        ".errors": ["is_disk_full"],
        ".eventrows": ["EventRows"],
        ".eventstate": ["EventState"],
    },
)
