"""The rows an incremental backup carries: read beyond a base, and replayed.

:func:`extract` reads, per event, the log entries beyond a base's version
vector (with their hashes), the signed heads above it, the small tables
whole (events, known devices, quarantined devices, revocation records) and
the clock's high-water mark; :func:`apply` writes such rows into a store. Neither checks
hash chains: the backup package does (it owns the format and its errors),
with :func:`~headcount.store.eventstate.hash_at` and
:func:`~headcount.store.eventstate.chain_tip`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headcount.core.chain import ZERO_HASH
from headcount.core.errors import StoreError

from .meta import read_int_meta, write_meta
from .peers import UPSERT_DEVICE
from .revocations import INSERT_REVOCATION

CONSTRAINT_FAILED = "constraint_failed"


@dataclass(frozen=True, slots=True)
class DeltaRows:
    """Store rows as plain lists (ready for msgpack), one list per table.

    ``log``: ``[event, device, seq, hlc, update, prev, hash]`` in the order the
    entries were applied (causal); ``heads``: ``[event, device, seq, hash, sig]``;
    ``events``: ``[event, created_ms]``; ``devices``: ``[device, public_key,
    role, added_ms, cert]``; ``quarantine``: ``[event, device, seq,
    detected_ms]``; ``hlc``: the clock's high-water mark; ``revocations``:
    ``[digest, body, sig, cert, added_ms]`` (verified when they were first
    written; empty in incrementals made before they existed).
    """

    log: Sequence[Sequence[Any]]
    heads: Sequence[Sequence[Any]]
    events: Sequence[Sequence[Any]]
    devices: Sequence[Sequence[Any]]
    quarantine: Sequence[Sequence[Any]]
    hlc: int
    revocations: Sequence[Sequence[Any]] = ()


def extract(db: sqlite3.Connection, base: Mapping[str, Mapping[str, int]]) -> DeltaRows:
    """The rows of ``db`` beyond ``base`` (per event, a version vector). Call
    inside one read transaction so that the rows and the caller's other
    reads agree.

    Returns:
        Log entries and heads above ``base``; events, devices, quarantine and
        revocation records whole.
    """
    log: list[list[Any]] = []
    heads: list[list[Any]] = []
    for (event,) in db.execute("SELECT event FROM events").fetchall():
        have = base.get(event, {})
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
    return DeltaRows(
        log=[row[1:] for row in log],
        heads=heads,
        events=[list(r) for r in db.execute("SELECT event, created_ms FROM events")],
        devices=[
            [d, bytes(k), role, added, None if cert is None else bytes(cert)]
            for d, k, role, added, cert in db.execute(
                "SELECT device, public_key, role, added_ms, cert FROM devices"
            )
        ],
        quarantine=[
            list(r) for r in db.execute("SELECT event, device, seq, detected_ms FROM quarantine")
        ],
        hlc=read_int_meta(db, "hlc"),
        revocations=[
            [bytes(d), bytes(b), bytes(s), None if c is None else bytes(c), ms]
            for d, b, s, c, ms in db.execute(
                "SELECT digest, body, sig, cert, added_ms FROM revocations ORDER BY id"
            )
        ],
    )


def apply(db: sqlite3.Connection, rows: DeltaRows) -> None:
    """Write ``rows`` into ``db`` inside the caller's transaction: new events
    and entries, heads, quarantine and revocation records kept if already
    there, devices updated (a certificate never forgotten), the clock's mark
    raised.

    Raises:
        StoreError: ``constraint_failed``: a row breaks a constraint of the
            store (an entry already there, a missing value); the caller
            rolls back.
    """
    try:
        db.executemany(
            "INSERT INTO events(event, created_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
            rows.events,
        )
        db.executemany(
            "INSERT INTO log(event, device, seq, hlc, upd, prev, hash) VALUES (?,?,?,?,?,?,?)",
            rows.log,
        )
        db.executemany(
            "INSERT OR IGNORE INTO heads(event, device, seq, hash, sig) VALUES (?,?,?,?,?)",
            rows.heads,
        )
        db.executemany(UPSERT_DEVICE, rows.devices)
        db.executemany(
            "INSERT OR IGNORE INTO quarantine(event, device, seq, detected_ms) VALUES (?,?,?,?)",
            rows.quarantine,
        )
        db.executemany(INSERT_REVOCATION, rows.revocations)
    except sqlite3.IntegrityError as exc:
        raise StoreError(str(exc), code=CONSTRAINT_FAILED) from None
    write_meta(db, "hlc", max(rows.hlc, read_int_meta(db, "hlc")))


def _b(value: bytes | None) -> bytes:
    return ZERO_HASH if value is None else bytes(value)
