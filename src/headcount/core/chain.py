"""Signed, hash-chained per-device logs. Pure: no I/O, no clock.

Every entry carries the hash of its device's previous entry, so a device's
entries of one event form a chain. The origin signs the chain's *head*
(event, device, seq, hash) with its Ed25519 key, not every entry: one
signature covers every entry up to that head, which keeps verification
(~8k/s on this hardware) off the per-entry path. A *segment* is a run of
consecutive entries of one device ending exactly at a signed head; it is the
unit that travels, is verified, and is forwarded unchanged by relays.

Verification order (design principle 3): shape, then signature, then chain,
and only then may the entries reach pycrdt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .errors import RemoteProtocolError
from .model import LogEntry

ZERO_HASH = b"\x00" * 32
HASH_SIZE = 32
_ENTRY_TAG = 1
_HEAD_DOMAIN = b"headcount/head/v1\x00"


def entry_hash(entry: LogEntry) -> bytes:
    """SHA-256 over the entry's header (length-prefixed by msgpack) and update."""
    if entry.digest:
        return entry.digest
    return compute_hash(entry)


def compute_hash(entry: LogEntry) -> bytes:
    """:func:`entry_hash` ignoring any digest the entry carries."""
    h = hashlib.sha256(
        msgpack.packb([_ENTRY_TAG, entry.event, entry.device, entry.seq, entry.hlc, entry.prev])
    )
    h.update(entry.update)
    return h.digest()


@dataclass(frozen=True, slots=True)
class Head:
    """A device's signature over the hash of its entry ``seq`` of ``event``."""

    event: str
    device: str
    seq: int
    hash: bytes
    sig: bytes

    def signed_bytes(self) -> bytes:
        return head_message(self.event, self.device, self.seq, self.hash)


def head_message(event: str, device: str, seq: int, digest: bytes) -> bytes:
    packed: bytes = msgpack.packb([event, device, seq, digest])
    return _HEAD_DOMAIN + packed


def with_digest(entry: LogEntry) -> LogEntry:
    """Cache the entry's hash on it (a fresh entry our code just built)."""
    if not entry.digest:
        object.__setattr__(entry, "digest", compute_hash(entry))
    return entry


def sign_head(key: Ed25519PrivateKey, event: str, device: str, seq: int, digest: bytes) -> Head:
    return Head(event, device, seq, digest, key.sign(head_message(event, device, seq, digest)))


