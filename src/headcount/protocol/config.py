"""A session's limits and intervals (:class:`SessionConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from .wire import DEFAULT_MAX_FRAME


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Limits and intervals of one session; times are in seconds."""

    batch_bytes: int = 256 * 1024
    """Updates per ``Segments`` batch, about (relayed segments travel whole)."""
    window: int = 4
    """Batches in flight, unacknowledged, per event."""
    anti_entropy_interval: float = 30.0
    keepalive_interval: float = 10.0
    idle_timeout: float = 30.0
    max_frame: int = DEFAULT_MAX_FRAME
    eager_push: bool = True
    """Push new local entries at once (:meth:`Session.local_entries`)."""
    max_snapshot: int = 64 * 1024 * 1024
    """Bytes of snapshots one connection may buffer at once. An event of
    50,000 participants and 100,000 check-ins is a 19 MiB snapshot; the
    node's budget across connections is the driver's (``SnapshotBudget``)."""
    max_revocations: int = 65_536
    """Revocation records a peer may send in one session (each once)."""
    ack_timeout: float = 5.0
    """A batch unacknowledged this long was lost: resend from the peer's account."""
    ack_delay: float = 0.0
    """Seconds a received ``Segments`` message may wait for its ``Ack``, so
    that one acknowledgement covers several (0: acknowledge each at once).
    A relay fanning entries out to many gates receives one message per
    acknowledgement: gates delay theirs (``DEFAULT_ACK_DELAY``)."""
    ack_every: int = 4
    """With ``ack_delay``: acknowledge at once when this many are waiting
    (at most ``window``, so that a sender is never stalled by it)."""


DEFAULT_ACK_DELAY = 0.5  # the daemon's and the relay's setting (see SessionConfig.ack_delay)
DEFAULT_MAX_SNAPSHOT = SessionConfig().max_snapshot

__all__ = ["DEFAULT_ACK_DELAY", "DEFAULT_MAX_SNAPSHOT", "SessionConfig"]
