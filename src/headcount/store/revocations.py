"""The organisation's signed revocation records, as this device keeps them
(a mixin of :class:`~headcount.store.Store`; see
:class:`~headcount.store.base.StoreBase` for what the parts share).

The store keeps the bytes as they were signed and received; it neither
parses nor verifies them: the caller verified each record before adding it
(``headcount.pki.revocation_book``), and rebuilds the list in force from
them when it starts. Rows are never deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from .base import StoreBase

RevocationRow = tuple[bytes, bytes, bytes, bytes]
"""``(digest, body, sig, cert)``; ``cert`` is empty for a record the CA signed."""

INSERT_REVOCATION = (
    "INSERT INTO revocations(digest, body, sig, cert, added_ms) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(digest) DO NOTHING"
)


class RevocationTables(StoreBase):
    """The ``revocations`` table."""

    def add_revocations(self, rows: Iterable[RevocationRow], now_ms: int) -> int:
        """Keep verified records (those already here are ignored), durably;
        returns how many were new."""
        added = 0
        with self.transaction():
            self._touch(None)
            for digest, body, sig, cert in rows:
                cur = self._db.execute(INSERT_REVOCATION, (digest, body, sig, cert or None, now_ms))
                added += cur.rowcount
        return added

    def revocations(self) -> list[RevocationRow]:
        """Every record kept, in the order they were added."""
        return read_revocations(self._db)


def read_revocations(db: sqlite3.Connection) -> list[RevocationRow]:
    """The revocation records in the store ``db``, in the order they were added."""
    rows = db.execute("SELECT digest, body, sig, cert FROM revocations ORDER BY id")
    return [(bytes(d), bytes(b), bytes(s), b"" if c is None else bytes(c)) for d, b, s, c in rows]


__all__ = ["INSERT_REVOCATION", "RevocationRow", "RevocationTables", "read_revocations"]
