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
"""

from __future__ import annotations

from collections.abc import Sequence

from headcount.core.chain import Head, ed25519_verify, entry_hash, sign_head
from headcount.core.errors import RemoteProtocolError, StoreError
from headcount.core.registers import AUTHORITY_ROLES

from .replica import Replica


def compaction_horizon(replica: Replica, event: str) -> dict[str, Head]:
    """Per device, the head up to which entries may be folded now (may be empty)."""
    store = replica.store
    peers = {d: role for d, role in store.devices().items() if d != replica.device_id}
    acks = store.acks(event)
    if not peers or any(p not in acks for p in peers):
        return {}
    if replica.role.value not in AUTHORITY_ROLES and not (set(peers.values()) & AUTHORITY_ROLES):
        return {}
    mine = store.version_vector(event)
    folded = store.horizon(event)
    out: dict[str, Head] = {}
    for device, high in mine.items():
        target = min([high] + [acks[p].get(device, 0) for p in peers])
        if target <= folded.get(device, (0, b""))[0]:
            continue
        head = _head_at_or_below(replica, event, device, target)
        if head is not None and head.seq > folded.get(device, (0, b""))[0]:
            out[device] = head
    return out


def _head_at_or_below(replica: Replica, event: str, device: str, seq: int) -> Head | None:
    store = replica.store
    head = store.head_at_or_below(event, device, seq)
    if device == replica.device_id and (head is None or head.seq < seq):
        [entry] = store.entries_range(event, device, seq, seq)
        head = sign_head(replica.identity.private_key, event, device, seq, entry_hash(entry))
        store.add_heads([head])
    return head


def compact(replica: Replica, event: str) -> int:
    """Fold what every peer acknowledged; returns the number of entries removed."""
    heads = compaction_horizon(replica, event)
    if not heads:
        return 0
    state = replica.event(event).doc.encode_state()
    anchors = {d: (h.seq, h.hash) for d, h in heads.items()}
    return replica.store.fold(event, anchors, state, replica.wall_clock())


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
    ahead = [h for h in heads if h.seq > store.version_vector(event).get(h.device, 0)]
    if not ahead:
        return 0
    ev = replica.event_for_peer(event)
    ev.doc.apply_remote(state)
    anchors = {h.device: (h.seq, h.hash) for h in ahead}
    store.fold(event, anchors, ev.doc.encode_state(), replica.wall_clock())
    store.add_heads(ahead)
    replica.sync_own_chain(event)
    return len(ahead)
