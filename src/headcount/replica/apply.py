"""Applying peers' entries to an event's document at once (gates, admins).

The eager path of :meth:`Replica.apply_entries`; relays accept entries
without applying them (:mod:`.lazyapply`). Entries arrive in any order and
with duplicates. Each device's entries are applied in sequence order; an
entry whose predecessor is missing, or whose Y items wait for another
device's entry (yrs holds it back), is kept pending and retried whenever
something else integrates. This module decides; the replica writes the
outcome to its store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from headcount.core.errors import HeadcountError, InputError, RemoteProtocolError
from headcount.core.event import Event
from headcount.core.hlc import HybridClock
from headcount.core.ids import check_id
from headcount.core.model import LogEntry, Violation
from headcount.store.interface import LogStore

Key = tuple[str, int]  # (device, seq)


@dataclass(slots=True)
class ApplyResult:
    """What :meth:`Replica.apply_entries` did with a batch from a peer."""

    applied: int = 0
    duplicates: int = 0
    pending: int = 0
    rejected: list[tuple[LogEntry, str]] = field(default_factory=list)
    refused: list[Violation] = field(default_factory=list)  # for what they do; device quarantined


@dataclass(slots=True)
class Integration:
    """What :func:`integrate` did with one event's batch: ``applied`` entries
    integrated into the document (in order: log them), ``still`` new entries
    waiting for a predecessor or a dependency (keep them pending), and the
    entries refused with a reason."""

    applied: list[LogEntry] = field(default_factory=list)
    still: list[LogEntry] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[tuple[LogEntry, str]] = field(default_factory=list)
    undecodable: int = 0


def shape_error(entry: object) -> str | None:
    """Why ``entry`` is not a well-formed log entry, or None."""
    if not isinstance(entry, LogEntry):
        return "not a log entry"
    for name, value in (("event", entry.event), ("device", entry.device)):
        try:
            check_id(name, value)
        except InputError as exc:
            return f"bad {name} id: {exc}"
    if len(entry.device) > 64:
        return "bad device id: longer than 64 characters"
    if isinstance(entry.seq, bool) or not isinstance(entry.seq, int) or entry.seq < 1:
        return "bad sequence number"
    if isinstance(entry.hlc, bool) or not isinstance(entry.hlc, int) or entry.hlc < 0:
        return "bad timestamp"
    if not isinstance(entry.update, bytes | bytearray) or not entry.update:
        return "empty update"
    return None


def integrate(
    ev: Event,
    store: LogStore,
    clock: HybridClock,
    wall_clock: Callable[[], int],
    batch: list[LogEntry],
) -> Integration:
    """Apply what of ``batch`` can be applied now to ``ev``'s document, with
    the entries the store holds as pending. Reads the store, writes nothing
    to it; the document and ``clock`` advance.

    1. Entries already logged or pending are duplicates; entries with a
       timestamp too far ahead are refused.
    2. The rest join the pending ones, and every entry whose device's
       predecessor is present is applied, in timestamp order, until no
       more progress (:func:`drain`).
    """
    out = Integration()
    event_id = ev.id
    have = store.version_vector(event_id)
    waiting = {(e.device, e.seq): e for e in store.pending(event_id)}
    fresh: list[LogEntry] = []
    for entry in batch:
        if entry.seq <= have.get(entry.device, 0) or (entry.device, entry.seq) in waiting:
            out.duplicates += 1
            continue
        try:
            clock.check(entry.hlc, wall_clock())
        except HeadcountError as exc:
            out.rejected.append((entry, exc.message))
            continue
        waiting[(entry.device, entry.seq)] = entry
        fresh.append(entry)
    before = len(out.rejected)
    out.applied = drain(ev, have, waiting, out.rejected, clock, wall_clock)
    out.undecodable = len(out.rejected) - before
    done = {(e.device, e.seq) for e in out.applied}
    done |= {(e.device, e.seq) for e, _ in out.rejected[before:]}
    out.still = [e for e in fresh if (e.device, e.seq) not in done]
    return out


def drain(
    ev: Event,
    have: dict[str, int],
    waiting: dict[Key, LogEntry],
    rejected: list[tuple[LogEntry, str]],
    clock: HybridClock,
    wall_clock: Callable[[], int],
) -> list[LogEntry]:
    """Apply every waiting entry whose predecessor is present, until no
    more progress; returns the entries that integrated, in order.
    Undecodable entries go to ``rejected``; ``have`` and ``waiting`` are
    updated."""
    applied: list[LogEntry] = []
    progress = True
    with ev.doc.observing():  # one observer registration for the whole batch
        while progress:
            progress = False
            for key in sorted(waiting, key=lambda k: (waiting[k].hlc, k)):
                entry = waiting[key]
                if entry.seq != have.get(entry.device, 0) + 1:
                    continue
                try:
                    ok = ev.doc.apply_remote(entry.update)
                except RemoteProtocolError as exc:
                    rejected.append((waiting.pop(key), exc.message))
                    continue
                if ok:
                    clock.observe(max(entry.hlc, clock.last), wall_clock())
                    have[entry.device] = entry.seq
                    applied.append(waiting.pop(key))
                    progress = True
    return applied
