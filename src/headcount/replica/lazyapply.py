"""Accepting peers' entries without applying them yet (relays).

A relay stores and forwards far more than it reads: applying every entry to
its Y document and indexes as it arrives costs it about half of the work of
ingesting it, for documents that are read only when its HTTP API or a
compaction asks. With :attr:`Replica.lazy_apply` the replica accepts an
entry (shape, clock, decodability, chain order checked; logged durably, in
the version vector, forwardable at once) and applies it to the in-memory
document only when the event is next read (:meth:`Replica.event`).

What differs from applying at once, and why it is sound for a relay:

1. An entry counts as held once its device's chain is contiguous up to it,
   even if its Y dependencies (another device's entry) have not arrived.
   The relay forwards it; every receiver applies it once the dependency
   arrives, which the relay's version vector (lacking the dependency) makes
   its peers send. Applying such an entry later lets yrs hold it back the
   same way.
   Applying it once and waiting could leave it stuck in yrs (design.md),
   so :func:`apply_logged` keeps it *held back* and applies it again
   whenever another entry integrates; compaction never folds it (the
   document, hence a snapshot, lacks it), and a reload finds it in the log.
2. Undecodable updates are refused at once (``pycrdt.get_state`` decodes the
   update's structure; ~0.3 us), so nothing that cannot be applied is ever
   logged.
"""

from __future__ import annotations

from collections.abc import Callable

from pycrdt import get_state

from headcount.core.errors import HeadcountError, RemoteProtocolError
from headcount.core.event import Event
from headcount.core.hlc import HybridClock
from headcount.core.model import LogEntry
from headcount.store.interface import LogStore


def accept(
    store: LogStore,
    clock: HybridClock,
    wall_clock: Callable[[], int],
    event_id: str,
    batch: list[LogEntry],
) -> tuple[list[LogEntry], list[LogEntry], int, list[tuple[LogEntry, str]]]:
    """Log what of ``batch`` continues its device's chain; keep the rest pending.

    Returns:
        ``(accepted, pending, duplicates, rejected)``: the entries logged
        now (in chain order, pending ones that now continue included), the
        new entries kept as pending, the count of entries already held, and
        the refused entries with the reason.
    """
    have = store.version_vector(event_id)
    waiting = {(e.device, e.seq): e for e in store.pending(event_id)}
    fresh: list[LogEntry] = []
    duplicates = 0
    rejected: list[tuple[LogEntry, str]] = []
    for entry in batch:
        if entry.seq <= have.get(entry.device, 0) or (entry.device, entry.seq) in waiting:
            duplicates += 1
            continue
        reason = _refusal(clock, wall_clock, entry)
        if reason:
            rejected.append((entry, reason))
            continue
        waiting[(entry.device, entry.seq)] = entry
        fresh.append(entry)
    accepted = _contiguous(have, waiting)
    for entry in accepted:
        clock.observe(max(entry.hlc, clock.last), wall_clock())
    taken = {(e.device, e.seq) for e in accepted}
    pending = [e for e in fresh if (e.device, e.seq) not in taken]
    if accepted:
        store.append(accepted, clock.last, force=True)
    if pending:
        store.add_pending(pending)
    return accepted, pending, duplicates, rejected


def _refusal(clock: HybridClock, wall_clock: Callable[[], int], entry: LogEntry) -> str | None:
    try:
        clock.check(entry.hlc, wall_clock())
    except HeadcountError as exc:
        return exc.message
    try:
        get_state(entry.update)
    except BaseException as exc:  # pyo3 PanicException derives from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return f"undecodable update: {exc}"
    return None


def _contiguous(have: dict[str, int], waiting: dict[tuple[str, int], LogEntry]) -> list[LogEntry]:
    """The waiting entries that continue their device's chain, in order."""
    out: list[LogEntry] = []
    for device, seq in sorted(waiting):
        if seq == have.get(device, 0) + 1:
            out.append(waiting[(device, seq)])
            have[device] = seq
    return out


def apply_logged(ev: Event, held: dict[tuple[str, int], LogEntry], entries: list[LogEntry]) -> None:
    """Apply accepted (logged) entries to the event's document, in order.

    An entry whose Y items wait for an entry not yet here is put in ``held``
    (keyed by device and sequence number), and every held entry is applied
    again after each entry that integrates, until none progresses.
    Decodable entries with bad content are skipped (``ev.doc.ignored``), as
    on every replica.
    """
    with ev.doc.observing():
        for entry in entries:
            try:
                if not ev.doc.apply_remote(entry.update):
                    held[(entry.device, entry.seq)] = entry
                    continue
            except RemoteProtocolError:
                ev.doc.ignored += 1
                continue
            progress = bool(held)
            while progress:
                progress = False
                for key, waiting in sorted(held.items()):
                    if ev.doc.apply_remote(waiting.update):
                        del held[key]
                        progress = True
