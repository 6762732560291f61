"""Incremental backups: the store rows added since a parent backup, and their replay.

An incremental holds, per event, the log entries beyond the parent's
version vector (with their hashes), the signed heads above it, and the
small tables whole (known devices, events, quarantined devices). Replaying
it onto the parent's store checks every entry's hash and its link to the
previous one, so an incremental applied to the wrong base cannot pass.

If compaction folded entries the parent had not seen, the log no longer
holds them and an incremental cannot carry them: :func:`extract` refuses
and asks for a full backup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from headcount.core.chain import compute_hash
from headcount.core.errors import StoreError
from headcount.core.model import LogEntry
from headcount.store.dbfile import StoreFile
from headcount.store.deltarows import DeltaRows

from .errors import CHAIN_BROKEN, CORRUPT, NEEDS_FULL, BackupError
from .manifest import EventState

DELTA_VERSION = 1


def extract(store: StoreFile, base: Mapping[str, EventState]) -> dict[str, Any]:
    """The rows of ``store`` beyond ``base`` (the parent's events). Call inside
    one :meth:`StoreFile.snapshot` so that the rows and the caller's vectors agree.

    Raises:
        BackupError: ``needs_full_backup`` if the store is behind or has
            diverged from the parent (it was restored since), or if
            compaction folded entries the parent lacks.
    """
    _check_base(store, base)
    rows = store.delta_since({event: state.vv for event, state in base.items()})
    return {
        "v": DELTA_VERSION,
        "log": rows.log,
        "heads": rows.heads,
        "events": rows.events,
        "devices": rows.devices,
        "quarantine": rows.quarantine,
        "hlc": rows.hlc,
        "revocations": rows.revocations,
    }


def _check_base(store: StoreFile, base: Mapping[str, EventState]) -> None:
    # Compaction first: folded entries are gone from the log, which the
    # continuity check below would misreport as a store restored since.
    for event, folded in store.horizons().items():
        for device, seq in folded.items():
            if seq > (base[event].vv.get(device, 0) if event in base else 0):
                raise BackupError(
                    f"event {event!r}: compaction folded entries of {device} up to {seq} that "
                    "the parent backup lacks; an incremental cannot hold them: take a full backup",
                    code=NEEDS_FULL,
                )
    for event, state in base.items():
        for device, seq in state.vv.items():
            digest = store.hash_at(event, device, seq)
            tip = state.tips.get(device)
            if digest is None or (tip is not None and digest.hex() != tip):
                raise BackupError(
                    f"event {event!r}: this store does not continue the parent backup "
                    f"(entry {seq} of {device} is missing or differs; was it restored since?): "
                    "take a full backup",
                    code=NEEDS_FULL,
                )


def encode(delta: Mapping[str, Any]) -> bytes:
    return msgpack.packb(delta, use_bin_type=True)


def decode(data: bytes) -> dict[str, Any]:
    """Raises: BackupError ``backup_corrupt``."""
    try:
        delta = msgpack.unpackb(data, raw=False, strict_map_key=True)
        if not isinstance(delta, dict) or delta.get("v") != DELTA_VERSION:
            raise ValueError("not an incremental payload")
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BackupError(f"the incremental payload does not decode: {exc}", code=CORRUPT) from None
    return delta


def apply(store: StoreFile, delta: Mapping[str, Any], backup_id: str) -> None:
    """Replay ``delta`` onto the staged ``store`` (inside the caller's
    :meth:`StoreFile.write_transaction`).

    Raises:
        BackupError: ``chain_broken`` (an entry does not continue the staged
            chain or its hash is wrong), ``backup_corrupt`` (malformed rows).
    """
    try:
        entries = [_entry(row) for row in delta["log"]]
        _check_links(store, entries, backup_id)
        log = [[e.event, e.device, e.seq, e.hlc, e.update, e.prev, e.digest] for e in entries]
        rows = DeltaRows(
            log=log,
            heads=delta["heads"],
            events=delta["events"],
            devices=delta["devices"],
            quarantine=delta["quarantine"],
            hlc=int(delta["hlc"]),
            revocations=delta.get("revocations", []),  # absent before schema 6
        )
        store.apply_delta(rows)
    except (KeyError, TypeError, ValueError, StoreError) as exc:
        raise BackupError(
            f"backup {backup_id}: malformed incremental rows: {exc}", code=CORRUPT
        ) from None


def _entry(row: list[Any]) -> LogEntry:
    event, device, seq, hlc, upd, prev, digest = row
    entry = LogEntry(str(event), str(device), int(seq), int(hlc), bytes(upd), bytes(prev))
    object.__setattr__(entry, "digest", bytes(digest))  # the recorded hash, checked below
    return entry


def _check_links(store: StoreFile, entries: list[LogEntry], backup_id: str) -> None:
    """Every entry's hash is right and it follows the previous one of its device."""
    last: dict[tuple[str, str], tuple[int, bytes]] = {}
    for e in entries:
        key = (e.event, e.device)
        if key not in last:
            last[key] = store.chain_tip(e.event, e.device)
        seq, digest = last[key]
        if e.seq != seq + 1 or e.prev != digest or compute_hash(e) != e.digest:
            raise BackupError(
                f"backup {backup_id}: entry {e.seq} of {e.device} in {e.event!r} does not "
                f"continue the chain restored so far (at {seq})",
                code=CHAIN_BROKEN,
            )
        last[key] = (e.seq, e.digest)
