"""Compaction: folding acknowledged log entries into a snapshot.

**When.** An entry may be folded once every device in this replica's
directory has acknowledged holding it (its ``Ack``/``Summary`` version vector
covers it) and at least one of them, or this device, is an authority (admin
or relay). The fold point per device is the highest entry that every peer
acknowledged *and* that ends at a signed head, so the chain can be anchored
there. Entries are deleted from the log only together with a snapshot that
contains them, in one transaction.

**A peer behind the horizon** (one that lacks a folded entry: a new device,
or one restored from an old backup) cannot be sent segments. It receives the
event's snapshot instead, with the origins' signed heads at the horizon; it
applies the state, records the horizon as its own, and then receives the
entries after the horizon as usual. Because a snapshot's content is not
signed by the entries' origins, a replica accepts snapshots only from an
admin or relay device.

**Only what the document holds.** A relay (lazy apply) logs an entry whose
Y items hang off another device's entry that has not arrived; yrs holds it
back and leaves it out of the encoded state, so folding it would lose it.
Such an entry is not folded (its device's fold point stops before it until
the dependency arrives: :meth:`Replica.held_back`); a reload finds it in
the log and holds it back again.

**Who calls it.** Gate daemons and relays compact every event on a schedule
(``[compaction]``, :mod:`headcount.service.housekeeping`), on the event
loop's thread, which owns the replica; ``headcount compact`` runs it now.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from headcount.core.chain import Head, ed25519_verify, entry_hash, sign_head
from headcount.core.errors import NotFoundError, RemoteProtocolError, StoreError
from headcount.core.registers import AUTHORITY_ROLES
from headcount.core.validate import check_snapshot

from .replica import Replica


def compaction_horizon(replica: Replica, event: str) -> dict[str, Head]:
    """Per device, the head up to which entries may be folded now (may be empty).

    Signs and stores this device's own head at its fold point if there is
    none yet; loads the event's document if anything may be folded.
    """
    store = replica.store
    peers = {d: role for d, role in store.devices().items() if d != replica.device_id}
    acks = store.acks(event)
    if not peers or any(p not in acks for p in peers):
        return {}
    if replica.role.value not in AUTHORITY_ROLES and not (set(peers.values()) & AUTHORITY_ROLES):
        return {}
    folded = {device: seq for device, (seq, _) in store.horizon(event).items()}
    targets: dict[str, int] = {}
    for device, high in store.version_vector(event).items():
        target = min([high] + [acks[p].get(device, 0) for p in peers])
        if target > folded.get(device, 0):
            targets[device] = target
    if not targets:
        return {}
    replica.event(event)  # loaded and current: what it holds back is known
    held = replica.held_back(event)
    for entry in held:  # the fold point stops before it
        if entry.device in targets:
            targets[entry.device] = min(targets[entry.device], entry.seq - 1)
    heads: dict[str, Head] = {}
    for device, target in targets.items():
        if target <= folded.get(device, 0):
            continue
        head = _head_at_or_below(replica, event, device, target)
        if head is not None and head.seq > folded.get(device, 0):
            heads[device] = head
    return heads


def _head_at_or_below(replica: Replica, event: str, device: str, seq: int) -> Head | None:
    store = replica.store
    head = store.head_at_or_below(event, device, seq)
    if device == replica.device_id and (head is None or head.seq < seq):
        [entry] = store.entries_range(event, device, seq, seq)
        head = sign_head(replica.identity.private_key, event, device, seq, entry_hash(entry))
        store.add_heads([head])
    return head


def compact(replica: Replica, event: str) -> int:
    """Fold what every peer acknowledged; returns the number of entries removed.

    Blocking (SQLite and the document), and it must run on the thread that
    owns ``replica`` (a daemon's event loop): it reads the document and the
    store's caches, and writes through the store's connection.

    Raises:
        NotFoundError: no such event here.
        StoreError: the fold could not be written (nothing changed).
    """
    heads = compaction_horizon(replica, event)
    if not heads:
        return 0
    state = replica.event(event).doc.encode_state()
    anchors = {d: (h.seq, h.hash) for d, h in heads.items()}
    return replica.store.fold(event, anchors, state, replica.wall_clock())


@dataclass(frozen=True, slots=True)
class LogSize:
    """What an event's log holds: entries still in it, and per device the
    sequence number up to which entries were folded into the snapshot."""

    event: str
    entries: int
    horizon: dict[str, int] = field(default_factory=dict)

    @property
    def folded(self) -> int:
        """Entries folded into the snapshot (every device's chain starts at 1)."""
        return sum(self.horizon.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "log_entries": self.entries,
            "folded": self.folded,
            "horizon": dict(self.horizon),
        }


def log_size(replica: Replica, event: str) -> LogSize:
    """The event's log as :class:`LogSize` (two cheap store reads)."""
    horizon = {d: seq for d, (seq, _) in replica.store.horizon(event).items()}
    return LogSize(event, replica.store.log_count(event), horizon)


@dataclass(frozen=True, slots=True)
class Compacted:
    """The outcome of compacting one event: entries removed, and the log after."""

    removed: int
    log: LogSize

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, **self.log.to_dict()}


def compact_event(replica: Replica, event: str) -> Compacted:
    """:func:`compact` and the log it leaves (same contract)."""
    removed = compact(replica, event)
    return Compacted(removed, log_size(replica, event))


def events_to_compact(replica: Replica, events: Iterable[str] | None = None) -> list[str]:
    """The events a compaction run covers: ``events`` (in order, each once),
    or every event of the replica when None.

    Raises:
        NotFoundError: one of ``events`` is not on this device (checked
            before anything is compacted).
    """
    known = replica.events()
    if events is None:
        return known
    chosen = list(dict.fromkeys(events))
    missing = [e for e in chosen if e not in known]
    if missing:
        raise NotFoundError(f"no event {', '.join(map(repr, missing))} on this device")
    return chosen


def snapshot_for(replica: Replica, event: str) -> tuple[bytes, list[Head]]:
    """What a peer behind the horizon receives: the state and the horizon's heads."""
    heads = []
    for device, (seq, _) in replica.store.horizon(event).items():
        head = replica.store.head_at_or_after(event, device, seq)
        if head is None or head.seq != seq:
            raise StoreError(f"no signed head at the horizon of {device} in {event!r}")
        heads.append(head)
    return replica.event(event).doc.encode_state(), heads


def install_snapshot(
    replica: Replica, event: str, state: bytes, heads: Sequence[Head], sender: str
) -> int:
    """Install a snapshot from ``sender``; returns the number of devices advanced.

    Raises:
        RemoteProtocolError: the sender is not an admin or relay, a head is
            from an unknown device or badly signed, or the state does not
            decode. Nothing is changed then.
    """
    store = replica.store
    if store.devices().get(sender) not in AUTHORITY_ROLES:
        raise RemoteProtocolError(
            "snapshots are accepted only from an admin or relay", code="unauthorised"
        )
    for head in heads:
        key = store.public_key(head.device)
        if key is None:
            raise RemoteProtocolError(f"unknown device {head.device}", code="unknown_device")
        if head.event != event or not ed25519_verify(key, head.signed_bytes(), head.sig):
            raise RemoteProtocolError(f"bad signature on head {head.device}:{head.seq}")
    held = store.version_vector(event)
    ahead = [h for h in heads if h.seq > held.get(h.device, 0)]
    if not ahead:
        return 0
    # What the state holds, checked as entries are (core/validate.py): an
    # authority's snapshot cannot delete, forge authorship or carry content
    # its authors' roles may not write.
    seqs = {**held, **{h.device: h.seq for h in heads if h.seq > held.get(h.device, 0)}}
    why = check_snapshot(state, event, replica.roles, seqs)
    if why is not None:
        raise RemoteProtocolError(
            f"snapshot of {event} from {sender} refused: {why}", code="bad_snapshot"
        )
    ev = replica.event_for_peer(event)
    ev.doc.apply_remote(state)
    anchors = {h.device: (h.seq, h.hash) for h in ahead}
    store.fold(event, anchors, ev.doc.encode_state(), replica.wall_clock())
    store.add_heads(ahead)
    replica.sync_own_chain(event)
    return len(ahead)
