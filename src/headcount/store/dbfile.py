"""A store's SQLite file read directly: consistent copies, vectors and chain tips.

Backups never go through the writer's connection: they open their own,
read-only, so they work while the gate daemon or the relay holds the data
directory. In WAL mode a reader sees one consistent snapshot for the length
of its read transaction, and the online backup API copies the database as
of one such snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from headcount.backup.manifest import EventState
from headcount.core.errors import StoreError

ProgressFn = Callable[[str], None]


def connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection to the store at ``path``.

    Raises:
        StoreError: no store there (``not_initialised``) or it cannot be opened.
    """
    if not path.is_file():
        raise StoreError(f"no store at {path}: run `headcount init` first", code="not_initialised")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA query_only=1")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from None
    return db


def copy_store(source: Path, target: Path) -> int:
    """Copy the store at ``source`` to the new file ``target`` as one snapshot.

    The copy is left in rollback-journal mode: one self-contained file.

    Returns:
        The store's schema version (``PRAGMA user_version``).
    """
    src = connect_ro(source)
    try:
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(dst)  # all pages in one step: one read snapshot
            dst.execute("PRAGMA journal_mode=DELETE")
            return schema_version(dst)
        finally:
            dst.close()
    finally:
        src.close()


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def event_states(db: sqlite3.Connection) -> dict[str, EventState]:
    """Every event's version vector and chain tips (compacted entries included)."""
    vv: dict[str, dict[str, int]] = {e: {} for (e,) in db.execute("SELECT event FROM events")}
    tips: dict[str, dict[str, str]] = {e: {} for e in vv}
    rows = db.execute(
        "SELECT l.event, l.device, l.seq, l.hash FROM log l JOIN "
        "(SELECT event, device, max(seq) AS top FROM log GROUP BY event, device) m "
        "ON l.event = m.event AND l.device = m.device AND l.seq = m.top"
    )
    for event, device, seq, digest in rows:
        vv.setdefault(event, {})[device] = seq
        tips.setdefault(event, {})[device] = bytes(digest).hex()
    for event, device, seq, digest in db.execute("SELECT event, device, seq, hash FROM horizons"):
        if seq > vv.setdefault(event, {}).get(device, 0):
            vv[event][device] = seq
            tips.setdefault(event, {})[device] = bytes(digest).hex()
    return {e: EventState(vv[e], tips.get(e, {})) for e in sorted(vv)}


def hash_at(db: sqlite3.Connection, event: str, device: str, seq: int) -> bytes | None:
    """The hash of entry ``seq`` of ``device`` (logged, or the compaction anchor)."""
    row = db.execute(
        "SELECT hash FROM log WHERE event=? AND device=? AND seq=? UNION ALL "
        "SELECT hash FROM horizons WHERE event=? AND device=? AND seq=?",
        (event, device, seq, event, device, seq),
    ).fetchone()
    return None if row is None else bytes(row[0])
