"""``headcount backup restore``: validate everything, then restore atomically.

1. Validate the backup and, for an incremental, its whole chain: manifest
   signatures and signing keys, version compatibility, chain links, every
   payload's size and SHA-256, and the passphrase or key.
2. A full or incremental backup replaces the store. The restored store is
   built and proven in a staging directory (see :mod:`.staging`) and only
   then swapped in, holding the data directory's lock (a running daemon
   makes the restore fail with ``locked``). Into a missing data directory
   (the disaster case) the whole directory, identity files included, is
   built beside it and renamed into place. Every event of the restored
   store waits to *rejoin*: local writes are refused until a peer has
   given the device back the entries it wrote after the backup.
3. A per-kind backup is merged into the live replica (see :mod:`.merge`).

Anything failing before the swap leaves the data directory as it was.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives import serialization

from headcount.core.errors import PermissionDeniedError
from headcount.core.files import (
    make_private_dir,
    publish,
    remove_tree,
    temp_dir_beside,
    write_atomic,
)
from headcount.core.identity import KEY_FILE, Identity, load_identity
from headcount.replica.replica import Replica, lock_data_dir
from headcount.store.dbfile import StoreFile
from headcount.store.sqlite import DB_FILE, Durability

from . import staging
from .catalog import Catalog, locate
from .crypto import KeyRing, Secret
from .errors import (
    CORRUPT,
    IDENTITY_MISSING,
    TAMPERED,
    UNTRUSTED,
    WRONG_DEVICE,
    BackupError,
    disk_errors,
)
from .exports import parse_lines
from .manifest import Kind, Manifest
from .merge import MergeReport, merge
from .payload import IDENTITY_PAYLOAD, check_stored, context, read_all
from .verify import resolve_chain

ProgressFn = Callable[[str], None]
_PRIVATE = {KEY_FILE, "device.json"}  # the others (certificates) are public: 0644


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore did."""

    id: str
    kind: Kind
    chain: list[str]
    data_dir: Path
    events: list[str] = field(default_factory=list)
    rejoin: list[str] = field(default_factory=list)
    pre_restore: Path | None = None
    identity_restored: list[str] = field(default_factory=list)
    rebuilt: bool = False
    merge: MergeReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "chain": self.chain,
            "data_dir": str(self.data_dir),
            "events": self.events,
            "rejoin": self.rejoin,
            "pre_restore": None if self.pre_restore is None else str(self.pre_restore),
            "identity_restored": self.identity_restored,
            "rebuilt": self.rebuilt,
            "merge": None if self.merge is None else self.merge.to_dict(),
        }


def restore_backup(
    ref: str,
    dest: Path,
    data_dir: Path,
    *,
    secret: Secret | None = None,
    overwrite: bool = False,
    expect_device: str | None = None,
    progress: ProgressFn | None = None,
) -> RestoreReport:
    """Restore the backup ``ref`` (an id in ``dest``, or a backup directory) into ``data_dir``.

    Args:
        overwrite: per-kind backups: also write values that differ live.
        expect_device: refuse unless the backup is this device's.

    Raises:
        BackupError: every validation failure (see :mod:`.errors`), ``disk_full``.
        StoreError: ``locked`` (a daemon holds the data directory).
        PermissionDeniedError: configuration onto a gate.
    """
    say = progress or (lambda _line: None)
    catalog, backup_id = locate(ref, dest)
    target = catalog.get(backup_id)
    if expect_device is not None and target.device != expect_device:
        raise BackupError(
            f"backup {target.id} is device {target.device}'s, not {expect_device}'s",
            code=WRONG_DEVICE,
        )
    chain = resolve_chain(catalog, target)
    keyring = KeyRing(secret)
    say(f"checking {sum(len(m.files) for m in chain)} payload files")
    for m in chain:
        for record in m.files:
            check_stored(catalog.dest / m.id / record.name, record)
        if m.encryption:
            keyring.unlock(m.encryption)
    if not target.kind.is_chain:
        return _restore_merge(catalog, target, keyring, data_dir, overwrite, say)
    return _restore_store(catalog, chain, keyring, data_dir, say)


def _restore_store(
    catalog: Catalog, chain: list[Manifest], keyring: KeyRing, data_dir: Path, say: ProgressFn
) -> RestoreReport:
    target = chain[-1]
    live = load_identity(data_dir) if (data_dir / KEY_FILE).exists() else None
    if live is not None and live.public_key_raw != target.public_key:
        raise BackupError(
            f"backup {target.id} is device {target.device}'s; {data_dir} holds device "
            f"{live.device_id}",
            code=WRONG_DEVICE,
        )
    files = _identity_files(catalog, chain[0], keyring, needed=live is None)
    report = RestoreReport(target.id, target.kind, [m.id for m in chain], data_dir)
    if not data_dir.exists():
        return _rebuild(catalog, chain, keyring, data_dir, files, report, say)
    return _replace(catalog, chain, keyring, data_dir, live, files, report, say)


def _identity_files(
    catalog: Catalog, full: Manifest, keyring: KeyRing, *, needed: bool
) -> dict[str, bytes]:
    """The identity files a full backup holds, checked to be the key that signed it.

    Raises:
        BackupError: ``identity_missing`` (none, and ``needed``), ``backup_corrupt``,
            ``backup_tampered`` (another key than the manifest's).
    """
    record = full.file(IDENTITY_PAYLOAD)
    if record is None:
        if needed:
            raise BackupError(
                f"the data directory has no device and backup {full.id} holds no identity "
                "(it was made with --no-identity): restore into the device's own data directory",
                code=IDENTITY_MISSING,
            )
        return {}
    key = keyring.unlock(full.encryption) if full.encryption else None
    raw = read_all(catalog.dest / full.id / record.name, record, context(full.id, record.name), key)
    try:
        files = msgpack.unpackb(raw, raw=False)
        if not isinstance(files, dict) or not all(isinstance(v, bytes) for v in files.values()):
            raise TypeError("not a map of file names to bytes")
        pem = serialization.load_pem_private_key(files[KEY_FILE], password=None)
        public = pem.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    except (ValueError, TypeError, KeyError, msgpack.UnpackException):
        raise BackupError(f"the identity in backup {full.id} is unreadable", code=CORRUPT) from None
    if public != full.public_key:
        raise BackupError(f"backup {full.id} holds another device's key", code=TAMPERED)
    return {n: v for n, v in files.items() if n in _IDENTITY_NAMES}


