"""headcount: offline-first peer-to-peer replication for event check-in."""

from .errors import (
    FutureTimestampError,
    HeadcountError,
    InputError,
    LocalProtocolError,
    NotFoundError,
    PermissionDeniedError,
    RemoteProtocolError,
    StoreError,
)
from .event import Event
from .hlc import HybridClock
from .identity import Identity, Role
from .model import (
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
from .replica import ApplyResult, Replica
from .schema import Policy, Schema, default_schema
from .store import Durability

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
