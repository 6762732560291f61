"""``headcount backup …``: create, verify, list and restore backups.

Registered into the main parser by :func:`register` (one line in
``headcount/cli.py``)::

    headcount backup create [--kind full|incremental|attendance|participants|configuration]
    headcount backup list [--verify] [--runs]
    headcount backup verify ID
    headcount backup restore ID [--data-dir DIR]
    headcount backup keygen FILE
    headcount backup rejoin EVENT --force

Backups go to ``--dest``, else ``$HEADCOUNT_BACKUP_DIR``, else
``<data_dir>/backups``. Secrets never appear on the command line: a
passphrase comes from ``--passphrase-file`` or ``$HEADCOUNT_BACKUP_PASSPHRASE``,
a key from ``--key-file``. Progress goes to stderr (not with ``--json``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headcount.backup.catalog import Catalog, Entry
from headcount.backup.create import create_backup, default_dest
from headcount.backup.crypto import Secret, read_key_file, read_passphrase_file, write_key_file
from headcount.backup.errors import BackupError
from headcount.backup.manifest import Kind
from headcount.backup.payload import IDENTITY_PAYLOAD, check_stored
from headcount.backup.restore import restore_backup
from headcount.backup.verify import verify_backup
from headcount.core.errors import InputError
from headcount.core.identity import default_data_dir
from headcount.replica.replica import Replica
from headcount.service.journal import JOURNAL_FILE, Journal

from .util import Command, Result, command_group

PASSPHRASE_ENV = "HEADCOUNT_BACKUP_PASSPHRASE"
DEST_ENV = "HEADCOUNT_BACKUP_DIR"


def register(sub: Any, cmd: Command) -> None:
    """Add the ``backup`` command group with the main CLI's ``cmd`` helper."""
    grp = command_group(sub, "backup", "back up, verify, list and restore this device's data")
    _add_create(grp, cmd)
    p = cmd(grp, "list", _list, "list backups: size, kind, time, chain, verification state")
    p.add_argument("--verify", action="store_true", help="verify each backup (reads every file)")
    p.add_argument(
        "--runs", action="store_true", help="list the scheduled backup runs and their outcomes"
    )
    _dest_option(p)
    secret_options(p, "verify content with")
    p = cmd(grp, "verify", _verify, "verify a backup and its chain (reads only the backup)")
    p.add_argument("backup", metavar="ID", help="a backup id in --dest, or a backup directory")
    _dest_option(p)
    secret_options(p, "decrypt with")
    p = cmd(grp, "restore", _restore, "validate a backup, then restore it atomically")
    p.add_argument("backup", metavar="ID", help="a backup id in --dest, or a backup directory")
    p.add_argument(
        "--overwrite", action="store_true", help="per-kind: also replace values that differ"
    )
    p.add_argument("--device-id", help="refuse unless the backup is this device's")
    _dest_option(p)
    secret_options(p, "decrypt with")
    p = cmd(grp, "keygen", _keygen, "create a backup key file (32 random bytes, hex, mode 0600)")
    p.add_argument("file", type=Path, help="the new key file (never overwritten)")
    p = cmd(grp, "rejoin", _rejoin, "allow local writes to an event restored from a backup")
    p.add_argument("event")
    p.add_argument(
        "--force",
        action="store_true",
        required=True,
        help="accept that entries this device wrote after the backup may be lost to it "
        "and that its next writes may conflict with them",
    )


def _add_create(grp: Any, cmd: Command) -> None:
    p = cmd(grp, "create", _create, "create a backup (full by default)")
    p.add_argument(
        "--kind",
        choices=[k.value for k in Kind],
        default="full",
        help="full: the whole store and identity; incremental: what changed since the "
        "previous backup of the chain; attendance, participants, configuration: a logical "
        "export of one kind (default: full)",
    )
    p.add_argument(
        "--parent", metavar="ID", help="incremental: build on this backup (default: the newest)"
    )
    p.add_argument(
        "--event",
        dest="events",
        action="append",
        metavar="EV",
        help="per-kind: only this event (repeat)",
    )
    p.add_argument(
        "--no-identity", action="store_true", help="full: leave out the key and certificates"
    )
    p.add_argument("--level", type=int, default=6, help="gzip level 1-9 (default 6)")
    _dest_option(p)
    secret_options(p, "encrypt with")


