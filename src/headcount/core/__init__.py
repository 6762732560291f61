"""The domain, free of I/O but for a device's own key files: errors, the data
model, the hybrid logical clock, field schemas and registers, the hash chain
and signatures, one event as a pycrdt document, CSV import, device identity,
and a strict decoder of Y updates (``ydecode``: what a peer's update does).

Imports only the standard library, pycrdt, cryptography and msgpack (checked
by tests/test_layers.py). Names load lazily: ``headcount.core.chain`` does not
pull in pycrdt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headcount._lazy import exports

if TYPE_CHECKING:
    from .chain import EquivocationError, Head, Segment
    from .errors import (
        BehindHorizonError,
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
    from .eventdoc import EventDoc
    from .hlc import HybridClock
    from .identity import Identity, Role, create_identity, device_id_for, load_identity
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
    from .schema import Policy, Schema, default_schema, load_schema_file
    from .ydecode import DecodedUpdate, Item, UpdateFormatError, decode_update

__all__ = [
    "Attendance",
    "BehindHorizonError",
    "Candidate",
    "CheckInResult",
    "Conflict",
    "ConflictKind",
    "DecodedUpdate",
    "EquivocationError",
    "Event",
    "EventDoc",
    "EventStatus",
    "FutureTimestampError",
    "Head",
    "HeadcountError",
    "HybridClock",
    "Identity",
    "InputError",
    "Item",
    "LocalProtocolError",
    "LogEntry",
    "Method",
    "NotFoundError",
    "Participant",
    "PermissionDeniedError",
    "Policy",
    "RemoteProtocolError",
    "Role",
    "Scan",
    "ScanKind",
    "Schema",
    "Segment",
    "StoreError",
    "UpdateFormatError",
    "create_identity",
    "decode_update",
    "default_schema",
    "device_id_for",
    "load_identity",
    "load_schema_file",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        ".errors": [
            "BehindHorizonError",
            "FutureTimestampError",
            "HeadcountError",
            "InputError",
            "LocalProtocolError",
            "NotFoundError",
            "PermissionDeniedError",
            "RemoteProtocolError",
            "StoreError",
        ],
        ".model": [
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
        ".hlc": ["HybridClock"],
        ".schema": ["Policy", "Schema", "default_schema", "load_schema_file"],
        ".chain": ["EquivocationError", "Head", "Segment"],
        ".eventdoc": ["EventDoc"],
        ".event": ["Event"],
        ".identity": ["Identity", "Role", "create_identity", "device_id_for", "load_identity"],
        ".ydecode": ["DecodedUpdate", "Item", "UpdateFormatError", "decode_update"],
    },
)
