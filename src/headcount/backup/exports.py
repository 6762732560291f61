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

from ..event import Event
from ..eventdoc import CONFIG, CONFIG_FIELD, SCHEMA_KEY
from ..replica import Replica
from .errors import CORRUPT, BackupError
from .manifest import Kind

LINES_PER_WRITE = 2000


def export_lines(replica: Replica, kind: Kind, events: Iterable[str]) -> Iterator[bytes]:
    """The JSON lines of ``kind`` for ``events``, in batches of encoded bytes."""
    batch: list[str] = []
    for event_id in events:
        ev = replica.event(event_id)
        for record in _records(ev, kind):
            batch.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
            if len(batch) >= LINES_PER_WRITE:
                yield ("\n".join(batch) + "\n").encode("utf-8")
                batch.clear()
    if batch:
        yield ("\n".join(batch) + "\n").encode("utf-8")


def _records(ev: Event, kind: Kind) -> Iterator[dict[str, Any]]:
    schema_ext = ev.doc.field_value(CONFIG, SCHEMA_KEY, CONFIG_FIELD)[0]
    yield {
        "type": "event",
        "event": ev.id,
        "name": ev.name,
        "schema": json.loads(schema_ext) if isinstance(schema_ext, str) else {},
    }
    if kind is Kind.PARTICIPANTS:
        for p in ev.participants(include_deleted=True):
            yield {
                "type": "participant",
                "event": ev.id,
                "id": p.id,
                "fields": p.fields,
                "deleted": p.deleted,
                "conflicted": list(p.conflicted),
            }
    elif kind is Kind.ATTENDANCE:
        for att in ev.attendance_list():
            for scan in att.scans:
                yield {"type": "scan", "event": ev.id, "hlc": scan.hlc, **scan.to_dict()}
            yield {"type": "attendance", "event": ev.id, **att.to_dict()}
    elif kind is Kind.CONFIGURATION:
        for key, value in ev.config().items():
            yield {"type": "config", "event": ev.id, "key": key, "value": value}


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