_IDENTITY_NAMES = {KEY_FILE, "device.json", "device.crt", "org-ca.crt"}


def _rebuild(
    catalog: Catalog,
    chain: list[Manifest],
    keyring: KeyRing,
    data_dir: Path,
    files: dict[str, bytes],
    report: RestoreReport,
    say: ProgressFn,
) -> RestoreReport:
    """The disaster case: build the whole data directory beside it, rename it into place."""
    stage = None
    try:
        with disk_errors(f"the restored data directory {data_dir}"):
            stage = temp_dir_beside(data_dir)
            restored = _write_identity(stage, files)
            identity = load_identity(stage)
            events = staging.stage_store(chain, catalog.dest, keyring, stage / DB_FILE, say)
            staging.prove(stage / DB_FILE, identity, say)
            publish(stage, data_dir)
    except BaseException:
        if stage is not None:
            remove_tree(stage)
        raise
    say(f"rebuilt {data_dir} from backup {report.id}")
    return _done(report, events, None, restored, rebuilt=True)


def _replace(
    catalog: Catalog,
    chain: list[Manifest],
    keyring: KeyRing,
    data_dir: Path,
    live: Identity | None,
    files: dict[str, bytes],
    report: RestoreReport,
    say: ProgressFn,
) -> RestoreReport:
    """Swap a staged store into an existing data directory, under its lock."""
    lock_existed = (data_dir / "lock").exists()
    fd = lock_data_dir(data_dir)
    stage = data_dir / f".restore-{secrets.token_hex(4)}"
    swapped = False
    try:
        with disk_errors(f"the staged restore in {data_dir}"):
            make_private_dir(stage)
            if live is None:
                _write_identity(stage, files)
            identity = live or load_identity(stage)
            events = staging.stage_store(chain, catalog.dest, keyring, stage / DB_FILE, say)
            staging.prove(stage / DB_FILE, identity, say)
            aside = staging.swap_in(data_dir, stage / DB_FILE, say)
            swapped = True
            restored = _write_identity(data_dir, files)
    except BaseException:
        if not lock_existed and not swapped:
            (data_dir / "lock").unlink(missing_ok=True)
        raise
    finally:
        remove_tree(stage)
        os.close(fd)
    say(f"restored backup {report.id} into {data_dir}")
    return _done(report, events, aside, restored, rebuilt=False)


def _write_identity(directory: Path, files: dict[str, bytes]) -> list[str]:
    """Write the identity files ``directory`` lacks; returns their names."""
    written = []
    for name, data in sorted(files.items()):
        path = directory / name
        if not path.exists():
            write_atomic(path, data, 0o600 if name in _PRIVATE else 0o644)
            written.append(name)
    return written


def _done(
    report: RestoreReport,
    events: list[str],
    aside: Path | None,
    restored: list[str],
    *,
    rebuilt: bool,
) -> RestoreReport:
    return replace(
        report,
        events=events,
        rejoin=list(events),  # every restored event waits to rejoin sync
        pre_restore=aside,
        identity_restored=restored,
        rebuilt=rebuilt,
    )


def _restore_merge(
    catalog: Catalog,
    target: Manifest,
    keyring: KeyRing,
    data_dir: Path,
    overwrite: bool,
    say: ProgressFn,
) -> RestoreReport:
    [record] = target.files
    key = keyring.unlock(target.encryption) if target.encryption else None
    path = catalog.dest / target.id / record.name
    records = parse_lines(read_all(path, record, context(target.id, record.name), key))
    _check_trusted(data_dir, target)
    # NORMAL: no fsync per scan (a large restore would take minutes); the
    # files are fsynced once at the end, and a repeat of the merge is a no-op.
    replica = Replica.open(data_dir, durability=Durability.NORMAL)
    try:
        with disk_errors(f"the store in {data_dir}"):
            result = merge(replica, target.kind, records, overwrite=overwrite, progress=say)
    finally:
        replica.close()
    _fsync_store(data_dir)
    events = sorted({r["event"] for r in records})
    return RestoreReport(target.id, target.kind, [target.id], data_dir, events=events, merge=result)


def _check_trusted(data_dir: Path, target: Manifest) -> None:
    """Before anything is opened for writing: the role may restore this kind, and
    the backup is this device's or a device's in its directory."""
    identity = load_identity(data_dir)
    if target.kind is Kind.CONFIGURATION and not identity.role.is_authority:
        raise PermissionDeniedError(
            "configuration is authority data: restore it on an admin or relay device "
            f"(this is a {identity.role})"
        )
    if identity.public_key_raw == target.public_key:
        return
    with StoreFile.open_read_only(data_dir / DB_FILE) as store:
        known = store.public_key(target.device)
    if known != target.public_key:
        raise BackupError(
            f"backup {target.id} is signed by device {target.device}, which this device does "
            "not know: trust it first (enrol it in the organisation and sync)",
            code=UNTRUSTED,
        )


def _fsync_store(data_dir: Path) -> None:
    for suffix in ("", "-wal"):
        path = data_dir / f"{DB_FILE}{suffix}"
        if path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
