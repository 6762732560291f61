"""What a peer's log entry does, checked against its signer's certified role
before the entry touches a document. Pure: no I/O, no document needed (a
lazy relay validates without loading the event).

A signature says who wrote an entry; this module says whether that writer
may have written it. An entry is refused unless its update:

1. decodes strictly as a Y v1 update (:mod:`.ydecode`);
2. deletes nothing and carries only plain items: the three root arrays are
   append-only (a snapshot from an authority is the only way state is ever
   folded, and it too deletes nothing);
3. uses only Y client ids bound to the signing device (:mod:`.yclient`), so
   no device can write items under another's id;
4. inserts only strings into the root arrays ``r``, ``s``, ``h`` (no map
   keys, no nested types), each a well-formed element of one of them;
5. names the signer as the author of everything it inserts: a register
   entry's dot is ``signer:seq`` with the entry's timestamp and the signer's
   certified role; a scan's device is the signer, but for an authority (a
   relay records the scans of the HTTP API under the API client's device
   id, an admin restores other gates' scans from a backup); a resolution's
   dot is the signer's;
6. writes role-gated content only with the role: configuration (the event
   name, schema and keys) from an authority (admin or relay), participant
   deletion and conflict resolution from an admin.

Which root array an item lands in is not always in the update (an append
after another item names only its left neighbour), so every string is
checked against the grammar of each array: the three grammars are disjoint,
and an element placed in the wrong array is malformed there, which every
replica's indexes ignore identically.

What it cannot check: that a scan really happened. A compromised gate can
still record false scans, under its own name (docs/protocol.md, threat
model).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import registers as R
from .eventdoc import CONFIG, PARTICIPANT, decode_scan
from .model import LogEntry, Method, ScanKind, Violation
from .yclient import client_of
from .ydecode import DecodedUpdate, Item, UpdateFormatError, decode_update

ROOTS = frozenset({"r", "s", "h"})
# A snapshot's state holds entries beyond the heads it carries: its clients
# are searched up to this many entries per device (64 hashes at most each).
SNAPSHOT_SEARCH = 1 << 22
_ANY = 8  # Y content ref of plain values


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def check_entry(
    entry: LogEntry, role: str | None, bound: set[int] | None = None
) -> Violation | None:
    """Why ``entry`` may not be applied, given its signer's certified
    ``role``, or None if it may. A device not in the directory (None: only
    trusted local paths apply its entries, the network needs its key)
    holds no role: it is checked as a gate. ``bound``: Y client ids already
    found bound to this signer (a cache; found ones are added)."""
    try:
        _check(entry, role or "gate", set() if bound is None else bound)
    except _Refused as exc:
        return Violation(entry.event, entry.device, entry.seq, exc.reason, exc.detail)
    return None


def check_entries(
    entries: list[LogEntry], roles: Mapping[str, str]
) -> tuple[list[LogEntry], list[Violation]]:
    """Split ``entries`` into those that pass and the first violation of
    each device; once a device is caught, none of its entries pass."""
    ok: list[LogEntry] = []
    caught: dict[tuple[str, str], Violation] = {}
    bound: dict[tuple[str, str], set[int]] = {}
    for entry in entries:
        key = (entry.event, entry.device)
        if key in caught:
            continue
        clients = bound.get(key)
        if clients is None:
            clients = bound[key] = set()
        violation = check_entry(entry, roles.get(entry.device), clients)
        if violation is None:
            ok.append(entry)
        else:
            caught[key] = violation
    if not caught:
        return ok, []
    return [e for e in ok if (e.event, e.device) not in caught], list(caught.values())


@dataclass(slots=True)
class _Writer:
    """Who wrote the elements being checked: ``device`` with its certified
    ``role``; for a log entry also its dot and timestamp, which every
    element must carry (None for a snapshot, whose entries are gone)."""

    device: str
    role: str
    dot: str | None = None
    hlc: int | None = None
    hlc_text: str | None = None  # str(hlc), as elements spell it


def _check(entry: LogEntry, role: str, bound: set[int]) -> None:
    device = entry.device
    writer = _Writer(device, role, f"{device}:{entry.seq}", entry.hlc, str(entry.hlc))
    for item in _decode(entry.update).items:  # every struct is an item (_decode refused others)
        client = item.client
        if client not in bound:
            if not client_of(client, device, entry.event, entry.seq):
                raise _Refused("foreign_client", f"Y client {client} is not bound to the signer")
            bound.add(client)
        for value in _strings(item):
            _check_element(value, writer)


def check_snapshot(
    state: bytes, event: str, roles: Mapping[str, str], seqs: Mapping[str, int]
) -> str | None:
    """Why the document state ``state`` of ``event`` (a compaction snapshot
    from an authority) may not be installed, or None if it may.

    The same rules as for an entry, per item: its Y client must be bound
    to the device its elements name as their author (for an authority's
    scans recorded for others: to an authority), and each element must be
    one that author's certified role (``roles``) may write. ``seqs`` gives
    each device's entries known (the snapshot's heads and what is held
    here); a client is searched up to :data:`SNAPSHOT_SEARCH` at least.
    """
    try:
        update = _decode(state)
        for item in update.items:
            values = _strings(item)
            owner = _owner(item.client, values, event, roles, seqs)
            writer = _Writer(owner, roles.get(owner) or "gate")
            for value in values:
                _check_element(value, writer)
    except _Refused as exc:
        return f"{exc.reason}: {exc.detail}"
    return None


def _owner(
    client: int,
    values: tuple[str, ...],
    event: str,
    roles: Mapping[str, str],
    seqs: Mapping[str, int],
) -> str:
    named = []
    for raw in values[:1]:
        reg, scan = R.decode_entry(raw), decode_scan(raw)
        named += [reg.device] if reg else []
        named += [scan.device] if scan else []
        history = _history(raw)
        named += [str(history.get("by"))] if history else []
    authorities = sorted(d for d, r in roles.items() if r in R.AUTHORITY_ROLES)
    for device in [*named, *authorities]:
        if client_of(client, device, event, max(seqs.get(device, 0), SNAPSHOT_SEARCH)):
            return device
    raise _Refused("foreign_client", f"Y client {client} is bound to none of its authors")


def _decode(data: bytes) -> DecodedUpdate:
    try:
        update = decode_update(bytes(data))
    except UpdateFormatError as exc:
        raise _Refused("undecodable", str(exc)) from None
    if update.deletes:
        raise _Refused("deletes_items", f"deletes items of {len(update.deletes)} client(s)")
    if update.gc or update.skips:
        raise _Refused("bad_struct", "garbage-collected or skipped structs")
    return update


def _strings(item: Item) -> tuple[str, ...]:
    if item.parent_sub is not None:
        raise _Refused("bad_item", "a map entry: the document has only root arrays")
    if isinstance(item.parent, tuple):
        raise _Refused("bad_item", "an item inside a nested type")
    if item.parent is not None and item.parent not in ROOTS:
        raise _Refused("bad_item", f"an item of unknown root type {item.parent!r}")
    if item.content != _ANY or item.values is None:
        raise _Refused("bad_item", f"content of kind {item.content}, not plain values")
    for value in item.values:
        if not isinstance(value, str):
            raise _Refused("bad_item", "a value that is not a string")
    return item.values  # type: ignore[return-value]  # all str, checked above


_SCAN_KINDS = frozenset(k.value for k in ScanKind)
_METHODS = frozenset(m.value for m in Method)


def _check_element(raw: str, writer: _Writer) -> None:
    """Check one inserted string as an element of the array whose form it
    has. The forms are disjoint: a scan has exactly eight fields, the third
    a scan kind; a register entry has eight, the third a dot (never a scan
    kind); a resolution is a JSON object (JSON never holds a raw ``SEP``).

    Raises:
        _Refused: it has none of the forms, or its author or role gate fails.
    """
    parts = raw.split(R.SEP)
    if len(parts) == 8 and parts[2] in _SCAN_KINDS:
        # id SEP participant SEP kind SEP ts SEP hlc SEP gate SEP method SEP device
        if parts[6] not in _METHODS or not (parts[3].isdigit() and parts[4].isdigit()):
            raise _Refused("malformed", "a scan of no valid form")
        if writer.hlc_text is not None and parts[4] != writer.hlc_text:
            raise _Refused("forged_author", "a scan stamped with another timestamp")
        if parts[7] != writer.device and writer.role not in R.AUTHORITY_ROLES:
            raise _Refused("forged_author", f"a scan by {parts[7]!r}, written by another device")
        return
    reg = R.decode_entry(raw)
    if reg is not None:
        _check_register(reg, writer)
        return
    history = _history(raw)
    if history is not None:
        _check_history(history, writer)
        return
    raise _Refused("malformed", "an element of no array's form")


def _check_register(reg: R.RegEntry, writer: _Writer) -> None:
    role = writer.role
    if reg.kind not in (PARTICIPANT, CONFIG):
        raise _Refused("malformed", f"a register entry of unknown kind {reg.kind!r}")
    if reg.device != writer.device or (writer.dot is not None and reg.dot != writer.dot):
        raise _Refused("forged_author", f"a register entry with dot {reg.dot!r}")
    if writer.hlc is not None and reg.hlc != writer.hlc:
        raise _Refused("forged_author", "a register entry stamped with another timestamp")
    if reg.role != role:
        raise _Refused("forged_role", f"a register entry claiming role {reg.role!r}")
    if reg.kind == CONFIG and role not in R.AUTHORITY_ROLES:
        raise _Refused("role_required", f"configuration {reg.record!r} written by a {role}")
    if R.DELETED in reg.fields and role != "admin":
        raise _Refused("role_required", f"participant deletion by a {role}")
    if reg.aux is not None and "resolves" in _mapping(reg.aux) and role != "admin":
        raise _Refused("role_required", f"conflict resolution by a {role}")


def _history(raw: str) -> dict[str, Any] | None:
    if not raw.startswith("{"):
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _check_history(record: dict[str, Any], writer: _Writer) -> None:
    if writer.role != "admin":
        raise _Refused("role_required", f"conflict resolution by a {writer.role}")
    dot = str(record.get("dot", ""))
    if record.get("by") != writer.device or R.dot_device(dot) != writer.device:
        raise _Refused("forged_author", "a resolution naming another author")
    if writer.dot is not None and dot != writer.dot:
        raise _Refused("forged_author", "a resolution naming another entry")
    if writer.hlc is not None and record.get("at") != writer.hlc:
        raise _Refused("forged_author", "a resolution stamped with another timestamp")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


__all__ = ["ROOTS", "Violation", "check_entries", "check_entry", "check_snapshot"]
