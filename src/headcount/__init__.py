"""headcount: offline-first peer-to-peer replication for event check-in."""

from headcount.core.errors import (
    FutureTimestampError,
    HeadcountError,
    InputError,
    LocalProtocolError,
    NotFoundError,
    PermissionDeniedError,
    RemoteProtocolError,
    StoreError,
)
from headcount.core.event import Event
from headcount.core.hlc import HybridClock
from headcount.core.identity import Identity, Role
from headcount.core.model import (
    Attendance,
    Candidate,
    CheckInResult,
    Conflict,
    ConflictKind,
    EventStatus,
    LogEntry,
    Method,
    Participant,
    Scan,
    ScanKind,
)
from headcount.core.schema import Policy, Schema, default_schema
from headcount.replica.replica import ApplyResult, Replica
from headcount.store.sqlite import Durability

__version__ = "0.1.0"

__all__ = [
    "ApplyResult",
    "Attendance",
    "Candidate",
    "CheckInResult",
    "Conflict",
    "ConflictKind",
    "Durability",
    "Event",
    "EventStatus",
    "FutureTimestampError",
    "HeadcountError",
    "HybridClock",
    "Identity",
    "InputError",
    "LocalProtocolError",
    "LogEntry",
    "Method",
    "NotFoundError",
    "Participant",
    "PermissionDeniedError",
    "Policy",
    "RemoteProtocolError",
    "Replica",
    "Role",
    "Scan",
    "ScanKind",
    "Schema",
    "StoreError",
    "__version__",
    "default_schema",
]
