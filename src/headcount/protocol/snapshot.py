"""A snapshot in transit, for a peer behind the compaction horizon: cut into
``SnapshotPart`` messages by the sender, put back together by the receiver.

A snapshot's content is not signed by the entries' origins, so a receiver
takes one only from a peer certified admin or relay, and memory is bounded
before a byte is kept (:class:`SnapshotReceiver`):

1. A part from any other peer is refused (``unauthorised``) before it is
   buffered; the session ends.
2. The first part announces the snapshot's size; the whole size is reserved
   at once from the connection's budget and the node's (:class:`SnapshotBudget`,
   one shared by all the sessions of a node). A snapshot larger than either
   limit could never fit: ``too_big``, the session ends. One that does not
   fit now (other snapshots hold the budget) is ``deferred``: its parts are
   dropped unread until the sender starts it again (its batch timed out).
3. The reservation is released when the snapshot is installed or refused,
   and when the session closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from headcount.core.chain import Head
from headcount.core.errors import RemoteProtocolError

from .wire import SnapshotPart


def snapshot_parts(
    event: str, state: bytes, heads: Sequence[Head], step: int
) -> list[SnapshotPart]:
    """``state`` cut into parts of ``step`` bytes (one part at least, even
    for an empty state); the first part carries ``heads``."""
    return [
        SnapshotPart(
            event,
            offset,
            len(state),
            state[offset : offset + step],
            tuple(heads) if offset == 0 else (),
        )
        for offset in range(0, max(len(state), 1), step)
    ]


@dataclass(slots=True)
class IncomingSnapshot:
    """A snapshot the peer is sending us, part by part."""

    data: bytearray
    heads: tuple[Head, ...]
    total: int

    @property
    def complete(self) -> bool:
        return len(self.data) >= self.total


def add_part(incoming: IncomingSnapshot | None, part: SnapshotPart, limit: int) -> IncomingSnapshot:
    """Add ``part`` to the snapshot being received (a part at offset 0 starts
    a new one).

    Args:
        incoming: the snapshot so far, None if none is under way. It is
            extended in place.
        part: the next part.
        limit: the largest snapshot accepted, in bytes.

    Returns:
        The snapshot so far, with ``part`` added: install it once
        :attr:`IncomingSnapshot.complete`.

    Raises:
        RemoteProtocolError: the snapshot is larger than ``limit``
            (``too_big``), or the part does not follow the previous one
            (``malformed``); ``incoming`` is then unchanged.
    """
    if part.offset == 0:
        if part.total > limit:
            raise RemoteProtocolError("snapshot larger than the limit", code="too_big")
        incoming = IncomingSnapshot(bytearray(), part.heads, part.total)
    if incoming is None or part.offset != len(incoming.data) or part.total != incoming.total:
        raise RemoteProtocolError("snapshot parts out of order", code="malformed")
    incoming.data += part.data
    return incoming


class SnapshotBudget:
    """Bytes of incoming snapshots that may be buffered at once.

    A session reserves a snapshot's whole size from its own budget (the
    connection's limit), which also reserves it from its ``parent`` (the
    node's, shared by every session of the node), or from neither.
    """

    def __init__(self, limit: int, parent: SnapshotBudget | None = None) -> None:
        self.limit = limit
        self.parent = parent
        self.used = 0

    def could_fit(self, size: int) -> bool:
        """Whether ``size`` bytes fit this budget (and its parent's) when empty."""
        return size <= self.limit and (self.parent is None or self.parent.could_fit(size))

    def reserve(self, size: int) -> bool:
        """Reserve ``size`` bytes here and in the parent, or nothing."""
        if self.used + size > self.limit:
            return False
        if self.parent is not None and not self.parent.reserve(size):
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        """Give back a reservation made by :meth:`reserve`."""
        self.used -= size
        if self.parent is not None:
            self.parent.release(size)


AUTHORITY_ROLES = frozenset({"admin", "relay"})
"""The roles whose snapshots a device accepts."""


@dataclass(frozen=True, slots=True)
class Received:
    """What one part did: ``snapshot`` once complete (install it, then call
    :meth:`SnapshotReceiver.done`); ``deferred`` for the first part of a
    snapshot that does not fit the budget now."""

    snapshot: IncomingSnapshot | None = None
    deferred: bool = False


class SnapshotReceiver:
    """The snapshots one peer is sending us (one per event at most).

    Args:
        budget: this connection's budget (its parent is the node's).
    """

    def __init__(self, budget: SnapshotBudget) -> None:
        self.budget = budget
        self._incoming: dict[str, IncomingSnapshot] = {}
        self._skipping: set[str] = set()  # events whose deferred snapshot's parts we drop

    @property
    def buffered(self) -> int:
        """Bytes of snapshot parts held, over every event."""
        return sum(len(s.data) for s in self._incoming.values())

    def add(self, part: SnapshotPart, sender_role: str | None) -> Received:
        """Take one part from a peer of certified role ``sender_role``.

        Raises:
            RemoteProtocolError: ``unauthorised`` (not an admin or relay),
                ``too_big`` or ``malformed``; nothing of the part was kept.
        """
        if sender_role not in AUTHORITY_ROLES:
            raise RemoteProtocolError(
                f"snapshots are accepted only from an admin or relay, not a {sender_role}",
                code="unauthorised",
            )
        event = part.event
        if part.offset == 0:
            self.done(event)  # a new start replaces what the peer sent before
            if not self.budget.could_fit(part.total):
                raise RemoteProtocolError(
                    f"a snapshot of {part.total} bytes is larger than this node buffers",
                    code="too_big",
                )
            if not self.budget.reserve(part.total):
                self._skipping.add(event)
                return Received(deferred=True)
        elif event not in self._incoming and event in self._skipping:
            return Received()  # the rest of a deferred snapshot: dropped unread
        incoming = add_part(self._incoming.get(event), part, self.budget.limit)
        self._incoming[event] = incoming
        return Received(snapshot=incoming) if incoming.complete else Received()

    def done(self, event: str) -> None:
        """Forget ``event``'s snapshot (installed, refused or replaced) and
        release its reservation."""
        self._skipping.discard(event)
        incoming = self._incoming.pop(event, None)
        if incoming is not None:
            self.budget.release(incoming.total)

    def close(self) -> None:
        """The session ended: release every reservation."""
        for event in list(self._incoming):
            self.done(event)
        self._skipping.clear()


__all__ = [
    "AUTHORITY_ROLES",
    "IncomingSnapshot",
    "Received",
    "SnapshotBudget",
    "SnapshotReceiver",
    "add_part",
    "snapshot_parts",
]
