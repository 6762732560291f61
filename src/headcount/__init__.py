"""headcount: offline-first peer-to-peer replication for event check-in.

The package root names the public API and imports it lazily (PEP 562): the
layers are packages (see the README's layout), and ``import headcount`` costs
nothing until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headcount._lazy import exports

if TYPE_CHECKING:
    from .core.errors import (
        FutureTimestampError,
        HeadcountError,
        InputError,
        LocalProtocolError,
        NotFoundError,
        PermissionDeniedError,
        RemoteProtocolError,
        StoreError,
    )
    from .core.event import Event
    from .core.hlc import HybridClock
    from .core.identity import Identity, Role
    from .core.model import (
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
    from .core.schema import Policy, Schema, default_schema
    from .replica import ApplyResult, Replica
    from .store import Durability

__version__ = "0.1.0"  # the only copy: pyproject.toml reads it (dynamic version)

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

__getattr__, __dir__ = exports(
    __name__,
    {
        ".core.errors": [
            "FutureTimestampError",
            "HeadcountError",
            "InputError",
            "LocalProtocolError",
            "NotFoundError",
            "PermissionDeniedError",
            "RemoteProtocolError",
            "StoreError",
        ],
        ".core.event": ["Event"],
        ".core.hlc": ["HybridClock"],
        ".core.identity": ["Identity", "Role"],
        ".core.model": [
            "Attendance",
            "Candidate",
            "CheckInResult",
            "Conflict",
            "ConflictKind",
            "EventStatus",
            "LogEntry",
            "Method",
            "Participant",
            "Scan",
            "ScanKind",
        ],
        ".core.schema": ["Policy", "Schema", "default_schema"],
        ".replica": ["ApplyResult", "Replica"],
        ".store": ["Durability"],
    },
)
