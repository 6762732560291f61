"""Scheduled backups: the ``[backup]`` section of a daemon's or relay's TOML, and one run.

A run (:func:`run_scheduled_backup`, blocking: the daemon calls it in a
worker thread) takes a full or an incremental backup into ``dest``, then
applies retention (:mod:`.retention`). An incremental schedule takes a
full backup instead when:

- this device has no backup in ``dest`` yet, or its newest chain is broken;
- the newest chain already has ``full_every`` links;
- the encryption changed (on, off, or another secret) since the chain began:
  a chain is read with one secret;
- the backup package refuses the incremental with ``needs_full_backup``
  (compaction folded entries the parent lacks, or the store was restored
  since and no longer continues the chain).

The reason is in the run's outcome (``full_reason``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headcount.core.durations import parse_duration
from headcount.core.errors import InputError
from headcount.service.journal import JOURNAL_FILE, Journal

from .catalog import Catalog
from .create import create_backup, default_dest
from .crypto import SCRYPT_N, KeyRing, Secret, read_key_file, read_passphrase_file
from .errors import NEEDS_FULL, BackupError
from .manifest import Kind, Manifest
from .retention import prune_chains

BACKUP_KEYS = frozenset(
    {"interval", "kind", "full_every", "dest", "keep", "passphrase_file", "key_file"}
)


@dataclass(frozen=True, slots=True)
class BackupSchedule:
    """Every setting of scheduled backups (see docs/gate.md, ``[backup]``)."""

    interval_s: float
    dest: Path
    kind: Kind = Kind.INCREMENTAL
    full_every: int = 24
    keep: int = 7
    secret: Secret | None = None
    scrypt_n: int = SCRYPT_N

    @property
    def journal(self) -> Journal:
        return Journal(self.dest / JOURNAL_FILE)


def parse_backup_section(table: Mapping[str, Any], data_dir: Path) -> BackupSchedule | None:
    """The schedule of a ``[backup]`` table; None when ``interval`` is absent (off).

    Secrets are read now, so that a missing or bad passphrase or key file
    stops the daemon at start-up rather than failing every run.

    Raises:
        InputError: unknown keys, bad values, unreadable secret files.
    """
    interval = section_interval(table, "backup", BACKUP_KEYS, "1h", alone={"dest"})
    if interval is None:
        return None
    kind = table.get("kind", Kind.INCREMENTAL.value)
    if kind not in (Kind.FULL.value, Kind.INCREMENTAL.value):
        raise InputError(f'backup.kind must be "full" or "incremental", not {kind!r}')
    counts = {k: _positive_int(table, k, d) for k, d in (("full_every", 24), ("keep", 7))}
    dest = path_setting(table, "backup", "dest", "a directory path")
    return BackupSchedule(
        interval_s=interval,
        dest=Path(dest) if dest else default_dest(data_dir),
        kind=Kind(kind),
        full_every=counts["full_every"],
        keep=counts["keep"],
        secret=read_secret(table, "backup"),
    )


def section_interval(
    table: Mapping[str, Any],
    section: str,
    keys: frozenset[str],
    example: str,
    alone: Collection[str] = (),
) -> float | None:
    """The ``interval`` of a scheduled job's ``[section]``, in seconds; None when
    it is absent (the job is off).

    Args:
        keys: every key the section may hold.
        example: an interval to suggest when it is missing (``"1h"``).
        alone: the keys that may be given without an interval.

    Raises:
        InputError: a key not in ``keys``; another key than ``alone`` without an
            interval; an interval that is not a duration.
    """
    unknown = set(table) - keys
    if unknown:
        raise InputError(f"unknown keys in [{section}]: {', '.join(sorted(unknown))}")
    if "interval" not in table:
        if set(table) - set(alone):
            raise InputError(f'[{section}] needs an interval (e.g. interval = "{example}") to run')
        return None
    return parse_duration(table["interval"], f"{section}.interval")


def path_setting(table: Mapping[str, Any], section: str, key: str, what: str) -> str | None:
    """The path ``section.key`` names, if given.

    Raises:
        InputError: not a non-empty string (the message says it must be ``what``).
    """
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InputError(f"{section}.{key} must be {what}")
    return value


def _positive_int(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"backup.{key} must be a whole number of at least 1")
    return value


def read_secret(table: Mapping[str, Any], section: str) -> Secret | None:
    """The secret named by ``passphrase_file`` or ``key_file`` in a section, if any.

    Raises:
        InputError: both given, a file unreadable or empty, not a key.
    """
    passphrase, key = table.get("passphrase_file"), table.get("key_file")
    if passphrase is not None and key is not None:
        raise InputError(f"[{section}]: give passphrase_file or key_file, not both")
    for name in ("passphrase_file", "key_file"):
        path_setting(table, section, name, "a file path")
    if key is not None:
        return Secret(key=read_key_file(Path(key)))
    if passphrase is None:
        return None
    text = read_passphrase_file(Path(passphrase), f"{section}.passphrase_file")
    if not text:
        raise InputError(f"{section}.passphrase_file: {passphrase} is empty")
    return Secret(passphrase=text)


def run_scheduled_backup(data_dir: Path, schedule: BackupSchedule, device: str) -> dict[str, Any]:
    """One scheduled run: a backup of the chosen kind, then retention. Blocking.

    Returns:
        The run's details: ``kind``, ``backup`` (its id), ``size``,
        ``full_reason`` (why a full one was taken on an incremental
        schedule, else None) and ``pruned`` (the backups retention deleted).

    Raises:
        BackupError, StoreError, OSError: the run failed; nothing was pruned.
    """
    catalog = Catalog(schedule.dest)
    kind, reason = choose_kind(catalog, device, schedule)
    options: dict[str, Any] = {
        "dest": schedule.dest,
        "secret": schedule.secret,
        "scrypt_n": schedule.scrypt_n,
    }
    try:
        made = create_backup(data_dir, kind, **options)
    except BackupError as exc:
        if kind is not Kind.INCREMENTAL or exc.code != NEEDS_FULL:
            raise
        kind, reason = Kind.FULL, exc.message
        made = create_backup(data_dir, kind, **options)
    pruned = prune_chains(catalog, device, schedule.keep)
    return {
        "kind": made.kind.value,
        "backup": made.id,
        "size": made.size,
        "full_reason": reason,
        "pruned": pruned,
    }


def choose_kind(catalog: Catalog, device: str, schedule: BackupSchedule) -> tuple[Kind, str | None]:
    """The kind of the next scheduled backup and, for a full one on an
    incremental schedule, why."""
    if schedule.kind is Kind.FULL:
        return Kind.FULL, None
    latest = catalog.latest(device)
    if latest is None:
        return Kind.FULL, "no backup of this device to build an incremental on"
    try:
        chain = catalog.chain(latest)
    except BackupError as exc:
        return Kind.FULL, f"the newest chain is broken: {exc.message}"
    if len(chain) >= schedule.full_every:
        return Kind.FULL, f"the chain has {len(chain)} links (full_every = {schedule.full_every})"
    if not _same_secret(latest, schedule.secret):
        return Kind.FULL, "the encryption changed since the chain began"
    return Kind.INCREMENTAL, None


def _same_secret(latest: Manifest, secret: Secret | None) -> bool:
    if latest.encryption is None or secret is None:
        return latest.encryption is None and secret is None
    try:
        KeyRing(secret).unlock(latest.encryption)
    except BackupError:
        return False
    return True
