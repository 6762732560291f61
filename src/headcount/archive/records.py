"""An event read for archiving: its logical records, rebuilt from its raw rows.

The raw rows (:class:`~headcount.store.EventRows`: log, pending entries,
signed heads, snapshot, compaction horizons) come from
:meth:`headcount.store.StoreFile.event_rows`, read in one read transaction
of a read-only connection of their own, never the writer's, so archiving
works while the daemon runs. :func:`load_event` rebuilds the event's
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

from collections.abc import Iterable, Iterator
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
from headcount.store.eventrows import EventRows

TYPE_ORDER = ("participant", "config", "scan", "attendance", "conflict", "resolution")
KINDS: dict[str, frozenset[str]] = {
    "attendance": frozenset({"scan", "attendance"}),
    "participants": frozenset({"participant"}),
    "configuration": frozenset({"config"}),
    "conflicts": frozenset({"conflict", "resolution"}),
}


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
