"""The audit trail of sync requests, in its own SQLite file.

One row per ``POST /api/attendance/sync`` that reached the handler: who
(``user``, ``role``), what (``records``, ``synced``, ``conflicts``,
``errors``), when (``at_ms``), from which devices (``devices``), the request
id and the outcome (``ok`` or the error code of a refused request). Rows are
committed before the response is sent.

Each row names the events it concerns (``events``, a JSON list; empty for a
row tied to none) and the client's address (``source``), so that a reader
can be shown only the rows of the events its grant covers
(:meth:`AuditLog.query` with ``events``). Files written before these columns
existed gain them on open; their rows concern no event.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    user TEXT,
    role TEXT,
    devices TEXT NOT NULL,
    records INTEGER NOT NULL,
    synced INTEGER NOT NULL,
    conflicts INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    events TEXT NOT NULL DEFAULT '[]',
    source TEXT
);
CREATE INDEX IF NOT EXISTS sync_audit_user ON sync_audit(user, at_ms);
"""
# Columns added after the first release, with their definitions (added on open).
_ADDED = {"events": "TEXT NOT NULL DEFAULT '[]'", "source": "TEXT"}
# A row is in scope when it names at least one event and every one is granted.
_IN_SCOPE = (
    "json_array_length(events) > 0 AND NOT EXISTS (SELECT 1 FROM json_each(sync_audit.events)"
    " WHERE value NOT IN (SELECT value FROM json_each(?)))"
)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited sync request. ``user`` is None if authentication failed;
    ``events`` the events it concerns (empty: none); ``source`` the client's
    address, if known."""

    request_id: str
    at_ms: int
    user: str | None
    role: str | None
    devices: tuple[str, ...]
    records: int
    synced: int
    conflicts: int
    errors: int
    status: int
    outcome: str
    events: tuple[str, ...] = ()
    source: str | None = None


class AuditLog:
    """Append-only audit rows in ``path`` (``":memory:"`` for tests).

    Raises:
        sqlite3.Error: the file cannot be opened (at construction).
    """

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(sync_audit)")}
        for column, definition in _ADDED.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE sync_audit ADD COLUMN {column} {definition}")

    def record(self, row: AuditRecord) -> None:
        """Append ``row`` durably."""
        self._db.execute(
            "INSERT INTO sync_audit (request_id, at_ms, user, role, devices, records, synced,"
            " conflicts, errors, status, outcome, events, source)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                row.request_id,
                row.at_ms,
                row.user,
                row.role,
                json.dumps(list(row.devices)),
                row.records,
                row.synced,
                row.conflicts,
                row.errors,
                row.status,
                row.outcome,
                json.dumps(list(row.events)),
                row.source,
            ),
        )

    def query(
        self,
        *,
        user: str | None = None,
        outcome: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        events: Collection[str] | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Rows matching every given filter, oldest first, at most ``limit``.

        ``since_ms`` is inclusive, ``until_ms`` exclusive. ``events`` (None:
        no restriction) keeps only the rows that name at least one event and
        no event outside it.
        """
        where, args = [], []
        for clause, value in (
            ("user = ?", user),
            ("outcome = ?", outcome),
            ("at_ms >= ?", since_ms),
            ("at_ms < ?", until_ms),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        if events is not None:
            where.append(_IN_SCOPE)
            args.append(json.dumps(sorted(events)))
        sql = "SELECT request_id, at_ms, user, role, devices, records, synced, conflicts, errors,"
        sql += " status, outcome, events, source FROM sync_audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id LIMIT ?"
        rows = self._db.execute(sql, [*args, limit]).fetchall()
        return [
            AuditRecord(
                request_id=r[0],
                at_ms=r[1],
                user=r[2],
                role=r[3],
                devices=tuple(json.loads(r[4])),
                records=r[5],
                synced=r[6],
                conflicts=r[7],
                errors=r[8],
                status=r[9],
                outcome=r[10],
                events=tuple(json.loads(r[11])),
                source=r[12],
            )
            for r in rows
        ]

    def close(self) -> None:
        """Close the database. Idempotent."""
        self._db.close()
