"""Classifying the errors SQLite raises, for callers outside the store package
(which never import :mod:`sqlite3` themselves)."""

from __future__ import annotations

import sqlite3

_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL: "database or disk is full"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite failing a write for lack of space (``SQLITE_FULL``).

    Any store write (a :class:`~headcount.store.Store` or a
    :class:`~headcount.store.dbfile.StoreFile`) may raise it as
    :class:`sqlite3.OperationalError`; callers turn it into their own
    "disk full" error.
    """
    return (
        isinstance(exc, sqlite3.OperationalError)
        and getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
    )
