"""Everything a store holds of one event, as raw rows: what an archive keeps.

:func:`read_event_rows` reads the event's log, pending entries, signed heads,
snapshot and compaction horizons (and the roles of the known devices);
:class:`~headcount.store.dbfile.StoreFile` calls it inside one read
transaction, so the rows describe one state of the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headcount.core.chain import ZERO_HASH
from headcount.core.errors import StoreError
from headcount.core.hlc import wall_ms

if TYPE_CHECKING:
    import sqlite3

Row = tuple[str, int, int, bytes, bytes, bytes]  # device, seq, hlc, update, prev, hash
_COLUMNS = "device, seq, hlc, upd, prev, hash"


@dataclass(slots=True)
class EventRows:
    """Everything the store holds of one event, as read in one transaction."""

    event: str
    created_ms: int
    log: list[Row] = field(default_factory=list)  # in the order they were applied here
    tail_from: int = 0  # log[tail_from:] are the entries after the snapshot
    pending: list[Row] = field(default_factory=list)
    heads: list[tuple[str, int, bytes, bytes]] = field(default_factory=list)
    snapshot: bytes | None = None
    horizons: list[tuple[str, int, bytes]] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)  # every known device's role

    @property
    def vv(self) -> dict[str, int]:
        """The event's version vector (logged and folded entries)."""
        vv = {d: s for d, s, _ in self.horizons}
        for device, seq, *_ in self.log:
            vv[device] = max(vv.get(device, 0), seq)
        return dict(sorted(vv.items()))

    @property
    def newest_hlc_ms(self) -> int:
        """The wall time of the newest logged or pending entry (0 if none)."""
        return max((wall_ms(r[2]) for r in (*self.log, *self.pending)), default=0)

    @property
    def live_bytes(self) -> int:
        """Bytes of Y updates and snapshot held in the live store."""
        rows = sum(len(r[3]) for r in (*self.log, *self.pending))
        return rows + len(self.snapshot or b"")


def read_event_rows(db: sqlite3.Connection, event: str) -> EventRows:
    """Every row of ``event``. Call inside one read transaction.

    Raises:
        StoreError: ``not_found``: no such event.
    """
    found = db.execute("SELECT created_ms FROM events WHERE event=?", (event,)).fetchone()
    if found is None:
        raise StoreError(f"no event {event!r} in the store", code="not_found")
    rows = EventRows(event, int(found[0]))
    snap = db.execute("SELECT upto, state FROM snapshots WHERE event=?", (event,)).fetchone()
    upto = -1
    if snap is not None:
        upto, rows.snapshot = int(snap[0]), bytes(snap[1])
    log = f"SELECT id, {_COLUMNS} FROM log WHERE event=? ORDER BY id"
    for row_id, *rest in db.execute(log, (event,)):
        if row_id <= upto:
            rows.tail_from += 1
        rows.log.append(_row(rest))
    pending = f"SELECT {_COLUMNS} FROM pending WHERE event=? ORDER BY device, seq"
    rows.pending = [_row(list(r)) for r in db.execute(pending, (event,))]
    rows.heads = [
        (d, int(s), bytes(h), bytes(sig))
        for d, s, h, sig in db.execute(
            "SELECT device, seq, hash, sig FROM heads WHERE event=? ORDER BY device, seq",
            (event,),
        )
    ]
    rows.horizons = [
        (d, int(s), bytes(h))
        for d, s, h in db.execute(
            "SELECT device, seq, hash FROM horizons WHERE event=? ORDER BY device", (event,)
        )
    ]
    rows.roles = dict(db.execute("SELECT device, role FROM devices").fetchall())
    return rows


def newest_hlc(db: sqlite3.Connection, event: str) -> int:
    """The clock value of the event's newest logged or pending entry (0 if none)."""
    row = db.execute(
        "SELECT max(hlc) FROM (SELECT hlc FROM log WHERE event=? "
        "UNION ALL SELECT hlc FROM pending WHERE event=?)",
        (event, event),
    ).fetchone()
    return int(row[0] or 0)


def _row(values: list[Any]) -> Row:
    device, seq, hlc, upd, prev, digest = values
    return (str(device), int(seq), int(hlc), bytes(upd), bytes(prev or ZERO_HASH), bytes(digest))
