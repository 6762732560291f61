"""Backups of a device: full, incremental and per-kind; verification; atomic restore.

The public API (the CLI in :mod:`.cli` is a thin layer over it, and the
scheduled backups, archive and disaster-recovery drill build on it):

- :func:`create_backup` writes a backup directory with a signed manifest;
- :func:`verify_backup` checks a backup and its chain without touching live data;
- :func:`restore_backup` validates everything, then restores atomically
  (a full chain) or merges (a per-kind backup);
- :class:`Catalog` lists the backups of a destination and their chains.

See docs/backup.md for the format, the guarantees and the error codes.
"""

from .catalog import Catalog, Entry
from .create import create_backup, default_dest
from .crypto import Secret, read_key_file, write_key_file
from .errors import BackupError
from .manifest import FORMAT_VERSION, EventState, FileRecord, Kind, Manifest
from .merge import MergeReport
from .restore import RestoreReport, restore_backup
from .verify import VerifyReport, verify_backup

__all__ = [
    "FORMAT_VERSION",
    "BackupError",
    "Catalog",
    "Entry",
    "EventState",
    "FileRecord",
    "Kind",
    "Manifest",
    "MergeReport",
    "RestoreReport",
    "Secret",
    "VerifyReport",
    "create_backup",
    "default_dest",
    "read_key_file",
    "restore_backup",
    "verify_backup",
    "write_key_file",
]
