"""File-system steps that must be atomic or durable: private files, fsync, publish.

A backup or a staged restore is built in a temporary directory beside its
final place and renamed into place only when complete, so a crash never
leaves a half-written backup or a half-restored store under a real name.
The journals (:mod:`headcount.service.journal`) append through
:func:`write_durably`; keys, certificates and configuration files are
replaced with :func:`write_atomic`.

What is private stays private: a data directory is 0700
(:func:`create_private_dir` tightens an empty one that is not, and refuses
one that holds files), a store and its write-ahead log are 0600
(:func:`create_private_file`, :func:`tighten_private_file`), and a file
holding a secret that other users may access is refused
(:func:`read_secret_file`).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from .errors import InputError

TEMP_PREFIX = ".tmp-"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO  # any permission for group or others

log = logging.getLogger(__name__)


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
    """:func:`make_private_dir` for a directory a user named, which may exist.

    An existing directory must belong to this user. If group or others may
    access it, an empty one is tightened to 0700 (a warning is logged, which
    the command line shows on stderr); one that holds files is refused, as
    they were put there to be shared or by someone else, and widening what
    they share is not ours to decide.

    Raises:
        InputError: ``path`` (or a parent) is a file, or not ours to create;
            it belongs to another user (code ``insecure_dir``); or it is open
            to other users and not empty (code ``insecure_dir``).
    """
    try:
        make_private_dir(path)
        info = path.stat()
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{path} exists and is not a directory") from None
    except PermissionError:
        raise InputError(f"no permission to create {path}") from None
    if info.st_uid != os.geteuid():
        raise InputError(
            f"{path} belongs to another user (uid {info.st_uid}): choose a directory of your own",
            code="insecure_dir",
        )
    mode = stat.S_IMODE(info.st_mode)
    if not mode & OPEN_TO_OTHERS:
        return
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise InputError(f"cannot list {path}: {exc.strerror}") from None
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise InputError(
            f"{path} is open to other users (mode {mode:04o}) and holds files ({shown}): "
            "choose an empty or new directory, or `chmod 700` it yourself if its files may "
            "be private",
            code="insecure_dir",
        )
    os.chmod(path, PRIVATE_DIR_MODE)
    log.warning(
        "%s was open to other users (mode %04o): tightened to %04o",
        path,
        mode,
        PRIVATE_DIR_MODE,
    )


def read_secret_file(path: Path, what: str) -> bytes:
    """The content of a file holding a secret (a passphrase, a key, a token
    secret), which only its owner may access.

    Args:
        path: the file.
        what: what it holds, for messages ("the backup passphrase file").

    Raises:
        InputError: it cannot be read; or group or others have any
            permission on it (code ``insecure_secret_file``).
    """
    try:
        with path.open("rb") as fh:
            # The mode of the file opened, not of whatever the name points
            # to by the time a separate stat() runs.
            mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
            if mode & OPEN_TO_OTHERS:
                raise InputError(
                    f"{what} {path} is accessible by other users (mode {mode:04o}); chmod 600 it",
                    code="insecure_secret_file",
                )
            return fh.read()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (then it is
    left as it is). A store is created so before SQLite opens it: SQLite
    gives its ``-wal`` and ``-shm`` files the mode of the database file.

    Raises:
        OSError: it could not be created.
    """
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, PRIVATE_FILE_MODE))


def tighten_private_file(path: Path) -> int | None:
    """Take every permission of group and others off an existing file
    (0644 becomes 0600).

    Returns:
        The mode it had if it was tightened; None if it was private already
        or does not exist.

    Raises:
        OSError: it could not be changed (it belongs to another user...).
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if not mode & OPEN_TO_OTHERS:
        return None
    os.chmod(path, mode & ~OPEN_TO_OTHERS)
    return mode


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
