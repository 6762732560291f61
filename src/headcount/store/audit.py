"""The audit trail of sync requests, in its own SQLite file.

One row per ``POST /api/attendance/sync`` that reached the handler: who
(``user``, ``role``), what (``records``, ``synced``, ``conflicts``,
``errors``), when (``at_ms``), from which devices (``devices``), the request
id and the outcome (``ok`` or the error code of a refused request). Rows are
committed before the response is sent.
"""

from __future__ import annotations

import json
import sqlite3
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
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_audit_user ON sync_audit(user, at_ms);
"""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited sync request. ``user`` is None if authentication failed."""

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

    def record(self, row: AuditRecord) -> None:
        """Append ``row`` durably."""
        self._db.execute(
            "INSERT INTO sync_audit (request_id, at_ms, user, role, devices, records, synced,"
            " conflicts, errors, status, outcome) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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
            ),
        )

    def query(
        self,
        *,
        user: str | None = None,
        outcome: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Rows matching every given filter, oldest first, at most ``limit``.

        ``since_ms`` is inclusive, ``until_ms`` exclusive.
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
        sql = "SELECT request_id, at_ms, user, role, devices, records, synced, conflicts, errors,"
        sql += " status, outcome FROM sync_audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id LIMIT ?"
        rows = self._db.execute(sql, [*args, limit]).fetchall()
        return [AuditRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), *r[5:]) for r in rows]

    def close(self) -> None:
        """Close the database. Idempotent."""
        self._db.close()
