"""The errors of archiving and of reading archives, with their stable codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from headcount.backup.errors import BackupError
from headcount.core.errors import HeadcountError

CORRUPT = "archive_corrupt"
"""A payload's bytes differ from its checksum, or its content does not decode."""
TRUNCATED = "archive_truncated"
"""A payload is missing or shorter than the manifest says."""
TAMPERED = "archive_tampered"
"""The manifest's signature does not verify, or its key is not its device's."""
NOT_FOUND = "archive_not_found"
"""No such archive, or no archive of that event."""
UNREADABLE = "archive_unreadable"
"""An archive file cannot be read (permissions, I/O)."""
INCOMPATIBLE = "incompatible_version"
"""The archive's format is not one this headcount reads."""
CHANGED = "changed_while_archiving"
"""The event received entries while its archive was written: it stays live."""

_FROM_BACKUP = {
    "backup_corrupt": CORRUPT,
    "backup_truncated": TRUNCATED,
    "backup_tampered": TAMPERED,
    "backup_unreadable": UNREADABLE,
    "backup_not_found": NOT_FOUND,
}


class ArchiveError(HeadcountError):
    """An archive could not be written, verified or read."""

    code = "archive_error"


@contextmanager
def archive_errors(what: str) -> Iterator[None]:
    """Report the backup package's payload errors as archive errors about ``what``.

    Raises:
        ArchiveError: the same failure, with an ``archive_*`` code (``wrong_key``,
            ``key_required``, ``disk_full`` and ``io_error`` keep theirs).
    """
    try:
        yield
    except BackupError as exc:
        code = _FROM_BACKUP.get(exc.code, exc.code)
        raise ArchiveError(f"{what}: {exc.message}", code=code) from None
