"""Per-peer sync status for the application (:class:`PeerStatus`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SyncStatus(StrEnum):
    """The reference documents' queue states, per peer."""

    PENDING = "pending"
    SENDING = "sending"
    SYNCED = "synced"
    FAILED = "failed"


@dataclass(slots=True)
class PeerStatus:
    """Per-peer sync status for the application (see :class:`SyncStatus`)."""

    peer: str | None = None
    status: SyncStatus = SyncStatus.PENDING
    pending_entries: int = 0
    last_sync: float | None = None
    entries_sent: int = 0
    entries_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    retries: int = 0
    """Batches sent again because they were not acknowledged in time."""
    error: str | None = None

    def recount(self, pending: int, sending: bool, now: float) -> None:
        """Set the queue state from what the peer lacks.

        Args:
            pending: entries the peer lacks, over every event.
            sending: whether any batch awaits the peer's acknowledgement.
            now: the current time (the last sync, if nothing is pending).
        """
        self.pending_entries = pending
        if pending == 0:
            self.status = SyncStatus.SYNCED
            self.last_sync = now
        else:
            self.status = SyncStatus.SENDING if sending else SyncStatus.PENDING

    def failed(self, error: str) -> None:
        """The session ended in error: ``error`` says why."""
        self.status = SyncStatus.FAILED
        self.error = error


__all__ = ["PeerStatus", "SyncStatus"]
