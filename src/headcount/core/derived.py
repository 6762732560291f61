"""What an event's document implies per participant, recomputed lazily.

Which participants are live (not deleted), who holds which QR token, which
critical fields are in conflict, and which scan an attendance policy picks.
Only the records a transaction or a peer's update touched are recomputed
(``EventDoc.dirty``), so a check-in costs the same with 50,000 participants
as with 50. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import registers as R
from .eventdoc import PARTICIPANT, EventDoc, record_key
from .model import Candidate, Conflict, ConflictKind, Scan
from .schema import Policy


def is_deleted(doc: EventDoc, pid: str) -> bool:
    """True if the participant's tombstone field currently reads true."""
    return bool(doc.field_value(PARTICIPANT, pid, R.DELETED)[0])


@dataclass(slots=True)
class Derived:
    """Per-participant facts of one event's document.

    Call :meth:`refresh` before reading: it recomputes the records the
    document marked dirty since the last call.
    """

    doc: EventDoc
    live: set[str] = field(default_factory=set)
    qr: dict[str, set[str]] = field(default_factory=dict)  # token -> participants
    qr_of: dict[str, str] = field(default_factory=dict)  # participant -> token
    conflicts: dict[str, list[Conflict]] = field(default_factory=dict)

    def refresh(self) -> None:
        dirty, self.doc.dirty = self.doc.dirty, set()
        prefix = PARTICIPANT + R.SEP
        for rkey in dirty:
            if rkey.startswith(prefix):
                self._recompute(rkey[len(prefix) :])

    def _recompute(self, pid: str) -> None:
        old = self.qr_of.pop(pid, None)
        if old is not None:
            self.qr.get(old, set()).discard(pid)
        self.conflicts.pop(pid, None)
        self.live.discard(pid)
        entries = self.doc.records.get(record_key(PARTICIPANT, pid))
        if not entries:
            return
        if len(entries) == 1:
            # One write so far (the common case after an import): no
            # candidates compete, so nothing can be conflicted.
            (only,) = entries.values()
            deleted = only.fields.get(R.DELETED) is True
            qr = only.fields.get("qr_token")
            found = []
        else:
            deleted = is_deleted(self.doc, pid)
            qr = self.doc.field_value(PARTICIPANT, pid, "qr_token")[0]
            found = record_conflicts(self.doc, pid)
        if not deleted:
            self.live.add(pid)
        if isinstance(qr, str) and qr:
            self.qr_of[pid] = qr
            self.qr.setdefault(qr, set()).add(pid)
        if found:
            self.conflicts[pid] = found


def record_conflicts(doc: EventDoc, pid: str) -> list[Conflict]:
    """The open conflicts of one participant: concurrent different values of
    a critical field, and modifications a deletion had not seen."""
    out = []
    fields = doc.record_fields(PARTICIPANT, pid)
    for name, live in fields.items():
        if name == R.DELETED or doc.policy(PARTICIPANT, pid, name) is not Policy.CRITICAL:
            continue
        if R.merge(Policy.CRITICAL, live, name)[1]:
            out.append(_conflict(doc, ConflictKind.CONCURRENT_EDIT, pid, name, live, name))
    tombstones = [e for e in fields.get(R.DELETED, []) if e.fields[R.DELETED] is True]
    if tombstones and is_deleted(doc, pid):
        seen = {d for t in tombstones for d in (t.aux or {}).get("seen", [])}
        entries = doc.records.get(record_key(PARTICIPANT, pid), {}).values()
        mods = [e for e in entries if R.DELETED not in e.fields and e.dot not in seen]
        if mods:
            kind = ConflictKind.MODIFIED_DELETED
            out.append(_conflict(doc, kind, pid, R.DELETED, tombstones + mods, None))
    return out


def _conflict(
    doc: EventDoc,
    kind: ConflictKind,
    pid: str,
    name: str,
    entries: list[R.RegEntry],
    value_field: str | None,
) -> Conflict:
    cands = tuple(
        Candidate(
            e.dot,
            e.device,
            e.fields[value_field] if value_field else dict(e.fields),
            e.hlc,
            e.role,
        )
        for e in sorted(entries, key=lambda e: e.order)
    )
    cid = R.conflict_id(doc.event, kind.value, pid, name, (e.dot for e in entries))
    return Conflict(cid, kind, pid, name, cands)


def scan_order(scan: Scan) -> tuple[int, int, str, str]:
    """Scan time, then HLC, device and key: the order of an attendance record's scans."""
    return (scan.ts_ms, scan.hlc, scan.device, scan.id)


def pick_scan(policy: Policy, scans: list[Scan]) -> Scan | None:
    """The scan an attendance policy picks from ``scans`` (in :func:`scan_order`)."""
    if not scans:
        return None
    if policy is Policy.EARLIEST:
        return scans[0]
    if policy is Policy.LATEST:
        return scans[-1]
    return max(scans, key=lambda s: (s.hlc, s.device, s.id))  # lww