def _dest_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dest",
        type=Path,
        help=f"the backup directory (default: ${DEST_ENV}, else DATA_DIR/backups)",
    )


def secret_options(p: argparse.ArgumentParser, verb: str) -> None:
    """Add ``--passphrase-file`` and ``--key-file`` (the archive commands use them too)."""
    p.add_argument(
        "--passphrase-file",
        type=Path,
        help=f"{verb} the passphrase in this file (or set ${PASSPHRASE_ENV})",
    )
    p.add_argument("--key-file", type=Path, help=f"{verb} this key file (see `backup keygen`)")


# -- handlers ------------------------------------------------------------------


def _create(args: argparse.Namespace) -> Result:
    m = create_backup(
        data_dir_from(args),
        args.kind,
        dest=_dest(args),
        secret=secret_from_args(args),
        parent=args.parent,
        events=args.events,
        identity=not args.no_identity,
        progress=_progress(args),
        level=args.level,
    )
    if m.encryption is None and m.file(IDENTITY_PAYLOAD) is not None:
        print(
            "headcount: warning: this backup holds the device's private key unencrypted: "
            "keep it as safe as the device (or use --passphrase-file / --key-file)",
            file=sys.stderr,
        )
    data = _summary(m.raw, _dest(args) / m.id)
    return data, f"created {m.kind} backup {m.id} ({m.size} bytes) in {_dest(args)}"


def _verify(args: argparse.Namespace) -> Result:
    secret = secret_from_args(args)
    report = verify_backup(args.backup, _dest(args), secret=secret, progress=_progress(args))
    data = report.to_dict()
    return data, f"{report.id}: {data['state']} (chain {' <- '.join(report.chain)})"


def _restore(args: argparse.Namespace) -> Result:
    report = restore_backup(
        args.backup,
        _dest(args),
        data_dir_from(args),
        secret=secret_from_args(args),
        overwrite=args.overwrite,
        expect_device=args.device_id,
        progress=_progress(args),
    )
    lines = [f"restored {report.kind} backup {report.id} into {report.data_dir}"]
    if report.pre_restore:
        lines.append(f"the previous store is kept in {report.pre_restore}")
    if report.merge:
        r = report.merge
        lines.append(f"written {r.written}, already present {r.unchanged}, skipped {r.skipped}")
        lines += [f"  skipped: {reason}" for reason in r.reasons]
    if report.rejoin:
        lines.append(
            "local writes wait until this device has synced with a peer: "
            + ", ".join(report.rejoin)
        )
    return report.to_dict(), "\n".join(lines)


def _list(args: argparse.Namespace) -> Result:
    dest = _dest(args)
    if args.runs:
        return _runs(dest)
    catalog = Catalog(dest)
    secret = secret_from_args(args) if args.verify else None
    rows = [_row(catalog, e, args.verify, secret) for e in catalog.entries()]
    lines = [f"{'ID':<36} {'KIND':<13} {'CREATED':<20} {'SIZE':>10}  EVENTS  STATE / CHAIN"]
    for r in rows:
        chain = f"  (on {r['parent']})" if r["parent"] else ""
        lines.append(
            f"{r['id']:<36} {r['kind'] or '?':<13} {r['created'] or '?':<20} {r['size']:>10}"
            f"  {len(r['events']):>6}  {r['state']}{chain}"
        )
    return rows, "\n".join(lines) if rows else f"(no backups in {dest})"


def _row(catalog: Catalog, entry: Entry, verify: bool, secret: Secret | None) -> dict[str, Any]:
    m = entry.manifest
    row: dict[str, Any] = {
        "id": entry.id,
        "path": str(entry.path),
        "kind": None if m is None else m.kind.value,
        "created": None if m is None else _time(m.created_ms),
        "size": 0 if m is None else m.size,
        "parent": None if m is None else m.parent,
        "chain": [],
        "events": [] if m is None else sorted(m.events),
        "encrypted": bool(m and m.encryption),
    }
    try:
        if m is None:
            raise entry.error or BackupError("unreadable")
        if verify:
            report = verify_backup(entry.id, catalog.dest, secret=secret)
            row["chain"], row["state"] = report.chain, report.to_dict()["state"]
        else:
            row["chain"] = [c.id for c in catalog.chain(m)]
            for record in m.files:
                if (entry.path / record.name).stat().st_size != record.size:
                    check_stored(entry.path / record.name, record)  # raises, with the reason
            row["state"] = "not verified"
    except (BackupError, OSError) as exc:
        code = getattr(exc, "code", "backup_truncated")
        row["state"] = f"{code}: {getattr(exc, 'message', exc)}"
    return row


