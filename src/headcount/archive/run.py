"""Archiving events: choose the old ones, write and verify their archives, take
them out of the live store; supersede and prune archives.

The unit is the event (docs/archive.md says why). An event is old enough
when its newest record, the latest scan or edit by any device, is older
than the age given. Each event goes through three steps, each logged
(:class:`Steps`: a journal line and a log record):

1. :func:`prepare` (blocking; no lock, its own read-only connection): read
   the event's rows in one snapshot, write the archive, read it back and
   verify it (checksums, every record, the raw rows against the manifest);
2. :func:`commit` (on the replica's own thread): only if the event is still
   exactly as archived (same version vector, same pending entries; else it
   stays live and the archive is discarded), ``replica.remove_archived``;
3. :func:`supersede`: older archives of the same event that the new one
   contains are deleted (an event restored from its archive and archived
   again is in the newest archive only, so a query never returns it twice).

:func:`prune` deletes archives archived longer ago than the retention period.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headcount.backup.crypto import SCRYPT_N, KeyRing, Secret
from headcount.backup.retention import remove_backup
from headcount.core.errors import HeadcountError, NotFoundError
from headcount.core.event import Event
from headcount.core.hlc import wall_ms
from headcount.core.identity import Identity
from headcount.replica.replica import REJOIN_KEY, Replica
from headcount.service.journal import JOURNAL_FILE, Journal, iso_time
from headcount.store.dbfile import StoreFile
from headcount.store.eventrows import EventRows
from headcount.store.sqlite import DB_FILE

from .errors import CHANGED, ArchiveError
from .manifest import ArchiveManifest
from .reader import entries, verify
from .records import load_event, logical_records
from .writer import Sealing, seal_with, write_archive

log = logging.getLogger("headcount.archive")
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class ArchivePolicy:
    """Where archives go and the age rules (see docs/archive.md)."""

    directory: Path
    older_than_s: float = 90 * DAY_S
    retention_s: float = 365 * DAY_S
    secret: Secret | None = None
    scrypt_n: int = SCRYPT_N
    require_synced: bool = True  # every peer that acknowledged the event holds all of it

    @property
    def journal(self) -> Journal:
        return Journal(self.directory / JOURNAL_FILE)


class Steps:
    """Every step of a run: a journal line (``step``, ``run``, details) and a log record."""

    def __init__(self, journal: Journal | None, run: str | None = None) -> None:
        self.journal = journal
        self.run = run or f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
        self.lines: list[dict[str, Any]] = []

    def __call__(self, step: str, **fields: Any) -> None:
        record = {"step": step, "run": self.run, **fields}
        if self.journal is not None:
            try:
                record = self.journal.append(record)
            except OSError as exc:
                log.warning("cannot write the archive journal: %s", exc)
        self.lines.append(record)
        level = logging.WARNING if step in ("failed", "skipped") else logging.INFO
        log.log(
            level,
            "archive %s %s",
            step,
            fields.get("event") or fields.get("archive") or "",
            extra={"archive_step": record},
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """An event old enough to archive."""

    event: str
    newest_ms: int
    entries: int
    records: int
    live_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "newest": iso_time(self.newest_ms),
            "newest_ms": self.newest_ms,
            "entries": self.entries,
            "records": self.records,
            "live_bytes": self.live_bytes,
        }


def scan(
    data_dir: Path,
    device: str,
    now_ms: int,
    policy: ArchivePolicy,
    events: Sequence[str] | None,
    steps: Steps,
) -> Iterator[tuple[Candidate, EventRows, Event]]:
    """The events of ``data_dir`` (this device: ``device``) old enough to archive,
    with their rows, one at a time; those held back (rejoin pending, a peer
    behind) are logged as skipped.

    Raises:
        NotFoundError: an event of ``events`` is not in the store.
    """
    cutoff = now_ms - int(policy.older_than_s * 1000)
    with StoreFile.open_read_only(data_dir / DB_FILE) as store:
        live = store.events()
        for event in events or ():
            if event not in live:
                raise NotFoundError(f"no event {event!r} in the live store (see `event list`)")
        rejoin = set(_json_list(store.meta(REJOIN_KEY)))
        for event in sorted(set(events)) if events else live:
            if event in rejoin:
                steps("skipped", event=event, reason="waits to rejoin sync after a restore")
                continue
            if wall_ms(store.newest_hlc(event)) >= cutoff:
                continue  # a log entry is newer than the cutoff: not old enough
            rows = store.event_rows(event)
            ev = load_event(rows, "archiver", "gate")
            records = logical_records(ev)
            newest = max([rows.newest_hlc_ms, *(r["time_ms"] for r in records)])
            if newest >= cutoff:
                continue
            why = _unsynced(store.acks(event), rows.vv, set(rows.roles), device)
            if policy.require_synced and why is not None:
                steps("skipped", event=event, reason=why)
                continue
            cand = Candidate(event, newest, len(rows.log), len(records), rows.live_bytes)
            yield cand, rows, ev


def _unsynced(
    acks: Mapping[str, Mapping[str, int]], vv: Mapping[str, int], devices: set[str], me: str
) -> str | None:
    """Why the event should stay live a while longer (None: it may be archived).

    Once archived here, nothing of the event is sent to peers any more: a
    peer that acknowledged less than this device holds would never get the
    rest from it, and entries no peer acknowledged may exist only here. So
    every peer that acknowledged the event must hold all of it, and if this
    device knows other devices, at least one of them must have acknowledged it.
    """
    others = devices - {me}
    behind = sorted(
        p for p, have in acks.items()
        if p in others and any(have.get(d, 0) < seq for d, seq in vv.items())
    )  # fmt: skip
    if behind:
        return f"peers {', '.join(behind)} have not acknowledged all of it yet"
    if others and not any(p in others for p in acks):
        return "no peer has acknowledged it: some of its entries may exist only here"
    return None


def _json_list(text: object) -> list[str]:
    try:
        value = json.loads(str(text or "[]"))
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def prepare(
    data_dir: Path,
    identity: Identity,
    policy: ArchivePolicy,
    now_ms: int,
    steps: Steps,
    events: Sequence[str] | None = None,
) -> list[ArchiveManifest]:
    """Write and verify the archive of every event old enough (step 1). Blocking.

    An archive that fails is removed and the event stays live; the others go on.
    An archive of exactly the live state left by an interrupted run is reused.

    Returns:
        The verified archives, one per event.
    """
    keyring = KeyRing(policy.secret)
    sealing: list[Sealing] = []  # one key derivation for the whole run, when first needed
    done = []
    for cand, rows, ev in scan(data_dir, identity.device_id, now_ms, policy, events, steps):
        steps("selected", **cand.to_dict())
        m = _reusable(policy, cand.event, rows.vv)
        try:
            if m is None:
                if not sealing:
                    sealing.append(seal_with(keyring, policy.scrypt_n))
                m = write_archive(
                    rows, identity, policy.directory, now_ms, sealing=sealing[0], event=ev
                )
                steps("written", event=cand.event, archive=m.id, size=m.size, counts=m.counts)
            else:
                steps("reused", event=cand.event, archive=m.id)
            verify(policy.directory, m, keyring)
            steps("verified", event=cand.event, archive=m.id)
        except HeadcountError as exc:
            steps("failed", event=cand.event, error={"code": exc.code, "message": exc.message})
            if m is not None:  # the event is live, as archived: nothing is lost
                _discard(policy.directory, m, steps, "failed verification")
            continue
        done.append(m)
    return done


def _reusable(policy: ArchivePolicy, event: str, vv: dict[str, int]) -> ArchiveManifest | None:
    """An archive of exactly this state, left by a run that stopped before step 2."""
    for entry in reversed(entries(policy.directory)):
        m = entry.manifest
        if m is not None and m.event == event and m.vv == vv:
            return m
    return None


def commit(
    replica: Replica, archives: Sequence[ArchiveManifest], policy: ArchivePolicy, steps: Steps
) -> list[str]:
    """Take the archived events out of the live store (step 2), each only if it
    is still what its archive holds. Call on the replica's own thread.

    Returns:
        The events removed.
    """
    removed = []
    for m in archives:
        reason = _changed(replica, m)
        if reason is None and policy.require_synced:
            acks, devices = replica.store.acks(m.event), set(replica.store.devices())
            reason = _unsynced(acks, m.vv, devices, replica.device_id)
        if reason is not None:
            steps("skipped", event=m.event, archive=m.id, reason=reason, code=CHANGED)
            _discard(policy.directory, m, steps, reason)
            continue
        replica.remove_archived(m.event, str(policy.directory / m.id))
        steps("removed", event=m.event, archive=m.id, entries=int(m.raw["entries"]))
        removed.append(m.event)
    return removed


def _changed(replica: Replica, m: ArchiveManifest) -> str | None:
    if not replica.store.has_event(m.event):
        return "no longer in the live store"
    if m.event in replica.rejoin_pending:
        return "waits to rejoin sync after a restore"
    if replica.version_vector(m.event) != m.vv:
        return "new entries arrived while it was archived"
    if len(replica.store.pending_keys(m.event)) != int(m.raw.get("pending", 0)):
        return "entries waiting for their dependencies changed while it was archived"
    return None


def _discard(directory: Path, m: ArchiveManifest, steps: Steps, reason: str) -> None:
    try:
        remove_backup(directory / m.id)
    except OSError as exc:
        steps("failed", archive=m.id, error={"code": "io_error", "message": str(exc)})
        return
    steps("discarded", event=m.event, archive=m.id, reason=reason)


def supersede(directory: Path, newest: Sequence[ArchiveManifest], steps: Steps) -> list[str]:
    """Delete the older archives of the same events that the new ones contain (step 3)."""
    gone = []
    for m in newest:
        for entry in entries(directory):
            old = entry.manifest
            if old is None or old.id == m.id or old.event != m.event:
                continue
            if (
                all(seq <= m.vv.get(d, 0) for d, seq in old.vv.items())
                and old.created_ms <= m.created_ms
            ):
                _delete(directory, old, steps, "superseded", by=m.id)
                gone.append(old.id)
    return gone


def prune(
    directory: Path, retention_s: float, now_ms: int, steps: Steps, *, dry_run: bool = False
) -> list[str]:
    """Delete the archives archived before ``now - retention``; unreadable ones are
    reported and kept. Returns the ids deleted (or, with ``dry_run``, that would be)."""
    cutoff = now_ms - int(retention_s * 1000)
    gone = []
    for entry in entries(directory):
        m = entry.manifest
        if m is None:
            assert entry.error is not None
            steps(
                "failed",
                archive=entry.id,
                error={"code": entry.error.code, "message": entry.error.message},
            )
            continue
        if m.created_ms < cutoff:
            if dry_run:
                steps("would_prune", event=m.event, archive=m.id, archived=iso_time(m.created_ms))
            else:
                _delete(directory, m, steps, "pruned", archived=iso_time(m.created_ms))
            gone.append(m.id)
    return gone


def _delete(directory: Path, m: ArchiveManifest, steps: Steps, step: str, **fields: Any) -> None:
    try:
        remove_backup(directory / m.id)
    except OSError as exc:
        raise ArchiveError(f"cannot delete archive {m.id}: {exc}", code="io_error") from None
    steps(step, event=m.event, archive=m.id, size=m.size, **fields)


def archive_now(
    replica: Replica,
    policy: ArchivePolicy,
    now_ms: int,
    steps: Steps,
    events: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Steps 1-3 in one go, for a replica this process holds (``headcount archive run``)."""
    replica.store.save_acks()  # what peers acknowledged, for the read-only scan to see
    made = prepare(replica.data_dir, replica.identity, policy, now_ms, steps, events)
    removed = commit(replica, made, policy, steps)
    kept = [m for m in made if m.event in removed]
    superseded = supersede(policy.directory, kept, steps)
    return {
        "run": steps.run,
        "archived": [{"event": m.event, "archive": m.id, "size": m.size} for m in kept],
        "superseded": superseded,
        "failed": [s for s in steps.lines if s["step"] in ("failed", "skipped")],
    }
