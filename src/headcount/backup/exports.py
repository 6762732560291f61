"""Logical exports for the per-kind backups: one JSON object per line.

Every event starts with an ``event`` line (its name and schema extension, so
that a restore onto a device without the event can create it), then:

- participants: ``participant`` lines with every field, the deleted flag and
  the fields in conflict (those read as ``null`` until an admin resolves them);
- attendance: ``scan`` lines (id, participant, kind, time, gate, method,
  device, HLC) and the derived ``attendance`` record of each participant;
- configuration: ``config`` lines, one per key.

The export is read from a consistent copy of the store (see
:mod:`.create`), never from the live writer's state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from headcount.core.event import Event
from headcount.core.eventdoc import CONFIG, CONFIG_FIELD, SCHEMA_KEY
from headcount.core.model import Attendance, Participant, Scan
from headcount.replica.replica import Replica

from .errors import CORRUPT, BackupError
from .manifest import Kind

LINES_PER_WRITE = 2000


def export_lines(replica: Replica, kind: Kind, events: Iterable[str]) -> Iterator[bytes]:
    """The JSON lines of ``kind`` for ``events``, in batches of encoded bytes."""
    return json_lines(record for e in events for record in _records(replica.event(e), kind))


def json_lines(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """``records`` as JSON lines (sorted keys, UTF-8), :data:`LINES_PER_WRITE` lines
    to a batch of encoded bytes (the archive's records payload is written so too)."""
    batch: list[str] = []
    for record in records:
        batch.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
        if len(batch) >= LINES_PER_WRITE:
            yield ("\n".join(batch) + "\n").encode("utf-8")
            batch.clear()
    if batch:
        yield ("\n".join(batch) + "\n").encode("utf-8")


def _records(ev: Event, kind: Kind) -> Iterator[dict[str, Any]]:
    yield {"type": "event", "event": ev.id, **event_header(ev)}
    if kind is Kind.PARTICIPANTS:
        for p in ev.participants(include_deleted=True):
            yield participant_record(ev, p)
    elif kind is Kind.ATTENDANCE:
        for att in ev.attendance_list():
            for scan in att.scans:
                yield scan_record(ev, scan)
            yield attendance_record(ev, att)
    elif kind is Kind.CONFIGURATION:
        for key, value in ev.config().items():
            yield config_record(ev, key, value)


def event_header(ev: Event) -> dict[str, Any]:
    """The event's name and schema extension (a restore re-creates it from them)."""
    schema_ext = ev.doc.field_value(CONFIG, SCHEMA_KEY, CONFIG_FIELD)[0]
    return {
        "name": ev.name,
        "schema": json.loads(schema_ext) if isinstance(schema_ext, str) else {},
    }


def participant_record(ev: Event, p: Participant) -> dict[str, Any]:
    """A ``participant`` line: every field, the deleted flag, the fields in conflict."""
    return {
        "type": "participant",
        "event": ev.id,
        "id": p.id,
        "fields": p.fields,
        "deleted": p.deleted,
        "conflicted": list(p.conflicted),
    }


def scan_record(ev: Event, scan: Scan) -> dict[str, Any]:
    """A ``scan`` line: the scan and its HLC."""
    return {"type": "scan", "event": ev.id, "hlc": scan.hlc, **scan.to_dict()}


def attendance_record(ev: Event, att: Attendance) -> dict[str, Any]:
    """An ``attendance`` line: a participant's attendance as derived from the scans."""
    return {"type": "attendance", "event": ev.id, **att.to_dict()}


def config_record(ev: Event, key: str, value: Any) -> dict[str, Any]:
    """A ``config`` line: one configuration key."""
    return {"type": "config", "event": ev.id, "key": key, "value": value}


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """The records of an export.

    Raises:
        BackupError: ``backup_corrupt`` (not JSON lines of records).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BackupError("the export is not UTF-8 text", code=CORRUPT) from None
    out = []
    # Only "\n" ends a line: str.splitlines() would also split inside values
    # (U+0085, U+2028, ... are legal unescaped in JSON strings).
    lines = text.split("\n")
    if lines[-1]:
        raise BackupError("the export does not end with a complete line", code=CORRUPT)
    for n, line in enumerate(lines[:-1], 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("event"), str):
                raise ValueError("not a record")
        except ValueError as exc:
            raise BackupError(
                f"line {n} of the export is not a record: {exc}", code=CORRUPT
            ) from None
        out.append(record)
    return out
