"""The ``meta`` table: a few named values of a store (``hlc``: the hybrid
clock's high-water mark; the events a restore left to rejoin), read and
written on any connection to its file (a :class:`~headcount.store.Store`'s
or a :class:`~headcount.store.dbfile.StoreFile`'s)."""

from __future__ import annotations

import sqlite3


def read_meta(db: sqlite3.Connection, key: str, default: object = None) -> object:
    """The metadata value stored under ``key`` in the store ``db``, else ``default``."""
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return default if row is None else row[0]


def read_int_meta(db: sqlite3.Connection, key: str) -> int:
    """The number stored under ``key`` in the store ``db`` (0 if none)."""
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return 0 if row is None else int(row[0] or 0)


def write_meta(db: sqlite3.Connection, key: str, value: object) -> None:
    """Store a metadata value (a string, number or bytes) in ``db`` (the caller commits)."""
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))
