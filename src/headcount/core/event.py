"""Operations and views of one event: participants, attendance, conflicts.

Pure: no I/O and no clock; wall time comes in as an argument. Every write
returns the :class:`LogEntry` objects it produced (none for a no-op); the
caller makes them durable.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from . import registers as R
from .derived import Derived, is_deleted, pick_scan, scan_order
from .errors import InputError, NotFoundError, PermissionDeniedError
from .eventdoc import CONFIG, CONFIG_FIELD, PARTICIPANT, SCHEMA_KEY, EventDoc, record_key
from .ids import check_id, check_value, parse_scan_id, union_value
from .model import (
    Attendance,
    Conflict,
    ConflictKind,
    LogEntry,
    Method,
    Participant,
    Scan,
    ScanKind,
)
from .schema import Policy, Schema, check_config_key

_METHODS: dict[object, Method] = {**{m.value: m for m in Method}, **{m: m for m in Method}}
CHUNK_BYTES = 128 * 1024
IMPORT_CHUNK = 100  # participants per Y transaction / log entry (Yrs appends slow down in big ones)


class Event:
    """One event: its document and everything derived from it."""

    def __init__(self, doc: EventDoc) -> None:
        self.doc = doc
        self.id = doc.event
        self._derived = Derived(doc)

    @property
    def schema(self) -> Schema:
        return self.doc.schema

    # -- event and configuration ---------------------------------------

    def create(self, name: str, schema_ext: Mapping[str, Any] | None, wall_ms: int) -> LogEntry:
        if not isinstance(name, str) or len(name) > 256:
            raise InputError("event name must be a string of at most 256 characters")
        if schema_ext is not None and not isinstance(schema_ext, Mapping):
            raise InputError("the event schema must be a mapping of sections")
        ext = dict(schema_ext or {})
        self.schema.extend(ext)  # validate before writing anything
        self._require_authority("create an event")

        def body(dot: str, hlc: int) -> None:
            self._write_config("name", name, dot, hlc)
            self._write_config(SCHEMA_KEY, json.dumps(ext, sort_keys=True), dot, hlc)

        return self.doc.transact(wall_ms, body)

    def set_config(self, key: str, value: object, wall_ms: int) -> LogEntry:
        self._require_authority("change an event's configuration")
        check_config_key(key)
        if key == SCHEMA_KEY:
            raise InputError(f"{SCHEMA_KEY} is set with the event's schema, not directly")
        check_value(key, value)
        return self.doc.transact(wall_ms, lambda dot, hlc: self._write_config(key, value, dot, hlc))

    def _write_config(self, key: str, value: object, dot: str, hlc: int) -> None:
        policy = self.doc.policy(CONFIG, key, CONFIG_FIELD)
        self.doc.write_register(
            CONFIG, key, {CONFIG_FIELD: value}, dot, hlc, {CONFIG_FIELD: policy}
        )

    def config(self) -> dict[str, Any]:
        out = {}
        for key in sorted(self.doc.config_keys()):
            if key != SCHEMA_KEY:
                out[key] = self.doc.field_value(CONFIG, key, CONFIG_FIELD)[0]
        return out

    @property
    def name(self) -> str:
        return str(self.doc.field_value(CONFIG, "name", CONFIG_FIELD)[0] or "")

    # -- participants ----------------------------------------------------

    def upsert_participants(
        self, rows: Iterable[Mapping[str, Any]], wall_ms: int
    ) -> tuple[list[LogEntry], int]:
        """Create or update participants; unchanged values are not rewritten.

        Every row is validated before anything is written.

        Returns:
            The log entries written and the number of participants changed.

        Raises:
            InputError: a row has no id, an undeclared field or a bad value.
            NotFoundError: a row updates a deleted participant.
        """
        check = self.participant_check()
        checked: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for n, row in enumerate(rows, 1):
            pid, fields = check(f"row {n}", row)
            if pid in seen:
                raise InputError(f"row {n}: participant {pid!r} appears twice")
            seen.add(pid)
            checked.append((pid, fields))
        changes = self.participant_changes(checked)
        return self.write_participants(changes, wall_ms), len(changes)

    def participant_check(
        self, *, checked: bool = False
    ) -> Callable[[str, Any], tuple[str, dict[str, Any]]]:
        """A check of import rows against the event as it is now.

        The returned function takes where a row comes from (``"row 3"``,
        ``"people.csv:4"``, the prefix of its error messages) and the row (a
        mapping of field to value, with an ``id``), and returns ``(id,
        fields)`` as they would be written. It does not look for an id given
        twice: the caller does, over all its rows.

        Args:
            checked: the rows passed this check before (a second pass over
                a file, verified to read what the first pass checked): ids
                and values are not checked again, only shaped as written (a
                union field's value becomes a list).

        The check raises:
            InputError: no id, an undeclared field or a bad value.
            NotFoundError: the row updates a deleted participant.
        """
        deleted = self._deleted_ids()

        def check(where: str, row: Any) -> tuple[str, dict[str, Any]]:
            pid, fields = self._validate_row(where, row, checked)
            if pid in deleted:
                raise NotFoundError(f"{where}: participant {pid!r} was deleted")
            return pid, fields

        return check

    def participant_changes(
        self, checked: Iterable[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Of checked rows (see :meth:`participant_check`), those that change
        something, each with only the fields whose value differs (a new
        participant with all of its fields, maybe none: an id alone still
        creates the participant)."""
        changes = []
        for pid, fields in checked:
            changed = self._changed_fields(pid, fields)
            if changed or not self._has_record(pid):
                changes.append((pid, changed))
        return changes

    def write_participants(
        self, changes: list[tuple[str, dict[str, Any]]], wall_ms: int, *, keep_new: bool = True
    ) -> list[LogEntry]:
        """Write :meth:`participant_changes`, at most ``IMPORT_CHUNK`` rows
        per Y transaction and log entry.

        Args:
            keep_new: False for an import too large to hold in memory: the
                participants these writes create are in the document but
                left out of its indexes, so the event reads as if they were
                not there. The caller must reload the event from its log
                before reading it again.
        """
        entries = []
        for chunk in _chunks(changes):
            new = [] if keep_new else [pid for pid, _ in chunk if not self._has_record(pid)]
            entries.append(self.doc.transact(wall_ms, functools.partial(self._write_rows, chunk)))
            self._unindex(new)
        return entries

    def _has_record(self, pid: str) -> bool:
        return record_key(PARTICIPANT, pid) in self.doc.records

    def _unindex(self, pids: list[str]) -> None:
        """Drop participants from the indexes (see ``keep_new`` above). Their
        records are marked dirty by the write: the refresh forgets what the
        derived indexes knew of them."""
        for pid in pids:
            self.doc.records.pop(record_key(PARTICIPANT, pid), None)
        if pids:
            self._derived.refresh()

    def _validate_row(
        self, where: str, row: Any, checked: bool = False
    ) -> tuple[str, dict[str, Any]]:
        if not isinstance(row, Mapping):
            raise InputError(f"{where}: expected a mapping of field to value")
        try:
            pid = row["id"] if checked else check_id("participant", row.get("id"))
            fields = {}
            for name, value in row.items():
                if name == "id":
                    continue
                policy = self.schema.participant_policy(name)
                fields[name] = value if checked else check_value(name, value)
                if policy is Policy.UNION:
                    fields[name] = union_value(name, value)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        return pid, fields

    def _deleted_ids(self) -> set[str]:
        self._derived.refresh()
        return set(self.doc.participant_ids()) - self._derived.live

    def _changed_fields(self, pid: str, fields: dict[str, Any]) -> dict[str, Any]:
        changed = {}
        for name, value in fields.items():
            current, conflicted = self.doc.field_value(PARTICIPANT, pid, name)
            if conflicted or current != value:
                changed[name] = value
        return changed

    def _write_rows(self, rows: list[tuple[str, dict[str, Any]]], dot: str, hlc: int) -> None:
        for pid, fields in rows:
            policies = {f: self.schema.participant_policy(f) for f in fields}
            values = {}
            for f, v in fields.items():
                current = self.doc.field_value(PARTICIPANT, pid, f)[0]
                values[f] = R.combine(policies[f], current, v)
            # One entry per participant per transaction: the dot is shared,
            # the register key (record + dot) is not.
            self.doc.write_register(PARTICIPANT, pid, values, dot, hlc, policies)

    def delete_participant(self, pid: str, wall_ms: int) -> LogEntry:
        """Delete a participant (admin only). Their scans are kept."""
        self._require_admin("delete a participant")
        self._require_live(pid)
        return self.doc.transact(wall_ms, lambda dot, hlc: self._write_deleted(pid, True, dot, hlc))

    def _write_deleted(self, pid: str, deleted: bool, dot: str, hlc: int, aux: Any = None) -> None:
        entries = self.doc.records.get(record_key(PARTICIPANT, pid), {})
        aux = dict(aux or {})
        if deleted:
            aux["seen"] = sorted(entries)
        self.doc.write_register(
            PARTICIPANT, pid, {R.DELETED: deleted}, dot, hlc, {R.DELETED: Policy.LWW}, aux=aux
        )

    def _require_admin(self, what: str) -> None:
        if self.doc.role != "admin":
            raise PermissionDeniedError(
                f"only an admin device may {what} (this is a {self.doc.role})"
            )

    def _require_authority(self, what: str) -> None:
        if self.doc.role not in R.AUTHORITY_ROLES:
            raise PermissionDeniedError(
                f"only an admin or relay device may {what} (this is a {self.doc.role}): "
                "do it on the admin device; gates receive it by sync"
            )

    def _require_live(self, pid: str) -> None:
        self._derived.refresh()
        if pid in self._derived.live:
            return
        if record_key(PARTICIPANT, pid) not in self.doc.records:
            raise NotFoundError(f"no participant {pid!r} in event {self.id!r}")
        raise NotFoundError(f"participant {pid!r} was deleted")

    def is_deleted(self, pid: str) -> bool:
        return is_deleted(self.doc, pid)

    def participant(self, pid: str) -> Participant:
        if record_key(PARTICIPANT, pid) not in self.doc.records:
            raise NotFoundError(f"no participant {pid!r} in event {self.id!r}")
        fields: dict[str, Any] = {}
        conflicted = []
        for name in self.doc.record_fields(PARTICIPANT, pid):
            if name == R.DELETED:
                continue
            value, is_conflicted = self.doc.field_value(PARTICIPANT, pid, name)
            fields[name] = value
            if is_conflicted:
                conflicted.append(name)
        return Participant(pid, fields, self.is_deleted(pid), tuple(conflicted))

    def participants(self, include_deleted: bool = False) -> list[Participant]:
        out = [self.participant(pid) for pid in sorted(self.doc.participant_ids())]
        return out if include_deleted else [p for p in out if not p.deleted]

    def lookup(self, participant_or_qr: str) -> str:
        """A participant id from an id or a QR token.

        Raises:
            NotFoundError: neither a participant id nor a known QR token.
            InputError: the QR token belongs to more than one participant.
        """
        if record_key(PARTICIPANT, participant_or_qr) in self.doc.records:
            return participant_or_qr
        self._derived.refresh()
        owners = self._derived.qr.get(participant_or_qr, set()) & self._derived.live
        if len(owners) == 1:
            return next(iter(owners))
        if owners:
            raise InputError(f"QR token is shared by participants {sorted(owners)}")
        raise NotFoundError(
            f"no participant or QR token {participant_or_qr!r} in event {self.id!r}"
        )

    # -- attendance --------------------------------------------------------

    def record_scan(
        self,
        kind: ScanKind,
        who: str,
        *,
        gate: str,
        method: str,
        wall_ms: int,
        scan_id: str | None = None,
        at_ms: int | None = None,
        device: str | None = None,
        allow_unknown: bool = False,
    ) -> tuple[Scan, LogEntry | None]:
        """Record a check-in or check-out scan, once per idempotency key.

        Returns:
            ``(scan, entry)``; ``entry`` is None when the scan was a repeat
            (same idempotency key, or same device + timestamp + participant).

        Raises:
            InputError: bad gate, method, key or timestamp, or a key reused
                for a different scan.
            NotFoundError: unknown or deleted participant (unless
                ``allow_unknown``).
            FutureTimestampError: ``at_ms`` too far in the future.
        """
        sid = parse_scan_id(scan_id)
        existing = self.doc.scans.get(sid)
        if existing is not None:
            return self._repeat(existing, who, kind, at_ms), None
        pid = check_id("participant", who) if allow_unknown else self.lookup(who)
        if not allow_unknown:
            self._require_live(pid)
        if not isinstance(gate, str) or not gate.strip() or len(gate) > 64:
            raise InputError("gate must be a non-empty name of at most 64 characters")
        if not gate.isprintable():
            raise InputError("gate name contains control characters")
        meth = _METHODS.get(method) if isinstance(method, str | Method) else None
        if meth is None:
            raise InputError(f"method must be one of qr, ble, manual (not {method!r})")
        if at_ms is not None:
            if isinstance(at_ms, bool) or not isinstance(at_ms, int) or at_ms <= 0:
                raise InputError(f"timestamp {at_ms!r} is not a positive integer of milliseconds")
            self.doc.clock.check(at_ms << 16, wall_ms)
        device = self.doc.device if device is None else check_id("device", device)
        if device != self.doc.device:
            self._require_authority(f"record a scan under another device's name ({device})")
        if at_ms is not None:
            twin = self.doc.dedup.get((device, at_ms, pid, kind.value))
            if twin is not None:
                return self.doc.scans[twin], None
        holder: list[Scan] = []

        def body(dot: str, hlc: int) -> None:
            ts = at_ms if at_ms is not None else hlc >> 16
            scan = Scan(sid, pid, kind, ts, hlc, gate, meth, device)
            self.doc.write_scan(scan)
            holder.append(scan)

        entry = self.doc.transact(wall_ms, body)
        return holder[0], entry

    def _repeat(self, existing: Scan, who: str, kind: ScanKind, at_ms: int | None) -> Scan:
        """A scan re-sent with its idempotency key: the recorded scan, once."""
        self._derived.refresh()
        same_person = who in (existing.participant, self._derived.qr_of.get(existing.participant))
        if not same_person or existing.kind is not kind or at_ms not in (None, existing.ts_ms):
            raise InputError(f"idempotency key {existing.id} was already used for a different scan")
        return existing

    def attendance(self, pid: str) -> Attendance:
        ids = self.doc.scans_by_participant.get(pid, [])
        scans = sorted((self.doc.scans[i] for i in ids), key=scan_order)
        ins = [s for s in scans if s.kind is ScanKind.IN]
        outs = [s for s in scans if s.kind is ScanKind.OUT]
        pol = self.schema.attendance
        return Attendance(
            pid, pick_scan(pol["check_in"], ins), pick_scan(pol["check_out"], outs), tuple(scans)
        )

    def attendance_list(self) -> list[Attendance]:
        return [self.attendance(pid) for pid in sorted(self.doc.scans_by_participant)]

    # -- conflicts ---------------------------------------------------------

    def conflicts(self) -> list[Conflict]:
        self._derived.refresh()
        found = [c for cs in self._derived.conflicts.values() for c in cs]
        return sorted(found, key=lambda c: (c.record, c.field, c.id))

    def conflict(self, conflict_id: str) -> Conflict:
        for c in self.conflicts():
            if c.id == conflict_id:
                return c
        raise NotFoundError(f"no open conflict {conflict_id!r} in event {self.id!r}")

    def resolve(
        self,
        conflict_id: str,
        wall_ms: int,
        *,
        choose: str | None = None,
        value: Any = None,
        use_value: bool = False,
        restore: bool | None = None,
    ) -> LogEntry:
        """Close a conflict (admin only).

        A concurrent edit is closed by picking a candidate (``choose=dot``) or
        writing a new value (``value=..., use_value=True``). A
        modified-deleted conflict is closed by ``restore=True`` (the
        participant comes back, with the concurrent modifications) or
        ``restore=False`` (it stays deleted), or by choosing a candidate.

        Raises:
            PermissionDeniedError: this device is not an admin.
            NotFoundError: no such open conflict, or no such candidate.
            InputError: not exactly one way of resolving given, or one that
                does not fit the conflict's kind.
        """
        self._require_admin("resolve a conflict")
        c = self.conflict(conflict_id)
        if sum((choose is not None, use_value, restore is not None)) != 1:
            raise InputError("give exactly one of: a candidate to choose, a new value, restore")
        deletion = c.kind is ConflictKind.MODIFIED_DELETED
        if deletion and use_value:
            raise InputError(f"conflict {c.id} is a deletion: resolve it with restore or delete")
        if not deletion and restore is not None:
            raise InputError(f"conflict {c.id} is a concurrent edit: choose a value or write one")
        if choose is not None:
            picked = [x for x in c.candidates if x.dot == choose]
            if not picked:
                raise NotFoundError(f"conflict {conflict_id} has no candidate {choose!r}")
            value = picked[0].value
            if deletion:
                restore = not (isinstance(value, dict) and value.get(R.DELETED) is True)
        if deletion:
            value = "restore" if restore else "delete"
        else:
            check_value(c.field, value)
        record = {"conflict": c.to_dict(), "by": self.doc.device, "value": value}

        def body(dot: str, hlc: int) -> None:
            if deletion:
                self._write_deleted(c.record, not restore, dot, hlc, aux={"resolves": c.id})
            else:
                policies = {c.field: Policy.CRITICAL}
                fields = {c.field: value}
                aux = {"resolves": c.id}
                self.doc.write_register(PARTICIPANT, c.record, fields, dot, hlc, policies, aux)
            self.doc.write_history({**record, "dot": dot, "at": hlc})

        return self.doc.transact(wall_ms, body)

    def resolutions(self) -> list[dict[str, Any]]:
        return sorted(self.doc.history.values(), key=lambda r: (r.get("at", 0), str(r)))

    def counts(self) -> dict[str, int]:
        self._derived.refresh()
        checked_in = checked_out = 0
        for ids in self.doc.scans_by_participant.values():
            kinds = {self.doc.scans[i].kind for i in ids}
            checked_in += ScanKind.IN in kinds
            checked_out += ScanKind.OUT in kinds
        return {
            "participants": len(self._derived.live),
            "checked_in": checked_in,
            "checked_out": checked_out,
            "scans": len(self.doc.scans),
            "open_conflicts": sum(len(c) for c in self._derived.conflicts.values()),
        }


def _chunks(
    changes: list[tuple[str, dict[str, Any]]],
) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """At most IMPORT_CHUNK rows and about CHUNK_BYTES of values per log
    entry, so that every entry fits a sync frame with room to spare."""
    chunk: list[tuple[str, dict[str, Any]]] = []
    size = 0
    for pid, fields in changes:
        row = len(pid) + sum(len(json.dumps(v)) + len(k) + 40 for k, v in fields.items())
        if chunk and (len(chunk) >= IMPORT_CHUNK or size + row > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((pid, fields))
        size += row
    if chunk:
        yield chunk
