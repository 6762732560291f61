"""The errors of backup, verification and restore, with their stable codes.

Every failure is a :class:`BackupError` (a :class:`~headcount.errors.HeadcountError`,
so the CLI's handler prints it and exits 1). Its ``code`` says what went
wrong; the message says which file and what to do.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from headcount.core.errors import HeadcountError
from headcount.store.errors import is_disk_full

CORRUPT = "backup_corrupt"
"""A payload's bytes differ from its checksum, or do not decode."""
TRUNCATED = "backup_truncated"
"""A payload is shorter than the manifest says."""
TAMPERED = "backup_tampered"
"""The manifest's signature does not verify, or it is signed by another key."""
CHAIN_BROKEN = "chain_broken"
"""An incremental's parent is missing, or does not hold what the incremental builds on."""
WRONG_KEY = "wrong_key"
"""The passphrase or key file is not the one the backup was encrypted with."""
KEY_REQUIRED = "key_required"
"""The backup is encrypted and no passphrase or key file was given."""
INCOMPATIBLE = "incompatible_version"
"""The backup's format or store schema cannot be read by this headcount."""
DISK_FULL = "disk_full"
"""No space left (ENOSPC or EDQUOT) while writing."""
NOT_FOUND = "backup_not_found"
"""No backup with that id (or path)."""
WRONG_DEVICE = "wrong_device"
"""The backup belongs to another device than the one in the data directory."""
UNTRUSTED = "untrusted_signer"
"""A logical backup is signed by a device this replica does not know."""
IDENTITY_MISSING = "identity_missing"
"""The data directory has no device and the backup holds no identity to rebuild it."""
NEEDS_FULL = "needs_full_backup"
"""An incremental backup cannot express the change: take a full one."""
IO_ERROR = "io_error"
"""Another operating-system error while writing (permissions, a vanished directory)."""
UNREADABLE = "backup_unreadable"
"""A backup file exists but cannot be read (permissions, I/O error)."""


class BackupError(HeadcountError):
    """A backup could not be created, verified or restored. Nothing live changed."""

    code = "backup_error"


@contextmanager
def disk_errors(what: str) -> Iterator[None]:
    """Turn a full disk (ENOSPC, EDQUOT) while writing ``what`` into ``disk_full``,
    and any other operating-system error into ``io_error``.

    Raises:
        BackupError: code ``disk_full`` or ``io_error``.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(what) from None
        raise BackupError(f"cannot write {what}: {exc}", code=IO_ERROR) from None
    except Exception as exc:
        if is_disk_full(exc):  # SQLite's own "database or disk is full"
            raise _disk_full(what) from None
        raise


def _disk_full(what: str) -> BackupError:
    return BackupError(
        f"no space left while writing {what}: free some space and try again", code=DISK_FULL
    )
