"""An event's state as a backup records it: its version vector and chain tips.

:class:`EventState` is the value; the functions read it from a store's
SQLite connection (the writer's, through :meth:`Store.event_states`, or a
direct one, through :class:`~headcount.store.dbfile.StoreFile`). Entries
folded into a snapshot by compaction count: their anchors in ``horizons``
stand for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headcount.core.chain import ZERO_HASH

if TYPE_CHECKING:
    import sqlite3


@dataclass(frozen=True, slots=True)
class EventState:
    """An event's version vector and, per device, the hash (hex) of its entry there."""

    vv: dict[str, int]
    tips: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a backup manifest records (keys sorted)."""
        return {"vv": dict(sorted(self.vv.items())), "tips": dict(sorted(self.tips.items()))}


def event_states(db: sqlite3.Connection) -> dict[str, EventState]:
    """Every event's version vector and chain tips (compacted entries included).

    Args:
        db: a connection to a store; call inside one read transaction for a
            consistent answer.

    Returns:
        Per event (sorted), its state; an event with no entries has empty maps.
    """
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
    """The hash of entry ``seq`` of ``device`` in ``event``.

    Returns:
        The hash of the logged entry or of the compaction anchor at ``seq``;
        None if neither is there.
    """
    row = db.execute(
        "SELECT hash FROM log WHERE event=? AND device=? AND seq=? UNION ALL "
        "SELECT hash FROM horizons WHERE event=? AND device=? AND seq=?",
        (event, device, seq, event, device, seq),
    ).fetchone()
    return None if row is None else bytes(row[0])


def chain_tip(db: sqlite3.Connection, event: str, device: str) -> tuple[int, bytes]:
    """The newest entry of ``device`` in ``event`` (logged or folded).

    Returns:
        ``(seq, hash)`` of that entry; ``(0, ZERO_HASH)`` if there is none.
    """
    row = db.execute(
        "SELECT max(seq) FROM (SELECT seq FROM log WHERE event=? AND device=? "
        "UNION ALL SELECT seq FROM horizons WHERE event=? AND device=?)",
        (event, device, event, device),
    ).fetchone()
    top = int(row[0] or 0)
    return top, hash_at(db, event, device, top) or ZERO_HASH