Verifier = Callable[[bytes, bytes, bytes], bool]
"""``verify(public_key_raw, message, signature) -> bool``; injectable so the
simulator can memoise results (the same head is verified by many nodes)."""


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive entries of one device on one event, ending at a signed head."""

    entries: tuple[LogEntry, ...]
    head: Head

    @property
    def first(self) -> int:
        return self.entries[0].seq if self.entries else self.head.seq + 1

    @property
    def size(self) -> int:
        return sum(len(e.update) for e in self.entries)


class EquivocationError(RemoteProtocolError):
    """A device signed two different entries with the same sequence number."""

    code = "equivocation"

    def __init__(self, message: str, *, event: str, device: str, seq: int) -> None:
        super().__init__(message)
        self.event = event
        self.device = device
        self.seq = seq


class GapError(RemoteProtocolError):
    """A segment starts after entries the receiver does not have yet. Not the
    sender's fault (it may simply not know what we lack): the entries are
    ignored and the next summary asks for the missing ones."""

    code = "gap"


def check_segment_shape(seg: Segment, max_entries: int = 100_000) -> None:
    """Raise :class:`RemoteProtocolError` unless ``seg`` is well formed."""
    head = seg.head
    if not isinstance(head, Head) or len(head.hash) != HASH_SIZE or len(head.sig) != 64:
        raise RemoteProtocolError("malformed head")
    if not seg.entries or len(seg.entries) > max_entries:
        raise RemoteProtocolError("segment without entries, or too many")
    for i, e in enumerate(seg.entries):
        if e.event != head.event or e.device != head.device:
            raise RemoteProtocolError("segment mixes events or devices")
        if e.seq != head.seq - len(seg.entries) + 1 + i:
            raise RemoteProtocolError("segment sequence numbers are not consecutive up to its head")
        if len(e.prev) != HASH_SIZE:
            raise RemoteProtocolError("malformed previous-entry hash")


def verify_segment(
    seg: Segment,
    public_key: bytes,
    known: Callable[[int], bytes | None],
    verify: Verifier = ed25519_verify,
    hasher: Callable[[LogEntry], bytes] = entry_hash,
) -> list[tuple[LogEntry, bytes]]:
    """Verify a segment against the receiver's own record of the chain.

    Args:
        seg: the segment (shape already checked or not: it is checked here).
        public_key: the origin device's raw Ed25519 public key.
        known: ``known(seq)`` -> the hash the receiver already holds for that
            device's entry ``seq`` (``ZERO_HASH`` for seq 0), or None.

    Returns:
        The entries the receiver does not have yet (possibly none), in
        order, each with its hash.

    Raises:
        RemoteProtocolError: bad shape, bad signature, or a broken chain.
        EquivocationError: a validly signed segment contradicts entries the
            receiver already holds.
    """
    check_segment_shape(seg)
    head = seg.head
    if not verify(public_key, head.signed_bytes(), head.sig):
        raise RemoteProtocolError(f"bad signature on head {head.device}:{head.seq}")
    hashes = _chain(seg.entries, hasher)
    if hashes[-1] != head.hash:
        raise RemoteProtocolError(f"segment of {head.device} does not hash to its signed head")
    # Signed and self-consistent: from here on any disagreement is the origin's.
    first = seg.entries[0]
    before = known(first.seq - 1)
    if before is not None and before != first.prev:
        raise _equivocation(head, first.seq - 1)
    fresh: list[tuple[LogEntry, bytes]] = []
    for entry, digest in zip(seg.entries, hashes, strict=True):
        mine = known(entry.seq)
        if mine is None:
            fresh.append((entry, digest))
        elif mine != digest:
            raise _equivocation(head, entry.seq)
    if fresh and fresh[0][0] is first and before is None:
        raise GapError(f"entries of {head.device} before {first.seq} are missing here")
    return fresh


def _chain(entries: Sequence[LogEntry], hasher: Callable[[LogEntry], bytes]) -> list[bytes]:
    hashes: list[bytes] = []
    for i, entry in enumerate(entries):
        if i and entry.prev != hashes[-1]:
            raise RemoteProtocolError(f"broken hash chain at {entry.device}:{entry.seq}")
        hashes.append(hasher(entry))
    return hashes


def _equivocation(head: Head, seq: int) -> EquivocationError:
    return EquivocationError(
        f"device {head.device} signed two different histories of event {head.event!r} "
        f"(diverging at seq {seq})",
        event=head.event,
        device=head.device,
        seq=seq,
    )


@dataclass(slots=True)
class VerifiedBatch:
    """What :func:`verify_batch` found; nothing has been applied yet."""

    staged: dict[str, list[tuple[LogEntry, bytes]]]
    heads: list[Head]
    caught: dict[str, EquivocationError]
    gaps: int = 0
    duplicates: int = 0


def verify_batch(
    event: str,
    segments: Sequence[Segment],
    *,
    public_key: Callable[[str], bytes | None],
    skip: Callable[[str], bool],
    known: Callable[[str, int], bytes | None],
    verify: Verifier = ed25519_verify,
    hasher: Callable[[LogEntry], bytes] = entry_hash,
) -> VerifiedBatch:
    """Verify every segment of one message before anything is applied.

    Args:
        public_key: ``device -> raw key`` from the directory (None: unknown).
        skip: devices whose segments are ignored (quarantined).
        known: ``(device, seq) -> hash`` the receiver already holds.

    Returns:
        The fresh entries per device (with their hashes), the heads to
        record, the equivocations caught, and counts of gaps and duplicates.
        A later segment of the same device chains onto earlier staged ones.

    Raises:
        RemoteProtocolError: an unknown device, a segment of another event, a
            bad signature or a broken chain: the whole message is refused.
    """
    out = VerifiedBatch({}, [], {})
    for seg in segments:
        device = seg.head.device
        key = public_key(device)
        if key is None:
            raise RemoteProtocolError(f"unknown device {device}", code="unknown_device")
        if seg.head.event != event:
            raise RemoteProtocolError("segment of another event", code="malformed")
        if skip(device) or device in out.caught:
            continue
        pending = out.staged.get(device, [])

        def have(
            seq: int,
            device: str = device,
            pending: list[tuple[LogEntry, bytes]] = pending,
        ) -> bytes | None:
            if pending and pending[0][0].seq <= seq <= pending[-1][0].seq:
                return pending[seq - pending[0][0].seq][1]
            return known(device, seq)

        try:
            fresh = verify_segment(seg, key, have, verify, hasher)
        except GapError:
            out.gaps += 1
            continue
        except EquivocationError as exc:
            out.caught[device] = exc
            continue
        out.duplicates += len(seg.entries) - len(fresh)
        if fresh:
            out.staged.setdefault(device, []).extend(fresh)
        out.heads.append(seg.head)
    for device in out.caught:
        out.staged.pop(device, None)
    return out
