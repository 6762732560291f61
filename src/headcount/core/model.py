"""The nouns of the replica's public API: immutable views and log entries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ScanKind(StrEnum):
    IN = "in"
    OUT = "out"


class Method(StrEnum):
    QR = "qr"
    BLE = "ble"
    MANUAL = "manual"


class ConflictKind(StrEnum):
    """The conflicts that need a human (every other kind merges by policy)."""

    CONCURRENT_EDIT = "concurrent_edit"
    """Concurrent different values of a critical field."""
    MODIFIED_DELETED = "modified_deleted"
    """A participant was modified by a device that had not seen its deletion."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One local transaction of one device on one event: a Y update, numbered.

    ``seq`` counts from 1 per (event, device) with no gaps, so a version
    vector ``{device: highest seq}`` says exactly which entries a replica has.
    """

    event: str
    device: str
    seq: int
    hlc: int
    update: bytes
    prev: bytes = b"\x00" * 32
    """The hash of this device's previous entry of the event (zeros for seq 1)."""
    digest: bytes = field(default=b"", init=False, compare=False, repr=False)
    """This entry's own hash, cached when our code computed it from the
    content (never taken from a peer: the wire format does not carry it).
    Not an init field, so ``dataclasses.replace`` never carries a stale one."""


@dataclass(frozen=True, slots=True)
class Scan:
    """One scan at a gate, kept forever in the event's audit set."""

    id: str
    participant: str
    kind: ScanKind
    ts_ms: int
    hlc: int
    gate: str
    method: Method
    device: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "participant": self.participant,
            "kind": self.kind.value,
            "ts_ms": self.ts_ms,
            "gate": self.gate,
            "method": self.method.value,
            "device": self.device,
        }


@dataclass(frozen=True, slots=True)
class Attendance:
    """The one attendance record of a participant, derived from their scans."""

    participant: str
    check_in: Scan | None
    check_out: Scan | None
    scans: tuple[Scan, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "participant": self.participant,
            "check_in": self.check_in.to_dict() if self.check_in else None,
            "check_out": self.check_out.to_dict() if self.check_out else None,
            "scans": [s.id for s in self.scans],
        }


@dataclass(frozen=True, slots=True)
class CheckInResult:
    """What a check-in or check-out did. ``recorded`` is False for a repeat.

    ``attendance`` is the participant's record right after the scan, computed
    on first access (most callers never look).
    """

    scan: Scan
    recorded: bool
    entry: LogEntry | None
    _attendance: Callable[[], Attendance]

    @property
    def attendance(self) -> Attendance:
        return self._attendance()


@dataclass(frozen=True, slots=True)
class Candidate:
    """One of the values competing in a conflict."""

    dot: str
    device: str
    value: Any
    hlc: int
    role: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "dot": self.dot,
            "device": self.device,
            "value": self.value,
            "hlc": self.hlc,
            "role": self.role,
        }


@dataclass(frozen=True, slots=True)
class Conflict:
    """A manual-merge record. Its id depends only on what conflicts, so every
    replica that sees the same conflict names it the same."""

    id: str
    kind: ConflictKind
    record: str
    field: str
    candidates: tuple[Candidate, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "participant": self.record,
            "field": self.field,
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass(frozen=True, slots=True)
class Participant:
    id: str
    fields: dict[str, Any]
    deleted: bool = False
    conflicted: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, **self.fields}
        if self.deleted:
            out["deleted"] = True
        if self.conflicted:
            out["conflicts"] = list(self.conflicted)
        return out


@dataclass(frozen=True, slots=True)
class EventStatus:
    event: str
    participants: int
    checked_in: int
    checked_out: int
    scans: int
    open_conflicts: int
    version_vector: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "participants": self.participants,
            "checked_in": self.checked_in,
            "checked_out": self.checked_out,
            "scans": self.scans,
            "open_conflicts": self.open_conflicts,
            "version_vector": dict(self.version_vector),
        }


@dataclass(frozen=True, slots=True)
class Violation:
    """Why entry ``seq`` of ``device`` on ``event`` was refused: ``reason``
    is a stable code (a metric label), ``detail`` for people."""

    event: str
    device: str
    seq: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.device} entry {self.seq} of {self.event}: {self.reason} ({self.detail})"
