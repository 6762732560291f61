"""A snapshot in transit, for a peer behind the compaction horizon: cut into
``SnapshotPart`` messages by the sender, put back together by the receiver."""

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


__all__ = ["IncomingSnapshot", "add_part", "snapshot_parts"]
