"""The store's SQLite schema and its migrations.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS`
``[n]`` upgrades version ``n`` to ``n + 1`` and :data:`FIXUPS` holds the data
rewrites some of them need. A store written by a newer headcount (a version
above ``len(MIGRATIONS)``) is refused, never downgraded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from headcount.core.chain import ZERO_HASH, entry_hash
from headcount.core.model import LogEntry

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE events (event TEXT PRIMARY KEY, created_ms INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE log (
        id INTEGER PRIMARY KEY,
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hlc INTEGER NOT NULL,
        upd BLOB NOT NULL,
        UNIQUE (event, device, seq)
    );
    CREATE TABLE snapshots (
        event TEXT PRIMARY KEY,
        upto INTEGER NOT NULL,
        state BLOB NOT NULL,
        sha256 BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE pending (
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hlc INTEGER NOT NULL,
        upd BLOB NOT NULL,
        PRIMARY KEY (event, device, seq)
    ) WITHOUT ROWID;
    """,
    # 2: hash chains, signed heads, known devices, quarantined equivocators
    """
    ALTER TABLE log ADD COLUMN prev BLOB;
    ALTER TABLE log ADD COLUMN hash BLOB;
    ALTER TABLE pending ADD COLUMN prev BLOB;
    ALTER TABLE pending ADD COLUMN hash BLOB;
    CREATE TABLE heads (
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        sig BLOB NOT NULL,
        PRIMARY KEY (event, device, seq)
    ) WITHOUT ROWID;
    CREATE TABLE devices (
        device TEXT PRIMARY KEY,
        public_key BLOB NOT NULL,
        role TEXT NOT NULL,
        added_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE quarantine (
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        detected_ms INTEGER NOT NULL,
        PRIMARY KEY (event, device)
    ) WITHOUT ROWID;
    """,
    # 3: compaction: what peers acknowledged, and what was folded into snapshots
    """
    CREATE TABLE peer_acks (
        peer TEXT NOT NULL,
        event TEXT NOT NULL,
        vv BLOB NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (peer, event)
    ) WITHOUT ROWID;
    CREATE TABLE horizons (
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (event, device)
    ) WITHOUT ROWID;
    """,
    # 4: the certificate that vouched for each known device (relayed to peers)
    """
    ALTER TABLE devices ADD COLUMN cert BLOB;
    """,
    # 5: events moved out of the live store into archive files
    """
    CREATE TABLE archived (
        event TEXT PRIMARY KEY,
        archived_ms INTEGER NOT NULL,
        location TEXT NOT NULL,
        vv BLOB NOT NULL
    ) WITHOUT ROWID;
    """,
    # 6: the organisation's signed revocation records (verified before they
    # are written; kept in the order they were learnt, never deleted)
    """
    CREATE TABLE revocations (
        id INTEGER PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE,
        body BLOB NOT NULL,
        sig BLOB NOT NULL,
        cert BLOB,
        added_ms INTEGER NOT NULL
    );
    """,
]


def _chain_existing_log(db: sqlite3.Connection) -> None:
    """Migration 2: give entries written before hash chains their prev/hash."""
    last: dict[tuple[str, str], bytes] = {}
    rows = db.execute(
        "SELECT id, event, device, seq, hlc, upd FROM log ORDER BY event, device, seq"
    )
    for row_id, event, device, seq, hlc, upd in rows.fetchall():
        prev = last.get((event, device), ZERO_HASH)
        entry = LogEntry(event, device, seq, hlc, bytes(upd), prev)
        digest = entry_hash(entry)
        db.execute("UPDATE log SET prev=?, hash=? WHERE id=?", (prev, digest, row_id))
        last[(event, device)] = digest


FIXUPS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _chain_existing_log}
