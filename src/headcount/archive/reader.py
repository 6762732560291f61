"""Reading archives: listing, verifying, querying by time range, raw rows.

Nothing here writes. A damaged archive never stops a listing or a query: it
is reported with its error (:attr:`ArchiveQuery.errors`), and the other
archives are read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from headcount.backup.crypto import KeyRing, Secret
from headcount.backup.payload import check_stored, context, read_content
from headcount.core.files import TEMP_PREFIX
from headcount.core.model import LogEntry

from .errors import CORRUPT, NOT_FOUND, ArchiveError, archive_errors
from .manifest import MANIFEST_FILE, ArchiveManifest, load
from .records import KINDS
from .writer import RAW_PAYLOAD, RAW_VERSION, RECORDS_PAYLOAD

ARCHIVE_DIR = "archive"


def default_archive_dir(data_dir: Path) -> Path:
    """Where archives go unless told otherwise: ``<data_dir>/archive``."""
    return data_dir / ARCHIVE_DIR


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One archive directory: its manifest, or why it could not be read."""

    path: Path
    manifest: ArchiveManifest | None
    error: ArchiveError | None

    @property
    def id(self) -> str:
        return self.path.name


def entries(directory: Path) -> list[ArchiveEntry]:
    """Every archive under ``directory``, oldest first; unreadable ones carry their error."""
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith((TEMP_PREFIX, ".")) or not path.is_dir():
            continue
        try:
            out.append(ArchiveEntry(path, load(path), None))
        except ArchiveError as exc:
            out.append(ArchiveEntry(path, None, exc))
    return out


def get(directory: Path, archive_id: str) -> ArchiveManifest:
    """The checked manifest of ``archive_id``.

    Raises:
        ArchiveError: ``archive_not_found``, or the manifest's own errors.
    """
    if not archive_id or "/" in archive_id or archive_id.startswith("."):
        raise ArchiveError(f"{archive_id!r} is not an archive id", code=NOT_FOUND)
    if not (directory / archive_id / MANIFEST_FILE).exists():
        raise ArchiveError(f"no archive {archive_id} in {directory}", code=NOT_FOUND)
    return load(directory / archive_id)


def verify(directory: Path, m: ArchiveManifest, keyring: KeyRing | None) -> bool:
    """Check every payload as stored; with a key ring (or unencrypted), the
    content too: checksums, every record line, and the raw rows against the
    manifest's counts and version vector. Returns whether the content was checked.

    Raises:
        ArchiveError: the first problem found.
    """
    path = directory / m.id
    with archive_errors(f"archive {m.id}"):
        for record in m.files:
            check_stored(path / record.name, record)
        if m.encryption and keyring is None:
            return False
        key = (keyring or KeyRing(None)).unlock(m.encryption) if m.encryption else None
        counts: dict[str, int] = {}
        for r in _lines(path, m, key):
            counts[r["type"]] = counts.get(r["type"], 0) + 1
        header, log, pending = read_raw(path, m, key)
    if counts != m.counts:
        raise ArchiveError(f"archive {m.id}: its records differ from its manifest", code=CORRUPT)
    vv: dict[str, int] = {}
    try:
        for device, seq, _hash in header.get("horizons", []):
            vv[str(device)] = int(seq)
    except (TypeError, ValueError):
        raise ArchiveError(f"archive {m.id}: malformed horizons", code=CORRUPT) from None
    for e in log:
        vv[e.device] = max(vv.get(e.device, 0), e.seq)
    if (
        vv != m.vv
        or len(log) != int(m.raw["entries"])
        or len(pending) != int(m.raw.get("pending", 0))
    ):
        raise ArchiveError(
            f"archive {m.id}: its raw entries differ from its manifest", code=CORRUPT
        )
    return True


def _lines(path: Path, m: ArchiveManifest, key: bytes | None) -> Iterator[dict[str, Any]]:
    """The records of an archive, streamed (call :func:`check_stored` first)."""
    record = m.file(RECORDS_PAYLOAD)
    if record is None:
        raise ArchiveError(f"archive {m.id} has no {RECORDS_PAYLOAD}", code=CORRUPT)
    rest = b""
    pieces = read_content(path / RECORDS_PAYLOAD, record, context(m.id, RECORDS_PAYLOAD), key)
    for piece in pieces:
        *lines, rest = (rest + piece).split(b"\n")
        for line in lines:
            yield _record(line, m.id)
    if rest:
        raise ArchiveError(f"archive {m.id}: the records end inside a line", code=CORRUPT)


