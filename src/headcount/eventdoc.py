"""One event as a pycrdt document, with indexes for fast reads. No I/O.

Root maps (created by name, never as nested containers):

``r``  register entries, key ``kind SEP record SEP dot`` (see registers.py);
       kind ``p`` = participant, ``c`` = configuration key.
``s``  the scan audit set, key = the scan's idempotency key (UUID v4).
``h``  conflict resolutions, key ``conflict_id SEP dot``.

Every local operation is one Y transaction that becomes one :class:`LogEntry`;
the caller (the replica) makes it durable. Remote updates go through
:meth:`EventDoc.apply_remote`, which keeps the indexes in step via observers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from pycrdt import Doc, Map, MapEvent, TransactionEvent, get_update

from . import registers as R
from .errors import RemoteProtocolError
from .hlc import HybridClock
from .model import LogEntry, Method, Scan, ScanKind
from .schema import Schema, default_schema

PARTICIPANT = "p"
CONFIG = "c"
SCHEMA_KEY = "_schema"
CONFIG_FIELD = "value"


def record_key(kind: str, record: str) -> str:
    return f"{kind}{R.SEP}{record}"


class EventDoc:
    """The CRDT state of one event plus the indexes derived from it.

    Args:
        event: the event id.
        device: this device's id (the origin of local entries).
        role: this device's role, stored with each register entry.
        clock: the device's hybrid logical clock (shared by all its events).
        next_seq: the sequence number of this device's next entry.
    """

    def __init__(
        self, event: str, device: str, role: str, clock: HybridClock, next_seq: int = 1
    ) -> None:
        self.event = event
        self.device = device
        self.role = role
        self.clock = clock
        self.next_seq = next_seq
        self.doc = Doc()  # a fresh random Y client id on every start (design.md)
        self.regs: Map = self.doc.get("r", type=Map)
        self.scans_map: Map = self.doc.get("s", type=Map)
        self.history_map: Map = self.doc.get("h", type=Map)
        self.records: dict[str, dict[str, R.RegEntry]] = {}
        self.scans: dict[str, Scan] = {}
        self.scans_by_participant: dict[str, list[str]] = {}
        self.dedup: dict[tuple[str, int, str, str], str] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()
        self.ignored = 0  # malformed remote values skipped by the indexes
        self._schema: Schema | None = None
        self._captured: bytes | None = None
        self.doc.observe(self._capture)

    # -- applying state -------------------------------------------------

    def _capture(self, event: TransactionEvent) -> None:
        self._captured = event.update

    def load(self, updates: list[bytes]) -> None:
        """Apply a snapshot and/or log entries, then build the indexes once.

        Raises:
            RemoteProtocolError: an update cannot be decoded.
        """
        with self.doc.transaction():
            for update in updates:
                self._apply_raw(update)
        self.rebuild_indexes()

    def rebuild_indexes(self) -> None:
        self.records.clear()
        self.scans.clear()
        self.scans_by_participant.clear()
        self.dedup.clear()
        self.history.clear()
        self.ignored = 0
        for key, raw in self.regs.items():
            self._put_register(key, raw)
        for key, raw in self.scans_map.items():
            self._put_scan(key, raw)
        for key, raw in self.history_map.items():
            self._put_history(key, raw)
        self._schema = None

    def apply_remote(self, update: bytes) -> bool:
        """Apply a peer's update and update the indexes.

        Returns:
            True if every item of the update integrated; False if some are
            held back by yrs waiting for missing dependencies (the caller keeps
            the update and re-applies it after more arrive).

        Raises:
            RemoteProtocolError: the update cannot be decoded.
        """
        subs = [
            self.regs.observe(self._on_registers),
            self.scans_map.observe(self._on_scans),
            self.history_map.observe(self._on_history),
        ]
        try:
            self._apply_raw(update)
        finally:
            self.regs.unobserve(subs[0])
            self.scans_map.unobserve(subs[1])
            self.history_map.unobserve(subs[2])
        return self.integrated(update)

    def integrated(self, update: bytes) -> bool:
        """Whether every struct of ``update`` is part of the document."""
        missing = get_update(update, self.doc.get_state())
        return missing[:1] == b"\x00"  # zero client groups: only a delete set remains

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

    def _on_registers(self, event: MapEvent) -> None:
        for key, change in event.keys.items():
            if change["action"] == "delete":
                self._del_register(key)
            else:
                self._put_register(key, change["newValue"])

    def _on_scans(self, event: MapEvent) -> None:
        for key, change in event.keys.items():
            if change["action"] != "delete":
                self._put_scan(key, change["newValue"])

    def _on_history(self, event: MapEvent) -> None:
        for key, change in event.keys.items():
            if change["action"] != "delete":
                self._put_history(key, change["newValue"])

    def _put_register(self, key: str, raw: Any) -> None:
        rkey, _, dot = key.rpartition(R.SEP)
        entry = R.decode_entry(dot, raw) if rkey else None
        if entry is None:
            self.ignored += 1
            return
        self.records.setdefault(rkey, {})[dot] = entry
        self._touch(rkey)

    def _del_register(self, key: str) -> None:
        rkey, _, dot = key.rpartition(R.SEP)
        entries = self.records.get(rkey)
        if entries is not None and entries.pop(dot, None) is not None:
            if not entries:
                del self.records[rkey]
            self._touch(rkey)

    def _touch(self, rkey: str) -> None:
        self.dirty.add(rkey)
        if rkey == record_key(CONFIG, SCHEMA_KEY):
            self._schema = None

    def _put_scan(self, scan_id: str, raw: Any) -> None:
        try:
            pid, kind, ts_ms, hlc, gate, method, device = raw
            scan = Scan(
                scan_id,
                str(pid),
                ScanKind(kind),
                int(ts_ms),
                int(hlc),
                str(gate),
                Method(method),
                str(device),
            )
        except (TypeError, ValueError):
            self.ignored += 1
            return
        old = self.scans.get(scan_id)
        if old == scan:
            return
        if old is not None:
            # The same idempotency key was written concurrently by two devices
            # (a re-sent operation): Y keeps one value for the key, identically
            # everywhere, and the indexes follow it.
            self.scans_by_participant[old.participant].remove(scan_id)
            if not self.scans_by_participant[old.participant]:
                del self.scans_by_participant[old.participant]
            old_key = (old.device, old.ts_ms, old.participant, old.kind.value)
            if self.dedup.get(old_key) == scan_id:
                del self.dedup[old_key]
        self.scans[scan_id] = scan
        self.scans_by_participant.setdefault(scan.participant, []).append(scan_id)
        self.dedup.setdefault((scan.device, scan.ts_ms, scan.participant, kind), scan_id)

    def _put_history(self, key: str, raw: Any) -> None:
        try:
            record = json.loads(raw)
        except (TypeError, ValueError):
            self.ignored += 1
            return
        if isinstance(record, dict):
            self.history[key] = record

    # -- local writes ---------------------------------------------------

    def transact(self, wall_ms: int, body: Callable[[str, int], None]) -> LogEntry:
        """Run ``body(dot, hlc)`` in one Y transaction and return its log entry.

        The caller must make the entry durable before reporting success.
        """
        seq = self.next_seq
        dot = f"{self.device}:{seq}"
        hlc = self.clock.now(wall_ms)
        self._captured = None
        with self.doc.transaction():
            body(dot, hlc)
        update = self._captured
        if update is None:  # the body wrote nothing; no entry, no seq used
            raise AssertionError("transaction produced no update")
        self.next_seq = seq + 1
        return LogEntry(self.event, self.device, seq, hlc, update)

    def write_register(
        self,
        kind: str,
        record: str,
        fields: dict[str, Any],
        dot: str,
        hlc: int,
        policies: dict[str, R.Policy],
        aux: Any = None,
        role: str | None = None,
    ) -> None:
        """Inside a transaction: write ``fields`` of a record as one entry,
        superseding every entry this device has seen and may supersede."""
        role = role or self.role
        rkey = record_key(kind, record)
        existing = self.records.get(rkey, {})
        conflicted = {f: self.field_value(kind, record, f)[1] for f in fields}
        sup: list[str] = []
        for edot, entry in list(existing.items()):
            shared = [f for f in fields if f in entry.fields]
            if not shared:
                continue
            if not all(R.may_supersede(policies[f], entry, role, conflicted[f]) for f in shared):
                continue
            if set(entry.fields) <= set(fields):
                del self.regs[f"{rkey}{R.SEP}{edot}"]
                self._del_register(f"{rkey}{R.SEP}{edot}")
            else:
                sup.append(edot)
        raw = R.encode_entry(fields, hlc, role, sup, aux)
        self.regs[f"{rkey}{R.SEP}{dot}"] = raw
        self._put_register(f"{rkey}{R.SEP}{dot}", raw)

    def write_scan(self, scan: Scan) -> None:
        raw = [
            scan.participant,
            scan.kind.value,
            scan.ts_ms,
            scan.hlc,
            scan.gate,
            scan.method.value,
            scan.device,
        ]
        self.scans_map[scan.id] = raw
        self._put_scan(scan.id, raw)

    def write_history(self, conflict_id: str, dot: str, record: dict[str, Any]) -> None:
        raw = json.dumps(record, sort_keys=True, separators=(",", ":"))
        key = f"{conflict_id}{R.SEP}{dot}"
        self.history_map[key] = raw
        self._put_history(key, raw)

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

    def policy(self, kind: str, record: str, field: str) -> R.Policy:
        if kind == CONFIG:
            return R.Policy.AUTHORITY if record == SCHEMA_KEY else self.schema.config_policy(record)
        if field == R.DELETED:
            return R.Policy.LWW
        return self.schema.participant.get(field, R.Policy.LWW)

    def field_candidates(self, kind: str, record: str, field: str) -> list[R.RegEntry]:
        return R.candidates(self.records.get(record_key(kind, record), {}).values(), field)

    def field_value(self, kind: str, record: str, field: str) -> tuple[Any, bool]:
        """``(value, conflicted)`` of one field under its policy."""
        live = self.field_candidates(kind, record, field)
        return R.merge(self.policy(kind, record, field), live, field)

    def record_fields(self, kind: str, record: str) -> dict[str, list[R.RegEntry]]:
        """Every field of a record with its candidates."""
        entries = self.records.get(record_key(kind, record), {})
        names = {f for e in entries.values() for f in e.fields}
        return {f: R.candidates(entries.values(), f) for f in sorted(names)}

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
