"""Building a restored store beside the live one, and swapping it in.

The staged store is complete and proven before the live data directory is
touched: the full backup's database, every incremental replayed in one
SQLite transaction (each entry's hash and link checked), the resulting
version vectors compared with the target manifest's, ``PRAGMA
integrity_check``, and every event loaded by a replica to prove it decodes.

The swap is one ``os.replace`` of ``headcount.db``. Before it, the live
store is checkpointed (so its ``-wal`` holds nothing the database file
lacks), hard-linked into ``pre-restore-<time>/`` and its ``-wal``/``-shm``
moved there too (a stale WAL must never meet the new database). A crash at
any step leaves either the old store or the new one under the name, never
a mix.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from headcount.core.errors import StoreError
from headcount.core.files import fsync_dir
from headcount.core.identity import Identity
from headcount.replica.replica import REJOIN_KEY, Replica
from headcount.store.dbfile import StoreFile
from headcount.store.sqlite import DB_FILE, Store

from . import delta
from .crypto import KeyRing
from .errors import CHAIN_BROKEN, CORRUPT, BackupError
from .manifest import Manifest
from .payload import DELTA_PAYLOAD, STORE_PAYLOAD, check_stored, context, read_all, read_content

ProgressFn = Callable[[str], None]
PRE_RESTORE = "pre-restore-"


def stage_store(
    chain: list[Manifest], source: Path, keyring: KeyRing, target: Path, say: ProgressFn
) -> list[str]:
    """Write the store that ``chain`` (full first) describes to the new file ``target``.

    ``source`` is the catalog's directory. Returns the events it holds.

    Raises:
        BackupError: any payload or chain problem; ``target`` may be left
            half-written (the caller removes its staging directory).
    """
    full = chain[0]
    record = full.file(STORE_PAYLOAD)
    if record is None:
        raise BackupError(f"backup {full.id} has no {STORE_PAYLOAD}", code=CORRUPT)
    say(f"decompressing the store of {full.id}")
    path = source / full.id / STORE_PAYLOAD
    check_stored(path, record)
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        key = keyring.unlock(full.encryption) if full.encryption else None
        for piece in read_content(path, record, context(full.id, STORE_PAYLOAD), key):
            out.write(piece)
        out.flush()
        os.fsync(out.fileno())
    with StoreFile.open_writable(target) as staged:
        _check_integrity(staged, full.id)
        with staged.write_transaction():
            for inc in chain[1:]:
                say(f"replaying incremental {inc.id}")
                delta.apply(staged, _delta_of(inc, source, keyring), inc.id)
            _check_vectors(staged, chain[-1])
            events = staged.events()
            staged.set_meta(REJOIN_KEY, json.dumps(events))
        _check_integrity(staged, chain[-1].id)
        staged.use_rollback_journal()
    return events


def _delta_of(m: Manifest, source: Path, keyring: KeyRing) -> dict:
    record = m.file(DELTA_PAYLOAD)
    if record is None:
        raise BackupError(f"incremental {m.id} has no {DELTA_PAYLOAD}", code=CORRUPT)
    key = keyring.unlock(m.encryption) if m.encryption else None
    return delta.decode(
        read_all(source / m.id / DELTA_PAYLOAD, record, context(m.id, DELTA_PAYLOAD), key)
    )


def _check_integrity(staged: StoreFile, backup_id: str) -> None:
    result = staged.integrity_check()
    if result != "ok":
        raise BackupError(f"the store in backup {backup_id} is damaged: {result}", code=CORRUPT)


def _check_vectors(staged: StoreFile, target: Manifest) -> None:
    got = {e: s.vv for e, s in staged.event_states().items()}
    want = {e: s.vv for e, s in target.events.items()}
    if got != want:
        raise BackupError(
            f"restoring {target.id} does not yield the version vectors it records",
            code=CHAIN_BROKEN,
        )


def prove(staged: Path, identity: Identity, say: ProgressFn) -> dict[str, int]:
    """Open the staged store as a replica and load every event (it must decode).

    Returns:
        Per event, its number of scans (for the report).

    Raises:
        BackupError: ``backup_corrupt`` if the store does not open or an event does not load.
    """
    say("loading every event of the restored store")
    try:
        replica = Replica(staged.parent, identity, Store(staged), read_only=True)
        try:
            scans = {e: replica.status(e).scans for e in replica.events()}
        finally:
            replica.close()
        with StoreFile.open_writable(staged) as done:
            done.use_rollback_journal()  # one self-contained file again
    except StoreError as exc:
        raise BackupError(
            f"the restored store does not load: {exc.message}", code=CORRUPT
        ) from None
    return scans


def swap_in(data_dir: Path, staged: Path, say: ProgressFn) -> Path | None:
    """Replace ``data_dir``'s store with ``staged`` (same file system). The
    caller holds the data directory's lock.

    Returns:
        The ``pre-restore-…`` directory holding the old store, if there was one.

    Raises:
        StoreError: ``locked`` if a reader keeps the live store's WAL busy
            (nothing is changed then).
    """
    live = data_dir / DB_FILE
    aside = None
    if live.exists():
        _checkpoint(live)
        aside = _aside_dir(data_dir)
        say(f"keeping the previous store in {aside}")
        _link_or_copy(live, aside / DB_FILE)
        for suffix in ("-wal", "-shm"):
            side = Path(f"{live}{suffix}")
            if side.exists():
                os.replace(side, aside / side.name)
        fsync_dir(aside)
    os.replace(staged, live)
    fsync_dir(data_dir)
    return aside


def _checkpoint(live: Path) -> None:
    with StoreFile.open_writable(live) as store:
        done = store.checkpoint()
    if not done:
        raise StoreError(
            f"another process is reading {live}: stop it and restore again", code="locked"
        )


def _aside_dir(data_dir: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        path = data_dir / (f"{PRE_RESTORE}{stamp}" + (f"-{n}" if n else ""))
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise StoreError(f"too many {PRE_RESTORE}{stamp}* directories in {data_dir}")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)  # a file system without hard links
