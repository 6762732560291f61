"""The replica: one device's identity, store and event documents.

The composition root that every driver (CLI, gate daemon, relay, tests) goes
through. It owns the effects the pure core does not: the wall clock, the
SQLite store and the data-directory lock. Every write returns only after its
log entry is durable (per the store's durability setting).
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from headcount.core import csvimport
from headcount.core.chain import ZERO_HASH
from headcount.core.errors import (
    InputError,
    NotFoundError,
    RemoteProtocolError,
    StoreError,
)
from headcount.core.event import Event
from headcount.core.eventdoc import EventDoc, integrated
from headcount.core.hlc import DEFAULT_FUTURE_TOLERANCE_MS, HybridClock
from headcount.core.identity import Identity, Role, create_identity, default_data_dir, load_identity
from headcount.core.ids import check_id
from headcount.core.model import (
    CheckInResult,
    Conflict,
    EventStatus,
    LogEntry,
    Participant,
    ScanKind,
    Violation,
)
from headcount.core.validate import check_entries
from headcount.store.sqlite import DB_FILE, Durability, Store

from . import apply, lazyapply
from .apply import ApplyResult

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 2000  # log entries since the last snapshot before taking a new one
REFUSALS_KEPT = 100  # the latest refused peer entries kept for status
REJOIN_KEY = "rejoin_events"  # meta: events restored from a backup, not yet caught up


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Replica:
    """A device's replica of every event it serves.

    Open with :meth:`open`; use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        data_dir: Path,
        identity: Identity,
        store: Store,
        *,
        wall_clock: Callable[[], int] = wall_clock_ms,
        future_tolerance_ms: int = DEFAULT_FUTURE_TOLERANCE_MS,
        lock_fd: int | None = None,
        read_only: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.identity = identity
        self.store = store
        self.wall_clock = wall_clock
        self.read_only = read_only
        self._lock_fd = lock_fd
        stored_hlc = store.get_meta("hlc", 0)
        hlc = int(stored_hlc) if isinstance(stored_hlc, int | str) and stored_hlc else 0
        self.clock = HybridClock(hlc, future_tolerance_ms)
        if not read_only and store.public_key(identity.device_id) != identity.public_key_raw:
            store.trust(
                identity.device_id, identity.public_key_raw, identity.role.value, wall_clock()
            )
        self._events: dict[str, Event] = {}
        # Written state was undone (a failed group commit): reload from disk.
        store.on_rollback.append(self._events.clear)
        self._closed = False
        self._roles: dict[str, str] = store.devices()  # certified roles, for EventDoc
        # Keep Y observers registered between batches (EventDoc.keep_observers):
        # for replicas that mostly apply what peers send (relays).
        self.keep_observers = False
        # Log peers' entries at once, apply them to documents when read
        # (lazyapply.py): for replicas that store and forward far more than
        # they read (relays).
        self.lazy_apply = False
        self._unapplied: dict[str, list[LogEntry]] = {}
        # lazy_apply: per loaded event, logged entries its document holds back
        self._held: dict[str, dict[tuple[str, int], LogEntry]] = {}
        self._rejoin: set[str] = set(json.loads(str(store.get_meta(REJOIN_KEY) or "[]")))
        # Peers' entries refused for what they do (core/validate.py): counts
        # by reason (metrics, status) and the latest few (for people).
        self.refused: Counter[str] = Counter()
        self.refusals: deque[Violation] = deque(maxlen=REFUSALS_KEPT)

    # -- lifecycle ------------------------------------------------------

    @staticmethod
    def init(data_dir: Path | None = None, *, role: Role = Role.GATE, name: str = "") -> Identity:
        """Create a device in ``data_dir`` (see :func:`create_identity`)."""
        data_dir = Path(data_dir) if data_dir else default_data_dir()
        identity = create_identity(data_dir, role=role, name=name)
        Store(data_dir / DB_FILE).close()
        return identity

    @classmethod
    def open(
        cls,
        data_dir: Path | str | None = None,
        *,
        durability: Durability | str = Durability.FULL,
        read_only: bool = False,
        wall_clock: Callable[[], int] = wall_clock_ms,
        future_tolerance_ms: int = DEFAULT_FUTURE_TOLERANCE_MS,
    ) -> Replica:
        """Open the device in ``data_dir``.

        A writable replica holds an exclusive lock on the data directory;
        ``read_only`` replicas take no lock and refuse writes.

        Raises:
            StoreError: no device there, another process holds it, or the
                store is unusable.
        """
        path = Path(data_dir) if data_dir else default_data_dir()
        try:
            durability = Durability(durability)
        except ValueError:
            choices = ", ".join(d.value for d in Durability)
            raise InputError(f"durability must be one of {choices}, not {durability!r}") from None
        identity = load_identity(path)
        lock_fd = None if read_only else lock_data_dir(path)
        try:
            store = Store(path / DB_FILE, durability)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(
            path,
            identity,
            store,
            wall_clock=wall_clock,
            future_tolerance_ms=future_tolerance_ms,
            lock_fd=lock_fd,
            read_only=read_only,
        )

    def close(self) -> None:
        """Flush, snapshot large log tails and release the lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.read_only:
                for event in list(self._events):
                    self.maybe_snapshot(event)
            self.store.close()
        finally:
            self._events.clear()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (the store is closed)."""
        return self._closed

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    @property
    def role(self) -> Role:
        return self.identity.role

    @property
    def roles(self) -> Mapping[str, str]:
        """Every device in the directory and its certified role (read-only)."""
        return MappingProxyType(self._roles)

    def trust(
        self, device_id: str, public_key: bytes, role: Role | str, cert: bytes | None = None
    ) -> None:
        """Add a device to this replica's directory: its entries will verify.
        ``cert`` (DER) is the certificate that vouched for it, passed on to
        peers so that they can verify entries relayed from it.

        Raises:
            InputError: malformed id, key or role.
        """
        self._writable()
        check_id("device", device_id)
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise InputError("a device's public key is 32 raw Ed25519 bytes")
        try:
            role = Role(role)
        except ValueError:
            raise InputError(f"unknown role {role!r}") from None
        self.store.trust(device_id, public_key, role.value, self.wall_clock(), cert)
        self._roles[device_id] = role.value

    # -- events -----------------------------------------------------------

    def events(self) -> list[str]:
        return self.store.events()

    def event(self, event_id: str) -> Event:
        """The loaded event (snapshot + log tail on first use).

        Raises:
            NotFoundError: this replica has no such event.
        """
        ev = self._events.get(event_id)
        if ev is None:
            if not self.store.has_event(event_id):
                raise NotFoundError(f"no event {event_id!r} on this device (see `event list`)")
            self._unapplied.pop(event_id, None)  # the load reads them from the log
            ev = self._events[event_id] = self._load(event_id)
        elif event_id in self._unapplied:
            self._catch_up(event_id, ev)
        return ev

    def _catch_up(self, event_id: str, ev: Event, limit: int | None = None) -> int:
        """Apply what :attr:`lazy_apply` accepted since the event was loaded
        (at most ``limit`` entries; the rest stay queued, in order)."""
        todo = self._unapplied.pop(event_id)
        if limit is not None and len(todo) > limit:
            todo, self._unapplied[event_id] = todo[:limit], todo[limit:]
        self._apply_logged(event_id, ev, todo)
        return len(todo)

    def _apply_logged(self, event_id: str, ev: Event, entries: list[LogEntry]) -> None:
        held = self._held.setdefault(event_id, {})
        lazyapply.apply_logged(ev, held, entries)
        if not held:
            self._held.pop(event_id, None)

    def held_back(self, event_id: str) -> list[LogEntry]:
        """Logged entries of a loaded event that its document does not hold
        yet (their Y dependencies have not arrived). Only a lazy relay logs
        such entries; compaction must not fold them (the document, hence a
        snapshot, lacks them) and a reload finds them again in the log."""
        return sorted(self._held.get(event_id, {}).values(), key=lambda e: (e.device, e.seq))

    def catch_up_some(self, limit: int) -> int:
        """:attr:`lazy_apply`: apply up to ``limit`` accepted entries to the
        loaded documents (a relay does this between other work, so that
        reads find their documents current); returns how many."""
        done = 0
        for event_id in list(self._unapplied):
            ev = self._events.get(event_id)
            if ev is None:
                self._unapplied.pop(event_id, None)  # its load reads them from the log
                continue
            done += self._catch_up(event_id, ev, limit - done)
            if done >= limit:
                break
        return done

    def is_loaded(self, event_id: str) -> bool:
        return event_id in self._events

    def is_current(self, event_id: str) -> bool:
        """The event is loaded and holds everything accepted (reading it is cheap)."""
        return event_id in self._events and event_id not in self._unapplied

    def _load(self, event_id: str) -> Event:
        snap = self.store.snapshot(event_id)
        if snap is None and self.store.horizon(event_id):
            raise StoreError(
                f"event {event_id!r}: the snapshot holding compacted entries is unreadable; "
                "restore this device from a backup",
                code="snapshot_lost",
            )
        doc = self._new_doc(event_id)
        updates = [snap.state] if snap else []
        updates += [e.update for e in self.store.log_tail(event_id, snap.upto if snap else 0)]
        try:
            doc.load(updates)
        except RemoteProtocolError:
            if snap is None:
                raise StoreError(f"event {event_id!r}: the stored log does not decode") from None
            doc = self._new_doc(event_id)
            doc.load([e.update for e in self.store.log_tail(event_id, 0)])
        ev = Event(doc)
        if self.lazy_apply:
            # A lazy relay's documents hold exactly its version vector; what
            # they hold back is still in the log (compaction never folds it).
            self._held.pop(event_id, None)
            state = doc.doc.get_state()
            missing = [
                e for e in self.store.log_tail(event_id, 0) if not integrated(e.update, state)
            ]
            self._apply_logged(event_id, ev, missing)
        else:
            for entry in self.store.pending(event_id):
                doc.apply_remote(entry.update)
        return ev

    def _forget(self, event_id: str) -> None:
        """Drop the in-memory document (the next read loads it from disk)."""
        self._events.pop(event_id, None)
        self._held.pop(event_id, None)

    def _new_doc(self, event_id: str) -> EventDoc:
        """An empty document for ``event_id`` that continues this device's chain."""
        own = self.store.version_vector(event_id).get(self.device_id, 0)
        last = self.store.hash_of(event_id, self.device_id, own) or ZERO_HASH
        doc = EventDoc(
            event_id, self.device_id, self.role.value, self.clock, own + 1, last, self._roles.get
        )
        doc.keep_observers = self.keep_observers
        return doc

    def create_event(
        self, event_id: str, name: str = "", schema: Mapping[str, Any] | None = None
    ) -> Event:
        """Create an event with an optional schema extension.

        Raises:
            InputError: bad id, name or schema; the event already exists.
        """
        self._writable()
        check_id("event", event_id)
        if self.store.has_event(event_id):
            raise InputError(f"event {event_id!r} already exists", code="exists")
        now = self.wall_clock()
        ev = Event(self._new_doc(event_id))
        entry = ev.create(name or event_id, schema, now)
        self._events[event_id] = ev
        self._commit(event_id, [entry])
        return ev

    # -- writes -------------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError("this replica was opened read-only")

    def _check_rejoin(self, event_id: str) -> None:
        # Restored from a backup, this device's own chain may be behind what
        # peers hold: a local write now could reuse a sequence number.
        if event_id in self._rejoin:
            raise StoreError(
                f"event {event_id!r} was restored from a backup: connect this device to a "
                "peer first so that it catches up with its own entries (or run "
                f"`headcount backup rejoin --force {event_id}` to accept the risk)",
                code="rejoin_pending",
            )

    @property
    def rejoin_pending(self) -> frozenset[str]:
        """Events restored from a backup that refuse local writes until rejoined."""
        return frozenset(self._rejoin)

    def mark_rejoined(self, event_id: str) -> None:
        """Allow local writes to a restored event again (its chain caught up)."""
        self._writable()
        if event_id in self._rejoin:
            self.store.set_meta(REJOIN_KEY, json.dumps(sorted(self._rejoin - {event_id})))
            self._rejoin.discard(event_id)
            self.sync_own_chain(event_id)

    def _commit(self, event_id: str, entries: list[LogEntry]) -> None:
        """Make entries durable; on failure forget the in-memory state so it
        is reloaded from what is really on disk."""
        if not entries:
            return
        try:
            self.store.append(entries, self.clock.last)
        except Exception as exc:
            self._forget(event_id)
            raise StoreError(f"could not write to the store: {exc}") from exc

    def _write(
        self, event_id: str, op: Callable[[Event, int], LogEntry | list[LogEntry] | None]
    ) -> list[LogEntry]:
        self._writable()
        self._check_rejoin(event_id)
        ev = self.event(event_id)
        try:
            result = op(ev, self.wall_clock())
        finally:
            self._forget_if_broken(event_id, ev)
        entries = [] if result is None else result if isinstance(result, list) else [result]
        self._commit(event_id, entries)
        return entries

    def _forget_if_broken(self, event_id: str, ev: Event) -> None:
        if ev.doc.broken:
            self._forget(event_id)

    def import_participants(
        self, event_id: str, rows: Iterable[Mapping[str, Any]]
    ) -> csvimport.ImportReport:
        """Create or update participants, all or nothing (see :meth:`Event.upsert_participants`)."""
        if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
            raise InputError("rows must be a list of mappings (field -> value)")
        rows = list(rows)
        changed: list[int] = []

        def op(ev: Event, now: int) -> list[LogEntry]:
            entries, count = ev.upsert_participants(rows, now)
            changed.append(count)
            return entries

        entries = self._write(event_id, op)
        return csvimport.ImportReport(rows=len(rows), changed=changed[0], entries=len(entries))

    def import_csv(
        self,
        event_id: str,
        path: Path | str,
        *,
        batch_rows: int | None = None,
        progress: Callable[[csvimport.ImportProgress], None] | None = None,
    ) -> csvimport.ImportReport:
        """Import participants from a CSV file, streamed: memory does not
        grow with the file (see :mod:`headcount.core.csvimport`).

        1. Every row is checked, against the file's rules and the event,
           before anything is written: one bad row and nothing is written.
        2. The file is read again and written ``batch_rows`` rows at a time
           (default :data:`csvimport.BATCH_ROWS`), each batch durable
           before the next is read. A failure half-way (a
           full disk, the file changed meanwhile) leaves the batches before
           it imported; importing the file again completes the import
           (unchanged values are not rewritten).
        3. A file of more than one batch is not kept in memory: the event is
           reloaded from the store when next read.

        Raises:
            NotFoundError: no such event; a row updates a deleted participant.
            InputError: the file is unreadable, a row is invalid (the
                message starts with ``FILE:LINE``) or the file changed
                during the import.
            StoreError: a batch could not be written (those before it were).
        """
        self._writable()
        self._check_rejoin(event_id)
        ev = self.event(event_id)
        say = progress or (lambda _: None)
        batch_rows = csvimport.BATCH_ROWS if batch_rows is None else batch_rows
        with csvimport.ParticipantsCsv.open(Path(path), ev.schema, batch_rows) as source:
            check = ev.participant_check()
            total = source.check(check, lambda n: say(csvimport.ImportProgress("checked", n)))
            keep = total <= batch_rows  # small: the event stays loaded, as after any write
            counts = [0, 0, 0]  # rows, changed, entries
            shape = ev.participant_check(checked=True)  # batches() verifies they were checked

            def op(batch: list[csvimport.Located], ev: Event, now: int) -> list[LogEntry]:
                changes = ev.participant_changes(shape(where, row) for where, row in batch)
                counts[1] += len(changes)
                return ev.write_participants(changes, now, keep_new=keep)

            try:
                for batch in source.batches():
                    counts[2] += len(self._write(event_id, functools.partial(op, batch)))
                    counts[0] += len(batch)
                    say(csvimport.ImportProgress("imported", counts[0], total))
            finally:
                if not keep:
                    self._forget(event_id)  # its indexes lack what was imported
        return csvimport.ImportReport(rows=total, changed=counts[1], entries=counts[2])

    def upsert_participant(self, event_id: str, pid: str, fields: Mapping[str, Any]) -> bool:
        """Create or update one participant; False if nothing changed."""
        return self.import_participants(event_id, [{"id": pid, **fields}]).changed > 0

    def delete_participant(self, event_id: str, pid: str) -> None:
        self._write(event_id, lambda ev, now: ev.delete_participant(pid, now))

    def set_config(self, event_id: str, key: str, value: object) -> None:
        self._write(event_id, lambda ev, now: ev.set_config(key, value, now))

    def check_in(self, event_id: str, who: str, **kw: Any) -> CheckInResult:
        """Record a check-in; returns once it is durable. See :meth:`Event.record_scan`."""
        return self._scan(ScanKind.IN, event_id, who, **kw)

    def check_out(self, event_id: str, who: str, **kw: Any) -> CheckInResult:
        return self._scan(ScanKind.OUT, event_id, who, **kw)

    def _scan(
        self,
        kind: ScanKind,
        event_id: str,
        who: str,
        *,
        gate: str | None = None,
        method: str = "qr",
        **kw: Any,
    ) -> CheckInResult:
        self._writable()
        self._check_rejoin(event_id)
        ev = self.event(event_id)
        try:
            scan, entry = ev.record_scan(
                kind,
                who,
                gate=self.identity.name if gate is None else gate,
                method=method,
                wall_ms=self.wall_clock(),
                **kw,
            )
        finally:
            self._forget_if_broken(event_id, ev)
        if entry is not None:
            self._commit(event_id, [entry])
        return CheckInResult(
            scan, entry is not None, entry, functools.partial(ev.attendance, scan.participant)
        )

    def resolve_conflict(self, event_id: str, conflict_id: str, **kw: Any) -> None:
        self._write(event_id, lambda ev, now: ev.resolve(conflict_id, now, **kw))

    # -- reads ------------------------------------------------------------

    def participant(self, event_id: str, pid: str) -> Participant:
        return self.event(event_id).participant(pid)

    def conflicts(self, event_id: str) -> list[Conflict]:
        return self.event(event_id).conflicts()

    def version_vector(self, event_id: str) -> dict[str, int]:
        return self.store.version_vector(event_id)

    def status(self, event_id: str) -> EventStatus:
        counts = self.event(event_id).counts()
        return EventStatus(event_id, version_vector=self.version_vector(event_id), **counts)

    # -- replication ------------------------------------------------------

    def export_since(self, event_id: str, vv: Mapping[str, int]) -> list[LogEntry]:
        """Every entry of the event that a replica with version vector ``vv`` lacks."""
        self.event(event_id)
        return self.store.entries_since(event_id, vv)

    def apply_entries(self, entries: Iterable[LogEntry]) -> ApplyResult:
        """Apply entries from a peer, in any order, with duplicates.

        Each device's entries are applied in sequence order; an entry whose
        predecessor is missing, or whose Y items wait for another device's
        entry, is kept (durably) as pending and retried as more arrive.
        Rejected entries (undecodable, future timestamps) change nothing.
        """
        self._writable()
        result = ApplyResult()
        by_event: dict[str, list[LogEntry]] = {}
        for entry in entries:
            reason = apply.shape_error(entry)
            if reason:
                result.rejected.append((entry, reason))
            else:
                by_event.setdefault(entry.event, []).append(entry)
        archived = self.store.archived()
        for event_id, batch in by_event.items():
            if event_id in archived:  # moved to an archive: nothing more is taken in
                result.duplicates += len(batch)
                continue
            batch = self._admissible(event_id, batch, result)
            if batch:
                self._apply_event(event_id, batch, result)
        return result

    def _admissible(
        self, event_id: str, batch: list[LogEntry], result: ApplyResult
    ) -> list[LogEntry]:
        """``batch`` without the entries of quarantined devices, and with what
        each entry does checked against its signer's certified role
        (core/validate.py): a device caught is quarantined for the event and
        none of its entries is applied (nor, then, forwarded)."""
        quarantined = self.store.quarantined(event_id) if self.store.has_event(event_id) else ()
        if quarantined:
            batch = [e for e in batch if e.device not in quarantined]
        ok, violations = check_entries(batch, self._roles)
        for violation in violations:
            self.store.quarantine(event_id, violation.device, violation.seq, self.wall_clock())
            self.refused[violation.reason] += 1
            self.refusals.append(violation)
            result.refused.append(violation)
            log.warning(
                "refused entry %d of device %s on event %s: %s (%s); the device is quarantined",
                violation.seq,
                violation.device,
                violation.event,
                violation.reason,
                violation.detail,
            )
        return ok

    def _apply_event(self, event_id: str, batch: list[LogEntry], result: ApplyResult) -> None:
        if self.lazy_apply:
            self._accept_event(event_id, batch, result)
            return
        known = event_id in self._events or self.store.has_event(event_id)
        if known:
            ev = self.event(event_id)
        else:  # learnt from a peer; registered in the store only if something sticks
            ev = Event(self._new_doc(event_id))
            self._events[event_id] = ev
        done = apply.integrate(ev, self.store, self.clock, self.wall_clock, batch)
        result.applied += len(done.applied)
        result.pending += len(done.still)
        result.duplicates += done.duplicates
        result.rejected += done.rejected
        try:
            if done.applied:
                self.store.append(done.applied, self.clock.last, force=True)
            if done.still:
                self.store.add_pending(done.still)
        except Exception as exc:
            self._forget(event_id)
            raise StoreError(f"could not write to the store: {exc}") from exc
        if done.undecodable or (not known and not done.applied and not done.still):
            # Garbage may have half-applied inside yrs; reload what is on disk.
            self._forget(event_id)
            return
        self.sync_own_chain(event_id)

    def _accept_event(self, event_id: str, batch: list[LogEntry], result: ApplyResult) -> None:
        """:attr:`lazy_apply`: log now, apply when the event is next read."""
        try:
            accepted, pending, duplicates, rejected = lazyapply.accept(
                self.store, self.clock, self.wall_clock, event_id, batch
            )
        except Exception as exc:
            self._forget(event_id)
            self._unapplied.pop(event_id, None)
            raise StoreError(f"could not write to the store: {exc}") from exc
        result.applied += len(accepted)
        result.pending += len(pending)
        result.duplicates += duplicates
        result.rejected += rejected
        if accepted and event_id in self._events:
            self._unapplied.setdefault(event_id, []).extend(accepted)
        self.sync_own_chain(event_id)

    def remove_archived(self, event_id: str, location: str) -> None:
        """Take an event out of the live store once it is safe in an archive
        file at ``location`` (the caller wrote and verified it): its rows are
        deleted, and from now on what peers send of it is ignored.

        Raises:
            NotFoundError: no such event here.
        """
        self._writable()
        if not self.store.has_event(event_id):
            raise NotFoundError(f"no event {event_id!r} on this device (see `event list`)")
        self.store.remove_event(event_id, self.wall_clock(), location)
        self._forget(event_id)
        self._unapplied.pop(event_id, None)  # lazy_apply: already logged, now archived

    def event_for_peer(self, event_id: str) -> Event:
        """The event, registering it if a peer is the first to tell us of it."""
        if event_id not in self._events and not self.store.has_event(event_id):
            check_id("event", event_id)
            if event_id in self.store.archived():
                raise RemoteProtocolError(
                    f"event {event_id!r} was archived on this device", code="archived"
                )
            self.store.add_event(event_id, self.wall_clock())
        return self.event(event_id)

    def sync_own_chain(self, event_id: str) -> None:
        """Continue our chain after our own entries came back from a peer (e.g.
        after a restore): never reuse a sequence number."""
        ev = self._events.get(event_id)
        own = self.store.version_vector(event_id).get(self.device_id, 0)
        if ev is not None and own + 1 > ev.doc.next_seq:
            ev.doc.next_seq = own + 1
            ev.doc.last_hash = self.store.hash_of(event_id, self.device_id, own) or ZERO_HASH

    # -- snapshots ------------------------------------------------------

    def maybe_snapshot(self, event_id: str, every: int = SNAPSHOT_EVERY) -> bool:
        """Snapshot the event if the log grew by ``every`` entries since the last one."""
        if self.read_only:
            return False
        self.store.flush()
        snap = self.store.snapshot(event_id)
        last = self.store.last_log_id(event_id)
        tail = self.store.tail_count(event_id, snap.upto if snap else 0)
        if tail < every or event_id not in self._events:
            return False
        state = self.event(event_id).doc.encode_state()
        self.store.save_snapshot(event_id, last, state, self.wall_clock())
        return True


def lock_data_dir(path: Path) -> int:
    """Take the data directory's exclusive lock (held until the returned file
    descriptor is closed, or the process dies).

    Raises:
        StoreError: ``locked``: another process holds it.
    """
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"{path} is in use by another headcount process (stop it, or use --read-only)",
            code="locked",
        ) from None
    return fd
