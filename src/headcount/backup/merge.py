"""Restoring a per-kind backup: a merge into the live replica through its write API.

Going through :class:`~headcount.replica.Replica` (never the database) makes
the merge safe to repeat and safe to run against data that moved on:

- a scan whose idempotency key the replica holds is a no-op, so nothing is
  counted twice, however often the same backup is restored;
- a participant deleted in the live data stays deleted (the replica refuses
  edits to it), so nothing deleted since the backup comes back;
- by default only what the live data lacks is written (missing
  participants, fields and configuration keys); ``overwrite`` also writes
  the backup's value where the live one differs. Fields in conflict, in the
  backup or live, are never written: an admin resolves them.
- configuration is authority data: only an admin or relay may restore it,
  or create an event the live data lacks; and only they record scans under
  another device's name, so a gate restoring an attendance backup skips
  (and reports) other devices' scans: their peers would refuse them.

Every write is an ordinary local write of this device, replicated as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from headcount.core.errors import LocalProtocolError, PermissionDeniedError, StoreError
from headcount.replica.replica import Replica

from .errors import CORRUPT, BackupError
from .manifest import Kind

MAX_REASONS = 100
ProgressFn = Callable[[str], None]


@dataclass(slots=True)
class MergeReport:
    """What a per-kind restore wrote."""

    events_created: list[str] = field(default_factory=list)
    written: int = 0
    unchanged: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "events_created": self.events_created,
            "written": self.written,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "reasons": self.reasons,
        }


def merge(
    replica: Replica,
    kind: Kind,
    records: Iterable[dict[str, Any]],
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> MergeReport:
    """Merge the records of a ``kind`` export into ``replica``.

    Raises:
        PermissionDeniedError: configuration onto a gate, or onto a gate an
            event it does not hold (only an authority creates events);
            checked before anything is written.
        StoreError: an event awaits rejoin (``rejoin_pending``), or a write failed.
        InputError: participants that the live event's schema refuses.
    """
    if kind is Kind.CONFIGURATION and not replica.role.is_authority:
        raise PermissionDeniedError(
            f"configuration is authority data: restore it on an admin or relay device "
            f"(this is a {replica.role})"
        )
    headers, by_event = _by_event(records)
    pending = sorted(set(headers) & set(getattr(replica, "rejoin_pending", ())))
    if pending:
        raise StoreError(
            f"events {pending} wait to rejoin sync after a restore: connect this device to a "
            "peer first (or `headcount backup rejoin --force EVENT`)",
            code="rejoin_pending",
        )
    missing = sorted(e for e in headers if e not in replica.events())
    if missing and not replica.role.is_authority:
        raise PermissionDeniedError(
            f"events {missing} are not on this device, and only an admin or relay may create "
            f"an event (this is a {replica.role}): restore onto an admin or relay, or let this "
            "device receive the events by sync first"
        )
    report = MergeReport()
    for event_id, header in headers.items():
        if event_id not in replica.events():
            replica.create_event(event_id, str(header.get("name") or ""), header.get("schema"))
            report.events_created.append(event_id)
        if progress:
            progress(f"merging {kind} of {event_id}: {len(by_event.get(event_id, []))} records")
        step = {
            Kind.PARTICIPANTS: _participants,
            Kind.ATTENDANCE: _scans,
            Kind.CONFIGURATION: _config,
        }[kind]
        try:
            step(replica, event_id, by_event.get(event_id, []), overwrite, report)
        except (KeyError, TypeError, AttributeError) as exc:
            raise BackupError(
                f"a {kind} record of {event_id!r} is malformed: {exc!r}", code=CORRUPT
            ) from None
    return report


def _by_event(
    records: Iterable[dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The ``event`` header of each event, and the other records per event."""
    headers: dict[str, dict[str, Any]] = {}
    by_event: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record.get("type") == "event":
            headers[record["event"]] = record
        else:
            by_event.setdefault(record["event"], []).append(record)
    return headers, by_event


def _participants(
    replica: Replica,
    event: str,
    records: list[dict[str, Any]],
    overwrite: bool,
    report: MergeReport,
) -> None:
    ev = replica.event(event)
    rows = []
    for r in records:
        pid, wanted = r["id"], _writable_fields(r)
        if r.get("deleted"):
            report.skip(f"{event}/{pid}: deleted in the backup")
            continue
        try:
            live = ev.participant(pid)
        except LocalProtocolError:
            rows.append({"id": pid, **wanted})
            continue
        if live.deleted:
            report.skip(f"{event}/{pid}: deleted since the backup")
            continue
        fields = {
            f: v
            for f, v in wanted.items()
            if f not in live.conflicted
            and (live.fields.get(f) != v if overwrite else live.fields.get(f) is None)
        }
        if fields:
            rows.append({"id": pid, **fields})
        else:
            report.unchanged += 1
    if rows:
        report.written += replica.import_participants(event, rows).changed


def _writable_fields(record: dict[str, Any]) -> dict[str, Any]:
    conflicted = set(record.get("conflicted") or ())
    return {f: v for f, v in record["fields"].items() if f not in conflicted and v is not None}


def _scans(
    replica: Replica,
    event: str,
    records: list[dict[str, Any]],
    overwrite: bool,
    report: MergeReport,
) -> None:
    del overwrite  # a scan is immutable: there is nothing to overwrite
    for r in records:
        if r.get("type") != "scan":
            continue  # attendance records are derived from the scans
        if r["id"] in replica.event(event).doc.scans:
            report.unchanged += 1
            continue
        record_scan = replica.check_in if r["kind"] == "in" else replica.check_out
        try:
            result = record_scan(
                event,
                r["participant"],
                scan_id=r["id"],
                at_ms=r["ts_ms"],
                gate=r["gate"],
                method=r["method"],
                device=r["device"],
                allow_unknown=True,
            )
        except LocalProtocolError as exc:
            report.skip(f"{event}/scan {r['id']}: {exc.message}")
            continue
        if result.recorded:
            report.written += 1
        else:
            report.unchanged += 1  # the same scan under another key (device + time)


def _config(
    replica: Replica,
    event: str,
    records: list[dict[str, Any]],
    overwrite: bool,
    report: MergeReport,
) -> None:
    live = replica.event(event).config()
    for r in records:
        key, value = r["key"], r["value"]
        if live.get(key) == value or (key in live and live[key] is not None and not overwrite):
            report.unchanged += 1
            continue
        try:
            replica.set_config(event, key, value)
        except LocalProtocolError as exc:
            report.skip(f"{event}/config {key}: {exc.message}")
            continue
        report.written += 1