def _record(line: bytes, archive_id: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
        if not isinstance(record, dict) or not isinstance(record.get("time_ms"), int):
            raise ValueError("not a record")
        if not isinstance(record.get("type"), str):
            raise ValueError("a record without a type")
    except ValueError as exc:
        raise ArchiveError(
            f"archive {archive_id}: a bad record line: {exc}", code=CORRUPT
        ) from None
    return record


def read_raw(
    path: Path, m: ArchiveManifest, key: bytes | None
) -> tuple[dict[str, Any], list[LogEntry], list[LogEntry]]:
    """The raw rows of an archive: its header, log entries and pending entries.

    Raises:
        ArchiveError: ``archive_corrupt`` (malformed), or a payload error.
    """
    record = m.file(RAW_PAYLOAD)
    if record is None:
        raise ArchiveError(f"archive {m.id} has no {RAW_PAYLOAD}", code=CORRUPT)
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=1 << 30)
    header: dict[str, Any] | None = None
    log: list[LogEntry] = []
    pending: list[LogEntry] = []
    try:
        for piece in read_content(path / RAW_PAYLOAD, record, context(m.id, RAW_PAYLOAD), key):
            unpacker.feed(piece)
            for obj in unpacker:
                if header is None:
                    header = obj
                    if not isinstance(header, dict) or header.get("v") != RAW_VERSION:
                        raise ValueError("not an archive's raw rows")
                    continue
                tag, (device, seq, hlc, upd, prev, _digest) = obj
                entry = LogEntry(m.event, str(device), int(seq), int(hlc), bytes(upd), bytes(prev))
                {"log": log, "pending": pending}[tag].append(entry)
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise ArchiveError(
            f"archive {m.id}: the raw rows do not decode: {exc}", code=CORRUPT
        ) from None
    if header is None:
        raise ArchiveError(f"archive {m.id}: no raw rows", code=CORRUPT)
    return header, log, pending


@dataclass(slots=True)
class ArchiveQuery:
    """The archived records whose ``time_ms`` is in ``[from_ms, to_ms]``.

    Iterate to stream them (archive by archive, oldest first; within an
    archive by time). Only the archives whose time range overlaps are read.
    An archive that cannot be read is skipped and its error added to
    :attr:`errors`: check it after the loop.
    """

    directory: Path
    from_ms: int
    to_ms: int
    events: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    secret: Secret | None = None
    errors: list[ArchiveError] = field(default_factory=list)
    archives_read: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        types = None if self.kinds is None else frozenset().union(*(KINDS[k] for k in self.kinds))
        keyring = KeyRing(self.secret) if self.secret is not None else None
        for entry in entries(self.directory):
            m = entry.manifest
            if m is None:
                assert entry.error is not None
                self.errors.append(_about(entry.id, entry.error))
                continue
            if (self.events is not None and m.event not in self.events) or not m.overlaps(
                self.from_ms, self.to_ms
            ):
                continue
            try:
                yield from self._read(entry.path, m, keyring, types)
            except ArchiveError as exc:
                self.errors.append(_about(m.id, exc))

    def _read(
        self, path: Path, m: ArchiveManifest, keyring: KeyRing | None, types: Iterable[str] | None
    ) -> Iterator[dict[str, Any]]:
        with archive_errors(f"archive {m.id}"):
            for record in m.files:
                check_stored(path / record.name, record)  # damage is found before any output
            key = (keyring or KeyRing(None)).unlock(m.encryption) if m.encryption else None
            self.archives_read.append(m.id)
            for r in _lines(path, m, key):
                if r["time_ms"] > self.to_ms:
                    return  # ordered by time: nothing later is in range
                if r["time_ms"] >= self.from_ms and (types is None or r["type"] in types):
                    yield {**r, "archive": m.id}


def _about(archive_id: str, exc: ArchiveError) -> ArchiveError:
    message = exc.message if archive_id in exc.message else f"archive {archive_id}: {exc.message}"
    return ArchiveError(message, code=exc.code)
