"""One event as a pycrdt document, with indexes for fast reads. No I/O.

Three root arrays (named root types, never nested containers), append-only:

``r``  register entries (see registers.py): participant fields and
       configuration keys, one string per write.
``s``  the scan audit set: one string per scan,
       ``id SEP participant SEP kind SEP ts_ms SEP hlc SEP gate SEP method SEP device``.
``h``  conflict resolutions, one JSON string each.

Arrays rather than maps because Yrs squashes consecutive appends of one
client into one block: an event with 150,000 items decodes in ~20 ms instead
of ~900 ms. Nothing is ever deleted from them.

Every local operation is one Y transaction that becomes one :class:`LogEntry`;
the caller (the replica) makes it durable. Remote updates go through
:meth:`EventDoc.apply_remote`, which keeps the indexes in step via observers.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

from pycrdt import Array, ArrayEvent, Doc, TransactionEvent, get_update

from . import registers as R
from .chain import ZERO_HASH, with_digest
from .errors import RemoteProtocolError
from .hlc import HybridClock
from .model import LogEntry, Method, Scan, ScanKind
from .schema import Policy, Schema, default_schema
from .yclient import derive_client_id

PARTICIPANT = "p"
CONFIG = "c"
SCHEMA_KEY = "_schema"
CONFIG_FIELD = "value"


def record_key(kind: str, record: str) -> str:
    return f"{kind}{R.SEP}{record}"


def encode_scan(scan: Scan) -> str:
    return R.SEP.join(
        (
            scan.id,
            scan.participant,
            scan.kind.value,
            str(scan.ts_ms),
            str(scan.hlc),
            scan.gate,
            scan.method.value,
            scan.device,
        )
    )


_KINDS = {k.value: k for k in ScanKind}
_METHODS = {m.value: m for m in Method}


def decode_scan(raw: Any) -> Scan | None:
    try:
        sid, pid, kind, ts_ms, hlc, gate, method, device = raw.split(R.SEP)
        return Scan(sid, pid, _KINDS[kind], int(ts_ms), int(hlc), gate, _METHODS[method], device)
    except (AttributeError, ValueError, KeyError):
        return None


def integrated(update: bytes, state: bytes) -> bool:
    """Whether every struct of ``update`` is covered by a document whose
    state vector is ``state``."""
    missing = get_update(update, state)
    return missing[:1] == b"\x00"  # zero client groups: only a delete set remains


def _capture(box: list[bytes | None], event: TransactionEvent) -> None:
    box[0] = event.update


class EventDoc:
    """The CRDT state of one event plus the indexes derived from it.

    Args:
        event: the event id.
        device: this device's id (the origin of local entries).
        role: this device's role, stored with each register entry.
        clock: the device's hybrid logical clock (shared by all its events).
        next_seq: the sequence number of this device's next entry.
        last_hash: the hash of this device's previous entry (its chain head).
        role_of: ``device -> certified role`` (None for a device not in the
            directory). Register entries whose declared role differs from the
            certified one, and resolutions or deletions by a non-admin, are
            ignored — identically on every replica, as roles come from
            certificates.
    """

    def __init__(
        self,
        event: str,
        device: str,
        role: str,
        clock: HybridClock,
        next_seq: int = 1,
        last_hash: bytes = ZERO_HASH,
        role_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self.event = event
        self.device = device
        self.role = role
        self.clock = clock
        self.next_seq = next_seq
        self.last_hash = last_hash  # hash of this device's latest entry: the next one's prev
        self.role_of = role_of  # the certified role of a device (None: not enforced)
        self.refused = 0  # entries written by a role that may not write them
        # A fresh Y client id for every document instance (design.md), bound
        # to this device and the first entry it will write (yclient.py).
        self.doc: Doc[Array[str]] = Doc(client_id=derive_client_id(device, event, next_seq))
        self.regs: Array[str] = self.doc.get("r", type=Array)
        self.scans_array: Array[str] = self.doc.get("s", type=Array)
        self.history_array: Array[str] = self.doc.get("h", type=Array)
        self.records: dict[str, dict[str, R.RegEntry]] = {}
        self.scans: dict[str, Scan] = {}
        self.scans_by_participant: dict[str, list[str]] = {}
        self.dedup: dict[tuple[str, int, str, str], str] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()
        self.ignored = 0  # malformed remote elements skipped by the indexes
        self._schema: Schema | None = None
        self._stale = False
        self._observing = False
        self._subs: list[tuple[Array[str], Any]] | None = None  # registered observers
        self.keep_observers = False
        self.broken = False  # a local transaction failed half-way: reload from disk
        self._txn: Any = None  # the open Rust transaction inside transact()
        # The observer must not reference self: pycrdt holds it on the Rust
        # side, where Python's garbage collector cannot break a cycle.
        self._captured: list[bytes | None] = [None]
        self.doc.observe(functools.partial(_capture, self._captured))

    # -- applying state -------------------------------------------------

    def load(self, updates: list[bytes]) -> None:
        """Apply a snapshot and/or log entries, then build the indexes once.

        Raises:
            RemoteProtocolError: an update cannot be decoded.
        """
        # One transaction per update: Yrs commits one transaction holding
        # many updates in superlinear time and memory (1,000 import entries:
        # 2 GB and seconds; one each: 0.3 GB, linear).
        for update in updates:
            self._apply_raw(update)
        self.rebuild_indexes()

    def rebuild_indexes(self) -> None:
        self.records.clear()
        self.scans.clear()
        self.scans_by_participant.clear()
        self.dedup.clear()
        self.history.clear()
        self.dirty.clear()
        self.ignored = 0
        # str(array) is the array as JSON, built in Rust: ~20x faster than
        # iterating (which opens a transaction per element).
        for raw in json.loads(str(self.regs)):
            self._put_register(raw)
        for raw in json.loads(str(self.scans_array)):
            self._put_scan(raw)
        for raw in json.loads(str(self.history_array)):
            self._put_history(raw)
        self.dirty.update(self.records)
        self._schema = None
        self._stale = False

    @contextlib.contextmanager
    def observing(self) -> Iterator[None]:
        """Keep the indexes in step with remote updates applied inside.
        Registering observers costs more than applying a small update, so a
        batch registers them once; with :attr:`keep_observers` (a relay,
        which applies far more than it writes) they stay registered, and
        the local writes they then also see change nothing (every index
        update is idempotent)."""
        if self._observing:
            yield
            return
        if self._subs is None:
            self._subs = [
                (self.regs, self.regs.observe(self._observer(self._put_register))),
                (self.scans_array, self.scans_array.observe(self._observer(self._put_scan))),
                (
                    self.history_array,
                    self.history_array.observe(self._observer(self._put_history)),
                ),
            ]
        self._observing = True
        try:
            yield
        finally:
            self._observing = False
            if not self.keep_observers:
                for array, sub in self._subs:
                    array.unobserve(sub)
                self._subs = None
            if self._stale:
                # Someone deleted from an append-only array. Only a faulty or
                # hostile peer does; rebuild from the document so that every
                # replica's indexes match its document exactly.
                self.rebuild_indexes()

    def apply_remote(self, update: bytes) -> bool:
        """Apply a peer's update and update the indexes.

        Returns:
            True if every item of the update integrated; False if some are
            held back by yrs waiting for missing dependencies (the caller keeps
            the update and re-applies it after more arrive).

        Raises:
            RemoteProtocolError: the update cannot be decoded.
        """
        with self.observing():
            self._apply_raw(update)
        return self.integrated(update)

    def _observer(self, put: Callable[[Any], None]) -> Callable[[ArrayEvent], None]:
        def on_change(event: ArrayEvent) -> None:
            for op in event.delta:  # type: ignore[attr-defined]  # in __slots__, not annotated
                if "insert" in op:
                    for raw in op["insert"]:
                        put(raw)
                elif "delete" in op:
                    self._stale = True

        return on_change

    def integrated(self, update: bytes) -> bool:
        """Whether every struct of ``update`` is part of the document."""
        return integrated(update, self.doc.get_state())

    def _apply_raw(self, update: bytes) -> None:
        try:
            self.doc.apply_update(update)
        except BaseException as exc:  # pyo3 PanicException derives from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise RemoteProtocolError(f"undecodable update: {exc}") from None

    def encode_state(self) -> bytes:
        return self.doc.get_update()

    # -- index maintenance ----------------------------------------------

    def _put_register(self, raw: Any) -> None:
        entry = R.decode_entry(raw)
        if entry is None:
            self.ignored += 1
            return
        if not self._permitted(entry):
            self.refused += 1
            return
        rkey = record_key(entry.kind, entry.record)
        self.records.setdefault(rkey, {})[entry.dot] = entry
        self.dirty.add(rkey)
        if rkey == record_key(CONFIG, SCHEMA_KEY):
            self._schema = None

    def _permitted(self, entry: R.RegEntry) -> bool:
        if self.role_of is None:
            return True
        # A device not in the directory holds no role: its entries count as
        # a gate's at most (one claiming more is ignored, not believed).
        certified = self.role_of(entry.device) or "gate"
        if certified != entry.role:
            return False
        if entry.kind == CONFIG and certified not in R.AUTHORITY_ROLES:
            return False  # configuration is an authority's (the event's name and schema too)
        admin_only = R.DELETED in entry.fields or bool(entry.aux and "resolves" in entry.aux)
        return certified == "admin" or not admin_only

    def _put_scan(self, raw: Any, scan: Scan | None = None) -> None:
        """Index a scan. ``scans`` is keyed by idempotency key; the same key
        used by several devices cannot hide anyone's scan: the smallest
        device id keeps the plain key and each other device's scan is kept
        under ``key SEP device`` (the same layout on every replica whatever
        the arrival order). One device's same key twice (a re-sent
        operation) keeps the smallest encoding."""
        scan = scan or decode_scan(raw)
        if scan is None:
            self.ignored += 1
            return
        primary = self.scans.get(scan.id)
        if primary is None:
            self._index_scan(scan.id, scan)
        elif primary.device == scan.device:
            self._replace_scan(scan.id, primary, scan, raw)
        elif scan.device > primary.device:
            key = f"{scan.id}{R.SEP}{scan.device}"
            old = self.scans.get(key)
            if old is None:
                self._index_scan(key, scan)
            else:
                self._replace_scan(key, old, scan, raw)
        else:  # the newcomer takes the plain key; the former holder moves aside
            self._drop_scan(scan.id, primary)
            self._index_scan(f"{primary.id}{R.SEP}{primary.device}", primary)
            self._index_scan(scan.id, scan)

    def _replace_scan(self, key: str, old: Scan, scan: Scan, raw: str) -> None:
        if raw < encode_scan(old):
            self._drop_scan(key, old)
            self._index_scan(key, scan)

    def _index_scan(self, key: str, scan: Scan) -> None:
        self.scans[key] = scan
        self.scans_by_participant.setdefault(scan.participant, []).append(key)
        self.dedup.setdefault((scan.device, scan.ts_ms, scan.participant, scan.kind.value), key)

    def _drop_scan(self, key: str, old: Scan) -> None:
        del self.scans[key]
        keys = self.scans_by_participant[old.participant]
        keys.remove(key)
        if not keys:
            del self.scans_by_participant[old.participant]
        twin = (old.device, old.ts_ms, old.participant, old.kind.value)
        if self.dedup.get(twin) == key:
            del self.dedup[twin]

    def _put_history(self, raw: Any) -> None:
        try:
            record = json.loads(raw)
            key = f"{record['conflict']['id']}{R.SEP}{record['dot']}"
        except (TypeError, ValueError, KeyError):
            self.ignored += 1
            return
        self.history[key] = record

    # -- local writes ---------------------------------------------------

    def transact(self, wall_ms: int, body: Callable[[str, int], None]) -> LogEntry:
        """Run ``body(dot, hlc)`` in one Y transaction and return its log entry.

        The caller must make the entry durable before reporting success.
        """
        seq = self.next_seq
        dot = f"{self.device}:{seq}"
        hlc = self.clock.now(wall_ms)
        self._captured[0] = None
        with self.doc.transaction() as txn:
            self._txn = txn._txn
            try:
                body(dot, hlc)
            except BaseException:
                # Y cannot roll back: what the body wrote so far is in the
                # document. The owner must discard this object and reload.
                self.broken = True
                raise
            finally:
                self._txn = None
        update = self._captured[0]
        if update is None:  # the body wrote nothing; no entry, no seq used
            raise AssertionError("transaction produced no update")
        self.next_seq = seq + 1
        entry = with_digest(LogEntry(self.event, self.device, seq, hlc, update, self.last_hash))
        self.last_hash = entry.digest
        return entry

    def write_register(
        self,
        kind: str,
        record: str,
        fields: dict[str, Any],
        dot: str,
        hlc: int,
        policies: dict[str, Policy],
        aux: Any = None,
    ) -> None:
        """Inside a transaction: write ``fields`` of a record as one entry,
        superseding every candidate this device has seen and may supersede.

        An entry is superseded for every field it shares with the write, so it
        is listed only if this device may supersede it for all of them.
        """
        candidates = {f: self.field_candidates(kind, record, f) for f in fields}
        conflicted = {f: R.merge(policies[f], live, f)[1] for f, live in candidates.items()}
        sup: set[str] = set()
        for live in candidates.values():
            for e in live:
                shared = [f for f in fields if f in e.fields]
                if all(R.may_supersede(policies[f], e, self.role, conflicted[f]) for f in shared):
                    sup.add(e.dot)
        raw = R.encode_entry(kind, record, dot, fields, hlc, self.role, sup, aux)
        self._append(self.regs, raw)
        self._put_register(raw)

    def _append(self, array: Array[str], raw: str) -> None:
        # Array.append goes through slice assignment: three nested
        # transactions and two length queries. Inserting at the end inside
        # the open transaction is twice as fast (pycrdt is pinned < 0.15).
        txn = self._txn
        assert txn is not None, "write outside EventDoc.transact"
        array.integrated.insert(txn, array.integrated.len(txn), raw)

    def write_scan(self, scan: Scan) -> None:
        raw = encode_scan(scan)
        self._append(self.scans_array, raw)
        self._put_scan(raw, scan)

    def write_history(self, record: dict[str, Any]) -> None:
        raw = json.dumps(record, sort_keys=True, separators=(",", ":"))
        self._append(self.history_array, raw)
        self._put_history(raw)

    # -- reads ----------------------------------------------------------

    @property
    def schema(self) -> Schema:
        """The event's schema: the default extended by the event's own."""
        if self._schema is None:
            base = default_schema()
            ext, _ = self.field_value(CONFIG, SCHEMA_KEY, CONFIG_FIELD)
            try:
                self._schema = base.extend(json.loads(ext)) if ext else base
            except Exception:
                self._schema = base
        return self._schema

    def policy(self, kind: str, record: str, field: str) -> Policy:
        if kind == CONFIG:
            return Policy.AUTHORITY if record == SCHEMA_KEY else self.schema.config_policy(record)
        if field == R.DELETED:
            return Policy.LWW
        return self.schema.participant.get(field, Policy.LWW)

    def field_candidates(self, kind: str, record: str, field: str) -> list[R.RegEntry]:
        entries = self.records.get(record_key(kind, record), {}).values()
        return R.candidates(entries, field, self.policy(kind, record, field))

    def field_value(self, kind: str, record: str, field: str) -> tuple[Any, bool]:
        """``(value, conflicted)`` of one field under its policy."""
        live = self.field_candidates(kind, record, field)
        return R.merge(self.policy(kind, record, field), live, field)

    def record_fields(self, kind: str, record: str) -> dict[str, list[R.RegEntry]]:
        """Every field of a record with its candidates."""
        entries = self.records.get(record_key(kind, record), {})
        names = {f for e in entries.values() for f in e.fields}
        return {
            f: R.candidates(entries.values(), f, self.policy(kind, record, f))
            for f in sorted(names)
        }

    def participant_ids(self) -> Iterator[str]:
        prefix = PARTICIPANT + R.SEP
        for rkey in self.records:
            if rkey.startswith(prefix):
                yield rkey[len(prefix) :]

    def config_keys(self) -> Iterator[str]:
        prefix = CONFIG + R.SEP
        for rkey in self.records:
            if rkey.startswith(prefix):
                yield rkey[len(prefix) :]
