"""Payload files: content compressed (gzip), optionally encrypted, checksummed.

Written as a stream, so a store of any size is backed up in bounded memory.
An unencrypted payload is a plain ``.gz`` file (``gunzip`` opens it); an
encrypted one is AES-GCM chunks of the gzip stream (see :mod:`.crypto`).
The manifest records the SHA-256 of the bytes as stored (checked before
anything is decrypted or decompressed) and of the content (checked after).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from .crypto import CHUNK_BYTES, ChunkSealer, open_chunks
from .errors import CORRUPT, TRUNCATED, UNREADABLE, BackupError
from .signed import FileRecord

COMPRESSION = "gzip"
STORE_PAYLOAD = "store.db.gz"
IDENTITY_PAYLOAD = "identity.msgpack.gz"
DELTA_PAYLOAD = "delta.msgpack.gz"
DEFAULT_LEVEL = 6
READ_BYTES = 1 << 20
_GZIP_WBITS = 31  # zlib's gzip container


def context(backup_id: str, name: str) -> bytes:
    """What a payload's encrypted chunks are bound to: its backup and file name."""
    return f"{backup_id}/{name}".encode()


class PayloadWriter:
    """Writes one payload file (mode 0600); :meth:`close` returns its record.

    ``context`` names the file's place (backup id and file name); encrypted
    chunks are bound to it. Use as a context manager: an exception removes
    the partial file.
    """

    def __init__(
        self, path: Path, context: bytes, key: bytes | None, level: int = DEFAULT_LEVEL
    ) -> None:
        self.path = path
        self._fh: BinaryIO = os.fdopen(
            os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb"
        )
        self._zip = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        self._sealer = ChunkSealer(key, context) if key is not None else None
        self._pending = bytearray()
        self._stored = hashlib.sha256()
        self._raw = hashlib.sha256()
        self._size = self._raw_size = 0
        if self._sealer is not None:
            self._out(self._sealer.header())

    def write(self, data: bytes) -> None:
        self._raw.update(data)
        self._raw_size += len(data)
        self._compressed(self._zip.compress(data))

    def close(self) -> FileRecord:
        """Finish, fsync and close the file."""
        self._compressed(self._zip.flush())
        if self._sealer is not None:
            self._out(self._sealer.seal(bytes(self._pending), final=True))
            self._pending.clear()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return FileRecord(
            self.path.name,
            self._size,
            self._stored.hexdigest(),
            self._raw_size,
            self._raw.hexdigest(),
        )

    def __enter__(self) -> PayloadWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self._fh.close()
            self.path.unlink(missing_ok=True)

    def _compressed(self, data: bytes) -> None:
        if self._sealer is None:
            self._out(data)
            return
        self._pending += data
        while len(self._pending) > CHUNK_BYTES:
            self._out(self._sealer.seal(bytes(self._pending[:CHUNK_BYTES]), final=False))
            del self._pending[:CHUNK_BYTES]

    def _out(self, data: bytes) -> None:
        if data:
            self._fh.write(data)
            self._stored.update(data)
            self._size += len(data)


def check_stored(path: Path, record: FileRecord) -> None:
    """Check a payload file's size and SHA-256 as stored (no key needed).

    Raises:
        BackupError: ``backup_truncated`` (missing or shorter),
            ``backup_corrupt`` (longer, or different bytes).
    """
    try:
        size = path.stat().st_size
        digest = _sha256(path)
    except FileNotFoundError:
        raise BackupError(
            f"payload {path.name} is missing from {path.parent}", code=TRUNCATED
        ) from None
    except OSError as exc:
        raise BackupError(f"cannot read payload {path}: {exc}", code=UNREADABLE) from None
    if size != record.size:
        code = TRUNCATED if size < record.size else CORRUPT
        raise BackupError(
            f"payload {path} is {size} bytes; the manifest says {record.size}", code=code
        )
    if digest != record.sha256:
        raise BackupError(f"payload {path} does not match its SHA-256 checksum", code=CORRUPT)


def read_content(
    path: Path, record: FileRecord, context: bytes, key: bytes | None
) -> Iterator[bytes]:
    """The content of a payload, decrypted and decompressed, in pieces.

    The content's size and SHA-256 are checked when the iterator is
    exhausted: a consumer trusts what it received only once the loop ended
    without an exception. Call :func:`check_stored` first.

    Raises:
        BackupError: ``backup_corrupt`` or ``backup_truncated``.
    """
    unzip = zlib.decompressobj(_GZIP_WBITS)
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        for stored in _stored_chunks(fh, context, key):
            try:
                piece = unzip.decompress(stored)
            except zlib.error as exc:
                raise BackupError(
                    f"payload {path} does not decompress: {exc}", code=CORRUPT
                ) from None
            if unzip.unused_data:
                raise BackupError(f"payload {path} has data after its end", code=CORRUPT)
            digest.update(piece)
            size += len(piece)
            yield piece
    if not unzip.eof:
        raise BackupError(f"payload {path} ends before its compressed stream", code=TRUNCATED)
    if size != record.raw_size or digest.hexdigest() != record.raw_sha256:
        raise BackupError(f"the content of payload {path} fails its checksum", code=CORRUPT)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(READ_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_all(path: Path, record: FileRecord, context: bytes, key: bytes | None) -> bytes:
    """:func:`check_stored`, then the whole content of a (small) payload."""
    check_stored(path, record)
    return b"".join(read_content(path, record, context, key))


def _stored_chunks(fh: BinaryIO, context: bytes, key: bytes | None) -> Iterator[bytes]:
    if key is not None:
        yield from open_chunks(key, context, fh)
        return
    while chunk := fh.read(READ_BYTES):
        yield chunk