def _runs(dest: Path) -> Result:
    """The scheduled runs recorded in ``dest``'s journal, oldest first."""
    runs = [r for r in Journal(dest / JOURNAL_FILE).records() if r.get("job") == "backup"]
    lines = [f"{'STARTED':<24} {'KIND':<12} {'SIZE':>10} {'SECONDS':>8}  OUTCOME"]
    for r in runs:
        error = r.get("error") or {}
        outcome = (
            f"ok {r.get('backup')}"
            if r.get("ok")
            else f"{error.get('code')}: {error.get('message')}"
        )
        if r.get("ok") and r.get("full_reason"):
            outcome += f" (full: {r['full_reason']})"
        if r.get("pruned"):
            outcome += f"; pruned {len(r['pruned'])}"
        lines.append(
            f"{r.get('started', '?'):<24} {r.get('kind') or '-':<12} {r.get('size') or 0:>10} "
            f"{r.get('duration_s', 0):>8.2f}  {outcome}"
        )
    return runs, "\n".join(lines) if runs else f"(no scheduled backup runs recorded in {dest})"


def _keygen(args: argparse.Namespace) -> Result:
    write_key_file(args.file)
    return {"key_file": str(args.file)}, (
        f"created {args.file}: keep a copy apart from the backups; without it they cannot be read"
    )


def _rejoin(args: argparse.Namespace) -> Result:
    with Replica.open(args.data_dir) as replica:
        if args.event not in replica.rejoin_pending:
            raise InputError(f"event {args.event!r} is not waiting to rejoin", code="not_pending")
        replica.mark_rejoined(args.event)
    return {"rejoined": args.event}, f"local writes to {args.event} are allowed again"


# -- helpers -------------------------------------------------------------------


def data_dir_from(args: argparse.Namespace) -> Path:
    """The ``--data-dir`` given, else the default data directory."""
    return args.data_dir or default_data_dir()


def dir_from(
    args: argparse.Namespace, given: Path | None, env: str, default: Callable[[Path], Path]
) -> Path:
    """A directory option's value ``given``, else ``$env``, else ``default`` of the
    data directory (the archive commands' ``--dir`` is resolved so too)."""
    if given is not None:
        return given
    value = os.environ.get(env)
    return Path(value) if value else default(data_dir_from(args))


def _dest(args: argparse.Namespace) -> Path:
    return dir_from(args, args.dest, DEST_ENV, default_dest)


def secret_from_args(args: argparse.Namespace) -> Secret | None:
    """The secret of :func:`secret_options` (else ``$HEADCOUNT_BACKUP_PASSPHRASE``), if any.

    Raises:
        InputError: both options, or an unreadable or malformed file.
    """
    if args.passphrase_file is not None and args.key_file is not None:
        raise InputError("give --passphrase-file or --key-file, not both")
    if args.key_file is not None:
        return Secret(key=read_key_file(args.key_file))
    if args.passphrase_file is not None:
        return Secret(passphrase=read_passphrase_file(args.passphrase_file))
    env = os.environ.get(PASSPHRASE_ENV)
    return Secret(passphrase=env.encode("utf-8")) if env else None


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if args.json:
        return None
    return lambda line: print(f"headcount: {line}", file=sys.stderr, flush=True)


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    return {
        "id": raw["id"],
        "kind": raw["kind"],
        "path": str(path),
        "created": raw["created"],
        "device": raw["device"],
        "size": sum(f["size"] for f in raw["files"]),
        "raw_size": sum(f["raw_size"] for f in raw["files"]),
        "files": raw["files"],
        "events": raw["events"],
        "parent": raw.get("parent"),
        "encrypted": raw.get("encryption") is not None,
        "identity": raw.get("identity", []),
    }
