"""Durable storage: the store interface every driver uses, the SQLite (WAL)
implementation, its migrations, the relay's audit trail, and the read-only
access backups and archives need. Every SQL statement of the project lives
in this package (checked by tests/test_layers.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headcount._lazy import exports

if TYPE_CHECKING:
    from .audit import AuditLog, AuditRecord
    from .interface import LogStore
    from .log import Durability, Snapshot
    from .peers import Horizon
    from .sqlite import DB_FILE, Store

__all__ = [
    "DB_FILE",
    "AuditLog",
    "AuditRecord",
    "Durability",
    "Horizon",
    "LogStore",
    "Snapshot",
    "Store",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        ".interface": ["LogStore"],
        ".log": ["Durability", "Snapshot"],
        ".peers": ["Horizon"],
        ".sqlite": ["DB_FILE", "Store"],
        ".audit": ["AuditLog", "AuditRecord"],
    },
)
