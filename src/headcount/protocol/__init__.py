"""The sync protocol, sans-IO (h11 style): wire frames, the session state
machine and an in-memory signed log.

Modules: ``wire`` (messages and frames), ``session`` (the :class:`Session`),
``state`` (its transition table), ``flow`` (each event's exchange with the
peer), ``sender`` (batches, snapshots, acknowledgements going out),
``snapshot`` (snapshots in parts, and the budgets that bound them),
``gossip`` (revocation records between peers), ``effects`` (what a session returns),
``config`` and ``status`` (its settings and per-peer status), ``logview``
(what it needs of a log) and ``memlog`` (an in-memory log).

No asyncio, sockets, SQLite, pycrdt or wall clock here: time comes in as an
argument and effects go out as values. The asyncio transports (``net``) and
the simulator (``sim``) drive this same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headcount._lazy import exports

if TYPE_CHECKING:
    from .config import SessionConfig
    from .effects import (
        Applied,
        Close,
        Effect,
        EntryRefused,
        EquivocationFound,
        PeerIdentified,
        RevocationRefused,
        RevocationsLearnt,
        Send,
        SnapshotRefused,
    )
    from .logview import IngestResult, LogView, RevocationIntake
    from .memlog import MemLog
    from .session import Session
    from .snapshot import SnapshotBudget
    from .state import State
    from .status import PeerStatus, SyncStatus
    from .wire import (
        WIRE_VERSION,
        Ack,
        Directory,
        FrameDecoder,
        Goodbye,
        Hello,
        Message,
        Ping,
        Pong,
        RevocationRecord,
        Revocations,
        Segments,
        SnapshotPart,
        Summary,
        encode,
    )

__all__ = [
    "WIRE_VERSION",
    "Ack",
    "Applied",
    "Close",
    "Directory",
    "Effect",
    "EntryRefused",
    "EquivocationFound",
    "FrameDecoder",
    "Goodbye",
    "Hello",
    "IngestResult",
    "LogView",
    "MemLog",
    "Message",
    "PeerIdentified",
    "PeerStatus",
    "Ping",
    "Pong",
    "RevocationIntake",
    "RevocationRecord",
    "RevocationRefused",
    "Revocations",
    "RevocationsLearnt",
    "Segments",
    "Send",
    "Session",
    "SessionConfig",
    "SnapshotBudget",
    "SnapshotPart",
    "SnapshotRefused",
    "State",
    "Summary",
    "SyncStatus",
    "encode",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        ".config": ["SessionConfig"],
        ".effects": [
            "Applied",
            "Close",
            "Effect",
            "EntryRefused",
            "EquivocationFound",
            "PeerIdentified",
            "RevocationRefused",
            "RevocationsLearnt",
            "Send",
            "SnapshotRefused",
        ],
        ".session": ["Session"],
        ".snapshot": ["SnapshotBudget"],
        ".state": ["State"],
        ".status": ["PeerStatus", "SyncStatus"],
        ".logview": ["IngestResult", "LogView", "RevocationIntake"],
        ".wire": [
            "Ack",
            "Directory",
            "FrameDecoder",
            "Goodbye",
            "Hello",
            "Message",
            "Ping",
            "Pong",
            "RevocationRecord",
            "Revocations",
            "Segments",
            "SnapshotPart",
            "Summary",
            "WIRE_VERSION",
            "encode",
        ],
        ".memlog": ["MemLog"],
    },
)
