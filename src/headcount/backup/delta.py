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

import sqlite3
from collections.abc import Mapping
from typing import Any

import msgpack

from headcount.core.chain import ZERO_HASH, compute_hash
from headcount.core.model import LogEntry
from headcount.store.dbfile import hash_at

from .errors import CHAIN_BROKEN, CORRUPT, NEEDS_FULL, BackupError
from .manifest import EventState

DELTA_VERSION = 1


def extract(db: sqlite3.Connection, base: Mapping[str, EventState]) -> dict[str, Any]:
    """The rows of ``db`` beyond ``base`` (the parent's events). Call inside
    one read transaction so that the rows and the caller's vectors agree.

    Raises:
        BackupError: ``needs_full_backup`` if the store is behind or has
            diverged from the parent (it was restored since), or if
            compaction folded entries the parent lacks.
    """
    _check_base(db, base)
    log: list[list[Any]] = []
    heads: list[list[Any]] = []
    for (event,) in db.execute("SELECT event FROM events").fetchall():
        have = base[event].vv if event in base else {}
        devices = db.execute("SELECT DISTINCT device FROM log WHERE event=?", (event,))
        for (device,) in devices.fetchall():
            rows = db.execute(
                "SELECT id, seq, hlc, upd, prev, hash FROM log "
                "WHERE event=? AND device=? AND seq>?",
                (event, device, have.get(device, 0)),
            )
            for row_id, seq, hlc, upd, prev, digest in rows:
                log.append([row_id, event, device, seq, hlc, bytes(upd), _b(prev), bytes(digest)])
        for device, seq, digest, sig in db.execute(
            "SELECT device, seq, hash, sig FROM heads WHERE event=?", (event,)
        ):
            if seq > have.get(device, 0):
                heads.append([event, device, seq, bytes(digest), bytes(sig)])
    log.sort(key=lambda row: row[0])  # the order they were applied here: causal
    return {
        "v": DELTA_VERSION,
        "log": [row[1:] for row in log],
        "heads": heads,
        "events": [list(r) for r in db.execute("SELECT event, created_ms FROM events")],
        "devices": [
            [d, bytes(k), role, added, None if cert is None else bytes(cert)]
            for d, k, role, added, cert in db.execute(
                "SELECT device, public_key, role, added_ms, cert FROM devices"
            )
        ],
        "quarantine": [
            list(r) for r in db.execute("SELECT event, device, seq, detected_ms FROM quarantine")
        ],
        "hlc": int(_meta(db, "hlc") or 0),
    }


def _check_base(db: sqlite3.Connection, base: Mapping[str, EventState]) -> None:
    # Compaction first: folded entries are gone from the log, which the
    # continuity check below would misreport as a store restored since.
    for event, device, seq in db.execute("SELECT event, device, seq FROM horizons"):
        if seq > (base[event].vv.get(device, 0) if event in base else 0):
            raise BackupError(
                f"event {event!r}: compaction folded entries of {device} up to {seq} that the "
                "parent backup lacks; an incremental cannot hold them: take a full backup",
                code=NEEDS_FULL,
            )
    for event, state in base.items():
        for device, seq in state.vv.items():
            digest = hash_at(db, event, device, seq)
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


def apply(db: sqlite3.Connection, delta: Mapping[str, Any], backup_id: str) -> None:
    """Replay ``delta`` onto the staged store ``db`` (inside the caller's transaction).

    Raises:
        BackupError: ``chain_broken`` (an entry does not continue the staged
            chain or its hash is wrong), ``backup_corrupt`` (malformed rows).
    """
    try:
        entries = [_entry(row) for row in delta["log"]]
        _check_links(db, entries, backup_id)
        db.executemany(
            "INSERT INTO events(event, created_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
            delta["events"],
        )
        db.executemany(
            "INSERT INTO log(event, device, seq, hlc, upd, prev, hash) VALUES (?,?,?,?,?,?,?)",
            [(e.event, e.device, e.seq, e.hlc, e.update, e.prev, e.digest) for e in entries],
        )
        db.executemany(
            "INSERT OR IGNORE INTO heads(event, device, seq, hash, sig) VALUES (?,?,?,?,?)",
            delta["heads"],
        )
        db.executemany(
            "INSERT INTO devices(device, public_key, role, added_ms, cert) VALUES (?,?,?,?,?) "
            "ON CONFLICT(device) DO UPDATE SET public_key=excluded.public_key, "
            "role=excluded.role, cert=coalesce(excluded.cert, devices.cert)",
            delta["devices"],
        )
        db.executemany(
            "INSERT OR IGNORE INTO quarantine(event, device, seq, detected_ms) VALUES (?,?,?,?)",
            delta["quarantine"],
        )
        hlc = max(int(delta["hlc"]), int(_meta(db, "hlc") or 0))
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('hlc', ?)", (hlc,))
    except (KeyError, TypeError, ValueError, sqlite3.IntegrityError) as exc:
        raise BackupError(
            f"backup {backup_id}: malformed incremental rows: {exc}", code=CORRUPT
        ) from None


def _entry(row: list[Any]) -> LogEntry:
    event, device, seq, hlc, upd, prev, digest = row
    entry = LogEntry(str(event), str(device), int(seq), int(hlc), bytes(upd), bytes(prev))
    object.__setattr__(entry, "digest", bytes(digest))  # the recorded hash, checked below
    return entry


def _check_links(db: sqlite3.Connection, entries: list[LogEntry], backup_id: str) -> None:
    """Every entry's hash is right and it follows the previous one of its device."""
    last: dict[tuple[str, str], tuple[int, bytes]] = {}
    for e in entries:
        key = (e.event, e.device)
        if key not in last:
            row = db.execute(
                "SELECT max(seq) FROM (SELECT seq FROM log WHERE event=? AND device=? "
                "UNION ALL SELECT seq FROM horizons WHERE event=? AND device=?)",
                (e.event, e.device, e.event, e.device),
            ).fetchone()
            top = int(row[0] or 0)
            last[key] = (top, hash_at(db, e.event, e.device, top) or ZERO_HASH)
        seq, digest = last[key]
        if e.seq != seq + 1 or e.prev != digest or compute_hash(e) != e.digest:
            raise BackupError(
                f"backup {backup_id}: entry {e.seq} of {e.device} in {e.event!r} does not "
                f"continue the chain restored so far (at {seq})",
                code=CHAIN_BROKEN,
            )
        last[key] = (e.seq, e.digest)


def _meta(db: sqlite3.Connection, key: str) -> Any:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else row[0]


def _b(value: bytes | None) -> bytes:
    return ZERO_HASH if value is None else bytes(value)
