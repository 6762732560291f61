"""What a :class:`~headcount.protocol.session.Session` asks its driver to do.

The session never performs an effect: every input returns a list of these,
in order, and the driver (the asyncio node, the simulator, a test's
``ConnectionPair``) carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .wire import Message


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to send: one whole frame. ``event`` names the event whose log
    state the frame reports (segments, acknowledgements, summaries), None
    for the others: a driver with group commit sends it only once that
    event's writes are durable."""

    data: bytes
    event: str | None = field(default=None, kw_only=True)
    # The message ``data`` encodes, for in-process drivers that hand it over
    # without decoding (the simulator's fast wire, Session.receive_message).
    message: Message | None = field(default=None, kw_only=True, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection. ``error`` is None for a clean close (ours, or
    the peer's ``Goodbye("bye")``), else the stable code of what ended it."""

    error: str | None


@dataclass(frozen=True, slots=True)
class Applied:
    """Entries from this peer were applied to the local log (``entries`` is
    0 for an installed snapshot)."""

    event: str
    entries: int


@dataclass(frozen=True, slots=True)
class EquivocationFound:
    """``device`` signed two different entries ``seq`` of ``event``: it is
    quarantined for that event, and nothing of the contradiction applied."""

    event: str
    device: str
    seq: int


@dataclass(frozen=True, slots=True)
class EntryRefused:
    """Entry ``seq`` of ``device`` on ``event`` was refused for what it does
    (``reason``, a stable code: core/validate.py): nothing of it applied or
    forwarded, and the device quarantined for that event."""

    event: str
    device: str
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class SnapshotRefused:
    """A snapshot the peer sent was refused before any of it was kept:
    ``code`` ``unauthorised`` (the peer is not certified admin or relay),
    ``too_big`` (beyond what one connection or the node may buffer),
    ``malformed`` (parts out of order), all three ending the session; or
    ``deferred`` (the node's snapshot budget is in use: its parts are
    dropped, and the peer sends it again when its batch times out)."""

    event: str
    code: str
    total: int


@dataclass(frozen=True, slots=True)
class RevocationsLearnt:
    """``added`` new revocation records from the peer were verified and kept:
    the driver re-checks its links and passes them on."""

    added: int


@dataclass(frozen=True, slots=True)
class RevocationRefused:
    """A revocation record from the peer was refused (``code``, stable: see
    ``headcount.pki.revocation_record.RecordRefused``); the others of its
    message were still considered."""

    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class PeerIdentified:
    """The peer's ``Hello`` named ``device`` (and it was accepted)."""

    device: str


Effect = (
    Send
    | Close
    | Applied
    | EquivocationFound
    | EntryRefused
    | PeerIdentified
    | SnapshotRefused
    | RevocationsLearnt
    | RevocationRefused
)

__all__ = [
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
]
