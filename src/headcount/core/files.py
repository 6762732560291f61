"""File-system steps that must be atomic or durable: private files, fsync, publish.

A backup or a staged restore is built in a temporary directory beside its
final place and renamed into place only when complete, so a crash never
leaves a half-written backup or a half-restored store under a real name.
The journals (:mod:`headcount.service.journal`) append through
:func:`write_durably`; keys, certificates and configuration files are
replaced with :func:`write_atomic`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from .errors import InputError

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (created, renamed files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> None:
    """``mkdir -p`` with mode 0700 for the directories created."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def create_private_dir(path: Path) -> None:
    """:func:`make_private_dir` for a directory a user named.

    Raises:
        InputError: ``path`` (or a parent) is a file, or not ours to create.
    """
    try:
        make_private_dir(path)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{path} exists and is not a directory") from None
    except PermissionError:
        raise InputError(f"no permission to create {path}") from None


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``): a temporary file
    beside it, fsynced, renamed over it, and the directory fsynced. A crash
    leaves the old content or the new, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def temp_dir_beside(final: Path) -> Path:
    """A new empty 0700 directory in ``final``'s parent, hidden from listings."""
    make_private_dir(final.parent)
    tmp = final.parent / f"{TEMP_PREFIX}{final.name}-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700)
    return tmp


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (never overwriting) with ``data``, fsynced.

    Raises:
        FileExistsError: ``path`` exists.
        OSError: it could not be written.
    """
    write_durably(path, data, os.O_CREAT | os.O_EXCL, mode)


def write_durably(path: Path, data: bytes, flags: int, mode: int = 0o600) -> None:
    """Open ``path`` for writing with ``flags`` (``os.O_CREAT``, ``os.O_APPEND``...),
    write all of ``data``, and fsync it before returning.

    Raises:
        OSError: it could not be opened or written (a full disk...).
    """
    fd = os.open(path, os.O_WRONLY | flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """Rename a complete, fsynced directory into place and make the rename durable.

    Raises:
        FileExistsError: ``final`` exists and is not an empty directory.
    """
    fsync_dir(tmp)
    os.rename(tmp, final)
    fsync_dir(final.parent)


def remove_tree(path: Path) -> None:
    """Remove a temporary tree, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)
