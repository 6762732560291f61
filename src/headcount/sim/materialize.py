"""Materialising mode: each node's log applied to its own event document.

A node's :class:`Materializer` receives every entry its log applies (the
``MemLog`` ``on_apply`` hook) and applies the Y update with
:meth:`~headcount.eventdoc.EventDoc.apply_remote`. Entries arrive in each
device's order but in any order across devices, so an update may not
integrate yet (yrs holds it back until its dependencies arrive, see the
out-of-order note in design.md): it is kept and re-applied after every update
that does integrate, until it does. The document is volatile (a crash drops
it); a restart rebuilds it from the durable log.

Semantic convergence means equal :func:`snapshot` on every node (and equal to
the oracle built from the whole workload): participants, attendance and
conflicts, plus no update left waiting.
"""

from __future__ import annotations

from typing import Any

from headcount.core.event import Event
from headcount.core.eventdoc import EventDoc
from headcount.core.hlc import HybridClock
from headcount.core.model import LogEntry
from headcount.protocol.memlog import MemLog

from .workload import EVENT, Workload


class Materializer:
    """One node's event document, fed by its log."""

    def __init__(self, device: str, role: str = "gate") -> None:
        self.event = Event(EventDoc(EVENT, device, role, HybridClock()))
        self.waiting: list[bytes] = []
        self.applied = 0
        self.retries = 0

    def apply(self, entry: LogEntry) -> None:
        """The ``on_apply`` hook: apply one entry's update, retry held ones."""
        self.applied += 1
        if not self.event.doc.apply_remote(entry.update):
            self.waiting.append(entry.update)
            return
        self._retry()

    def _retry(self) -> None:
        progress = True
        while progress and self.waiting:
            progress = False
            still: list[bytes] = []
            for update in self.waiting:
                self.retries += 1
                if self.event.doc.apply_remote(update):
                    progress = True
                else:
                    still.append(update)
            self.waiting = still

    def rebuild(self, log: MemLog) -> None:
        """Apply everything in ``log`` (after a restart)."""
        for chain in log.chains.get(EVENT, {}).values():
            for entry in chain.entries:
                self.apply(entry)

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.event, waiting=len(self.waiting))


def snapshot(event: Event, waiting: int = 0) -> dict[str, Any]:
    """What a user sees of an event: participants, attendance, conflicts."""
    return {
        "participants": [p.to_dict() for p in event.participants(include_deleted=True)],
        "attendance": [a.to_dict() for a in event.attendance_list()],
        "conflicts": [c.to_dict() for c in event.conflicts()],
        "waiting": waiting,
    }


def oracle(workload: Workload) -> dict[str, Any]:
    """The snapshot of a document holding the whole workload (applied in causal order)."""
    doc = EventDoc(EVENT, "oracle", "gate", HybridClock())
    doc.load([w.update for w in workload.writes])
    return snapshot(Event(doc))
