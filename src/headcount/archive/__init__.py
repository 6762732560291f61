"""Archives: events past an age moved out of the live store into verified files.

The public API (the CLI in :mod:`.cli` is a thin layer over it, and the
daemon's and relay's scheduled archiving in :mod:`.schedule` runs it):

- :func:`archive_now` archives every event old enough: writes and verifies
  its archive, then takes it out of the live store (``prepare``, ``commit``
  and ``supersede`` are its steps, for drivers that split them across threads);
- :class:`ArchiveQuery` streams the archived records of a time range;
- :func:`prune` deletes archives past retention;
- :func:`restore_archived` brings an archived event back.

See docs/archive.md for the format, the rules and the error codes.
"""

from .errors import ArchiveError
from .manifest import ArchiveManifest
from .reader import ArchiveEntry, ArchiveQuery, default_archive_dir, entries, read_raw, verify
from .records import KINDS
from .restore import find, restore_archived
from .run import (
    ArchivePolicy,
    Candidate,
    Steps,
    archive_now,
    commit,
    prepare,
    prune,
    scan,
    supersede,
)
from .schedule import ArchiveSchedule, parse_archive_section, scheduled_archive

__all__ = [
    "KINDS",
    "ArchiveEntry",
    "ArchiveError",
    "ArchiveManifest",
    "ArchivePolicy",
    "ArchiveQuery",
    "ArchiveSchedule",
    "Candidate",
    "Steps",
    "archive_now",
    "commit",
    "default_archive_dir",
    "entries",
    "find",
    "parse_archive_section",
    "prepare",
    "prune",
    "read_raw",
    "restore_archived",
    "scan",
    "scheduled_archive",
    "supersede",
    "verify",
]
