"""An event read for archiving: its raw rows in one snapshot, and its logical records.

:func:`read_rows` reads everything the store holds of one event (log,
pending entries, signed heads, snapshot, compaction horizons) inside one
read transaction of its own read-only connection, never the writer's, so
it works while the daemon runs. :func:`load_event` rebuilds the event's
document from those rows alone, so the logical records and the raw rows of
an archive always describe the same state.

The logical records (:func:`logical_records`) are the per-kind exports
of a backup (the lines of :mod:`headcount.backup.exports`) plus the
conflicts and resolutions, each with a ``time_ms``:

| type | time_ms |
|---|---|
| ``scan`` | the scan's time (``ts_ms``) |
| ``attendance`` | the time of the check-in chosen by policy (else the first scan) |
| ``participant`` | the wall time of the participant's newest edit |
| ``config`` | the wall time of the key's newest write |
| ``conflict`` | the wall time of the newest competing write |
| ``resolution`` | when the admin resolved it |
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from headcount.backup.exports import (
    attendance_record,
    config_record,
    participant_record,
    scan_record,
)
from headcount.core.errors import RemoteProtocolError, StoreError
from headcount.core.event import Event
from headcount.core.eventdoc import CONFIG, PARTICIPANT, EventDoc, record_key
from headcount.core.hlc import HybridClock, wall_ms

Row = tuple[str, int, int, bytes, bytes, bytes]  # device, seq, hlc, update, prev, hash
TYPE_ORDER = ("participant", "config", "scan", "attendance", "conflict", "resolution")
KINDS: dict[str, frozenset[str]] = {
    "attendance": frozenset({"scan", "attendance"}),
    "participants": frozenset({"participant"}),
    "configuration": frozenset({"config"}),
    "conflicts": frozenset({"conflict", "resolution"}),
}


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
        return max((wall_ms(r[2]) for r in (*self.log, *self.pending)), default=0)

    @property
    def live_bytes(self) -> int:
        """Bytes of Y updates and snapshot held in the live store."""
        rows = sum(len(r[3]) for r in (*self.log, *self.pending))
        return rows + len(self.snapshot or b"")


def newest_logged_ms(db: sqlite3.Connection, event: str) -> int:
    """The wall time of the event's newest log entry (0 if none): a cheap lower
    bound of its newest record time."""
    row = db.execute(
        "SELECT max(hlc) FROM (SELECT hlc FROM log WHERE event=? "
        "UNION ALL SELECT hlc FROM pending WHERE event=?)",
        (event, event),
    ).fetchone()
    return wall_ms(int(row[0] or 0))


def read_rows(db: sqlite3.Connection, event: str) -> EventRows:
    """Read every row of ``event`` in one read transaction of ``db`` (read-only).

    Raises:
        StoreError: no such event.
    """
    db.execute("BEGIN")
    try:
        found = db.execute("SELECT created_ms FROM events WHERE event=?", (event,)).fetchone()
        if found is None:
            raise StoreError(f"no event {event!r} in the store", code="not_found")
        rows = EventRows(event, int(found[0]))
        snap = db.execute("SELECT upto, state FROM snapshots WHERE event=?", (event,)).fetchone()
        upto = -1
        if snap is not None:
            upto, rows.snapshot = int(snap[0]), bytes(snap[1])
        columns = "device, seq, hlc, upd, prev, hash"
        log = f"SELECT id, {columns} FROM log WHERE event=? ORDER BY id"
        for row_id, *rest in db.execute(log, (event,)):
            if row_id <= upto:
                rows.tail_from += 1
            rows.log.append(_row(rest))
        pending = f"SELECT {columns} FROM pending WHERE event=? ORDER BY device, seq"
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
    finally:
        db.execute("COMMIT")
    return rows


def _row(values: list[Any]) -> Row:
    device, seq, hlc, upd, prev, digest = values
    return (str(device), int(seq), int(hlc), bytes(upd), bytes(prev or b"\0" * 32), bytes(digest))


def load_event(rows: EventRows, device: str, role: str) -> Event:
    """The event as its rows describe it (snapshot, log tail, pending entries).

    Raises:
        StoreError: the rows do not decode.
    """
    doc = EventDoc(rows.event, device, role, HybridClock(0), role_of=rows.roles.get)
    updates = [rows.snapshot] if rows.snapshot is not None else []
    tail = rows.log[rows.tail_from :] if rows.snapshot is not None else rows.log
    try:
        doc.load([*updates, *(r[3] for r in tail)])
        for r in rows.pending:
            doc.apply_remote(r[3])
    except RemoteProtocolError as exc:
        raise StoreError(f"event {rows.event!r} does not decode: {exc.message}") from None
    return Event(doc)


def logical_records(ev: Event) -> list[dict[str, Any]]:
    """Every record of the event (see the module docstring), ordered by time."""
    out = [*_participants(ev), *_config(ev), *_attendance(ev), *_conflicts(ev)]
    out.sort(key=_order)
    return out


def _participants(ev: Event) -> Iterator[dict[str, Any]]:
    for p in ev.participants(include_deleted=True):
        entries = ev.doc.records.get(record_key(PARTICIPANT, p.id), {}).values()
        yield {**participant_record(ev, p), "time_ms": _newest(e.hlc for e in entries)}


def _config(ev: Event) -> Iterator[dict[str, Any]]:
    for key, value in ev.config().items():
        entries = ev.doc.records.get(record_key(CONFIG, key), {}).values()
        yield {**config_record(ev, key, value), "time_ms": _newest(e.hlc for e in entries)}


def _attendance(ev: Event) -> Iterator[dict[str, Any]]:
    for att in ev.attendance_list():
        for scan in att.scans:
            yield {**scan_record(ev, scan), "time_ms": scan.ts_ms}
        chosen = att.check_in or (att.scans[0] if att.scans else None)
        time_ms = chosen.ts_ms if chosen else 0
        yield {**attendance_record(ev, att), "time_ms": time_ms}


def _conflicts(ev: Event) -> Iterator[dict[str, Any]]:
    for c in ev.conflicts():
        time_ms = _newest(x.hlc for x in c.candidates)
        yield {"type": "conflict", "event": ev.id, **c.to_dict(), "time_ms": time_ms}
    for r in ev.resolutions():
        time_ms = wall_ms(int(r.get("at", 0)))
        yield {"type": "resolution", "event": ev.id, "record": r, "time_ms": time_ms}


def _newest(hlcs: Iterable[int]) -> int:
    return wall_ms(max(hlcs, default=0))


def _order(record: dict[str, Any]) -> tuple[int, int, str]:
    key = record.get("id") or record.get("key") or record.get("participant") or ""
    return (record["time_ms"], TYPE_ORDER.index(record["type"]), str(key))
