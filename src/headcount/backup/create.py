"""``headcount backup create``: write a new backup of a device's data directory.

The backup is built in a hidden temporary directory beside its final place,
every file fsynced, the manifest signed and written last, and the directory
renamed into place: a crash or a full disk leaves no half backup (the
temporary directory is removed on every failure).

Nothing here takes the data directory's lock or goes through the writer's
connection, so backups work while the gate daemon or the relay runs.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack

from headcount import __version__
from headcount.core.errors import InputError, NotFoundError
from headcount.core.files import publish, remove_tree, temp_dir_beside, write_private
from headcount.core.identity import IDENTITY_FILE, KEY_FILE, Identity, load_identity
from headcount.pki.device import CA_FILE, CERT_FILE
from headcount.replica.replica import Replica
from headcount.store.dbfile import StoreFile, copy_store
from headcount.store.sqlite import DB_FILE, Store

from . import delta
from .catalog import Catalog
from .crypto import SCRYPT_N, KeyRing, Secret
from .errors import CHAIN_BROKEN, NEEDS_FULL, BackupError, disk_errors
from .exports import export_lines
from .manifest import FORMAT_VERSION, MANIFEST_FILE, FileRecord, Kind, Manifest, sign
from .payload import (
    COMPRESSION,
    DEFAULT_LEVEL,
    DELTA_PAYLOAD,
    IDENTITY_PAYLOAD,
    READ_BYTES,
    STORE_PAYLOAD,
    PayloadWriter,
    context,
)

BACKUPS_DIR = "backups"
IDENTITY_FILES = (KEY_FILE, IDENTITY_FILE, CERT_FILE, CA_FILE)
ProgressFn = Callable[[str], None]


def default_dest(data_dir: Path) -> Path:
    """Where backups go unless told otherwise: ``<data_dir>/backups``."""
    return data_dir / BACKUPS_DIR


class _Job:
    """One backup being written: its id, temporary directory, key and helpers."""

    def __init__(
        self, data_dir: Path, kind: Kind, dest: Path, key: bytes | None, progress: ProgressFn
    ) -> None:
        self.data_dir, self.kind, self.key, self.say = data_dir, kind, key, progress
        self.created_ms = time.time_ns() // 1_000_000
        stamp = datetime.fromtimestamp(self.created_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
        self.id = f"{stamp}-{kind.value}-{secrets.token_hex(3)}"
        self.final = dest / self.id
        self.tmp = temp_dir_beside(self.final)
        self.level = DEFAULT_LEVEL

    def writer(self, name: str) -> PayloadWriter:
        return PayloadWriter(self.tmp / name, context(self.id, name), self.key, self.level)

    def payload_of_file(self, source: Path, name: str) -> FileRecord:
        with self.writer(name) as out, source.open("rb") as fh:
            while chunk := fh.read(READ_BYTES):
                out.write(chunk)
            return out.close()

    def payload_of_bytes(self, data: bytes, name: str) -> FileRecord:
        with self.writer(name) as out:
            out.write(data)
            return out.close()


def create_backup(
    data_dir: Path,
    kind: Kind | str = Kind.FULL,
    *,
    dest: Path | None = None,
    secret: Secret | None = None,
    parent: str | None = None,
    events: Sequence[str] | None = None,
    identity: bool = True,
    progress: ProgressFn | None = None,
    scrypt_n: int = SCRYPT_N,
    level: int = DEFAULT_LEVEL,
) -> Manifest:
    """Back up the device in ``data_dir``.

    Args:
        kind: full, incremental, attendance, participants or configuration.
        dest: the destination directory (default ``<data_dir>/backups``).
        secret: encrypt with this passphrase or key (default: not encrypted).
        parent: an incremental's parent id (default: the newest backup of
            this device's chain in ``dest``).
        events: the events of a per-kind backup (default: all).
        identity: a full backup includes the identity files (the private key).
        progress: called with a line of progress now and then.
        scrypt_n: the scrypt cost for a passphrase (tests lower it).
        level: the gzip level (1-9).

    Returns:
        The new backup's manifest (its directory is ``dest / manifest.id``).

    Raises:
        InputError: unknown kind or level; NotFoundError: an unknown event.
        StoreError: no device in ``data_dir``.
        BackupError: ``needs_full_backup`` (an incremental without a usable
            parent), ``chain_broken`` (``parent`` is another device's),
            ``disk_full``; the temporary directory is removed.
    """
    kind = _kind(kind)
    if not 1 <= level <= 9:
        raise InputError("the gzip level is between 1 and 9")
    ident = load_identity(data_dir)
    dest = Path(dest) if dest is not None else default_dest(data_dir)
    base = _parent(Catalog(dest), ident, parent) if kind is Kind.INCREMENTAL else None
    keyring = KeyRing(secret)
    encryption = None
    if secret is not None:
        encryption = keyring.new_params(scrypt_n, base.encryption if base else None)
    key = keyring.unlock(encryption) if encryption else None
    with disk_errors(f"a backup in {dest}"):
        job = _Job(data_dir, kind, dest, key, progress or (lambda _line: None))
        job.level = level
        try:
            body = _write(job, ident, base, events, identity)
            body["events"] = {e: st.to_dict() for e, st in body["events"].items()}
            body["files"] = [f.to_dict() for f in body["files"]]
            body.update(_common(job, ident, encryption))
            manifest = sign(body, ident)
            write_private(job.tmp / MANIFEST_FILE, manifest.to_json())
            publish(job.tmp, job.final)
        except BaseException:
            remove_tree(job.tmp)
            raise
    job.say(f"backup {manifest.id}: {manifest.size} bytes in {len(manifest.files)} files")
    return manifest


def _kind(kind: Kind | str) -> Kind:
    try:
        return Kind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in Kind)
        raise InputError(f"backup kind must be one of {choices}, not {kind!r}") from None


def _parent(catalog: Catalog, ident: Identity, parent: str | None) -> Manifest:
    base = catalog.get(parent) if parent else catalog.latest(ident.device_id)
    if base is None:
        raise BackupError(
            f"no full backup of this device in {catalog.dest} to build an incremental on: "
            "take a full backup first",
            code=NEEDS_FULL,
        )
    if base.device != ident.device_id or base.public_key != ident.public_key_raw:
        raise BackupError(f"backup {base.id} is another device's", code=CHAIN_BROKEN)
    if not base.kind.is_chain:
        raise BackupError(
            f"backup {base.id} is a {base.kind} backup, not a chain", code=CHAIN_BROKEN
        )
    return base


def _write(
    job: _Job,
    ident: Identity,
    base: Manifest | None,
    events: Sequence[str] | None,
    identity: bool,
) -> dict[str, Any]:
    if job.kind is Kind.FULL:
        return _write_full(job, identity)
    if job.kind is Kind.INCREMENTAL:
        assert base is not None
        return _write_incremental(job, base)
    return _write_logical(job, ident, events)


def _write_full(job: _Job, identity: bool) -> dict[str, Any]:
    copy = job.tmp / "store.db.copy"
    job.say("copying the store (one consistent snapshot)")
    version = copy_store(job.data_dir / DB_FILE, copy)
    with StoreFile.open_read_only(copy) as store:
        states = store.event_states()
    job.say(f"compressing the store ({copy.stat().st_size} bytes)")
    files = [job.payload_of_file(copy, STORE_PAYLOAD)]
    copy.unlink()
    names: list[str] = []
    if identity:
        found = {
            n: (job.data_dir / n).read_bytes()
            for n in IDENTITY_FILES
            if (job.data_dir / n).exists()
        }
        names = sorted(found)
        files.append(
            job.payload_of_bytes(msgpack.packb(found, use_bin_type=True), IDENTITY_PAYLOAD)
        )
    return {"schema_version": version, "events": states, "files": files, "identity": names}


def _write_incremental(job: _Job, base: Manifest) -> dict[str, Any]:
    job.say(f"reading what changed since {base.id}")
    # one read snapshot for the vectors and the rows
    with StoreFile.open_read_only(job.data_dir / DB_FILE) as store, store.snapshot():
        states = store.event_states()
        rows = delta.extract(store, base.events)
        version = store.schema_version
    job.say(f"{len(rows['log'])} new log entries")
    files = [job.payload_of_bytes(delta.encode(rows), DELTA_PAYLOAD)]
    return {
        "schema_version": version,
        "events": states,
        "files": files,
        "parent": base.id,
        "parent_events": {e: s.to_dict() for e, s in base.events.items()},
    }


def _write_logical(job: _Job, ident: Identity, events: Sequence[str] | None) -> dict[str, Any]:
    copy = job.tmp / "store.db.copy"
    job.say("copying the store (one consistent snapshot)")
    version = copy_store(job.data_dir / DB_FILE, copy)
    replica = Replica(job.tmp, ident, Store(copy), read_only=True)
    try:
        chosen = sorted(set(events)) if events else replica.events()
        for event_id in chosen:
            if event_id not in replica.events():
                raise NotFoundError(f"no event {event_id!r} on this device (see `event list`)")
        states = {e: s for e, s in replica.store.event_states().items() if e in chosen}
        job.say(f"exporting {job.kind} of {len(chosen)} events")
        with job.writer(f"{job.kind.value}.jsonl.gz") as out:
            for chunk in export_lines(replica, job.kind, chosen):
                out.write(chunk)
            record = out.close()
    finally:
        replica.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    return {"schema_version": version, "events": states, "files": [record]}


def _common(job: _Job, ident: Identity, encryption: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "headcount_version": __version__,
        "id": job.id,
        "kind": job.kind.value,
        "device": ident.device_id,
        "role": ident.role.value,
        "name": ident.name,
        "created_ms": job.created_ms,
        "created": datetime.fromtimestamp(job.created_ms / 1000, UTC).isoformat(),
        "compression": COMPRESSION,
        "encryption": encryption,
    }
