"""Bringing an archived event back into the live store from its archive.

1. Find the archive (by id, or the newest of the event) and verify all of
   it, content included, before anything changes.
2. Forget that the event was archived (``store.unarchive``).
3. If compaction had folded part of its log, install the archived snapshot
   and the horizons it anchors (as a snapshot from a peer is installed).
4. Apply every archived log entry (then the pending ones) through
   ``replica.apply_entries``, as entries from a peer: duplicates are no-ops,
   and the device's own chain continues after its highest entry.
5. Store the signed heads, so the device can forward the entries again.

The restored version vector must be the archive's. Peers then sync the
event with the device as usual (entries written elsewhere since arrive).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headcount.backup.crypto import KeyRing, Secret
from headcount.core.chain import Head
from headcount.core.errors import InputError, StoreError
from headcount.replica.replica import Replica

from .errors import CORRUPT, NOT_FOUND, ArchiveError
from .manifest import ArchiveManifest
from .reader import entries, get, read_raw, verify
from .run import Steps


def find(directory: Path, ref: str) -> ArchiveManifest:
    """The archive ``ref`` names: an archive id, or an event (its newest archive).

    Raises:
        ArchiveError: ``archive_not_found``.
    """
    if (directory / ref).is_dir():
        return get(directory, ref)
    found = [e.manifest for e in entries(directory) if e.manifest and e.manifest.event == ref]
    if not found:
        raise ArchiveError(f"no archive of event {ref!r} in {directory}", code=NOT_FOUND)
    return max(found, key=lambda m: (m.created_ms, m.id))


def restore_archived(
    replica: Replica, directory: Path, ref: str, steps: Steps, secret: Secret | None = None
) -> dict[str, Any]:
    """Restore the event of archive ``ref`` into ``replica`` (see the module docstring).

    Raises:
        InputError: the event is live (``exists``).
        ArchiveError: the archive is missing, damaged, or needs a secret.
        StoreError: the restored state is not the archive's.
    """
    m = find(directory, ref)
    if replica.store.has_event(m.event):
        raise InputError(
            f"event {m.event!r} is live on this device: nothing to restore", code="exists"
        )
    keyring = KeyRing(secret)
    verify(directory, m, keyring)
    steps("verified", event=m.event, archive=m.id)
    header, log, pending = read_raw(
        directory / m.id, m, keyring.unlock(m.encryption) if m.encryption else None
    )
    horizons, heads, snapshot = _parse_header(m, header)
    if m.event in replica.store.archived():
        replica.store.unarchive(m.event)
    if horizons:  # compaction had folded part of the log: the snapshot holds it
        ev = replica.event_for_peer(m.event)
        ev.doc.apply_remote(snapshot)
        replica.store.fold(m.event, horizons, ev.doc.encode_state(), replica.wall_clock())
    result = replica.apply_entries([*log, *pending])
    replica.store.add_heads(heads)
    replica.sync_own_chain(m.event)
    if replica.version_vector(m.event) != m.vv or result.rejected:
        raise StoreError(
            f"restoring archive {m.id} did not yield the state it records "
            f"({len(result.rejected)} entries rejected)",
            code="restore_mismatch",
        )
    steps("restored", event=m.event, archive=m.id, entries=result.applied, pending=result.pending)
    return {"event": m.event, "archive": m.id, "entries": result.applied, "pending": result.pending}


def _parse_header(
    m: ArchiveManifest, header: dict[str, Any]
) -> tuple[dict[str, tuple[int, bytes]], list[Head], bytes]:
    """The horizons, heads and snapshot of an archive's raw header.

    Raises:
        ArchiveError: ``archive_corrupt``.
    """
    try:
        horizons = {str(d): (int(s), bytes(h)) for d, s, h in header["horizons"]}
        heads = [
            Head(m.event, str(d), int(s), bytes(h), bytes(sig)) for d, s, h, sig in header["heads"]
        ]
        snapshot = header["snapshot"]
    except (KeyError, TypeError, ValueError):
        raise ArchiveError(f"archive {m.id}: a malformed raw header", code=CORRUPT) from None
    if horizons and not isinstance(snapshot, bytes):
        raise ArchiveError(f"archive {m.id}: folded entries but no snapshot", code=CORRUPT)
    return horizons, heads, snapshot or b""
