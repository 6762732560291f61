"""Participant CSV import: streamed, all-or-nothing validation, errors by line number.

A participants file may hold a million rows, so it is never held in memory:
:class:`ParticipantsCsv` reads it twice, row by row.

1. :meth:`ParticipantsCsv.check` reads every row and checks it: the file's
   shape and an id given twice here, the ids and values by the caller's
   check against the event. It keeps only the ids seen and a digest of each
   batch of rows. Nothing is written unless every row passed.
2. :meth:`ParticipantsCsv.batches` reads the rows again and hands them out
   in batches, each only if its digest equals the first pass's: a file
   changed between the passes stops the import before the first batch that
   differs, so what is written is always what was checked (and need not be
   checked again).

The caller writes each batch durably before asking for the next.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn

from .errors import InputError
from .schema import Schema

BATCH_ROWS = 10_000  # rows per batch: per durable write, and per digest

Row = dict[str, str]  # column -> stripped cell; empty cells left out (but the id)
RowCheck = Callable[[str, Row], object]  # (where: "FILE:LINE", row); raises to refuse
Located = tuple[str, Row]  # ("FILE:LINE", row)


@dataclass(frozen=True, slots=True)
class ImportReport:
    rows: int
    changed: int
    entries: int

    def to_dict(self) -> dict[str, int]:
        return {"rows": self.rows, "changed": self.changed, "entries": self.entries}


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """How far an import is: ``rows`` of ``total`` done in ``phase``
    (``"checked"``: the first pass, ``total`` not known yet; ``"imported"``:
    written and durable)."""

    phase: str
    rows: int
    total: int | None = None


class ParticipantsCsv:
    """A participants CSV read in two streaming passes (see the module docstring).

    The header names the columns: ``id`` is required, every other column
    must be a participant field declared in the schema. Empty cells are
    left unset; blank lines are skipped.

    Open with :meth:`open` and use as a context manager; call :meth:`check`
    once, then iterate :meth:`batches` once.
    """

    def __init__(self, fh: IO[str], path: Path, schema: Schema, batch_rows: int) -> None:
        """Wrap the open text file ``fh``; prefer :meth:`open`."""
        if batch_rows < 1:
            raise InputError("batch_rows must be at least 1")
        self._fh = fh
        self.path = path
        self.schema = schema
        self.batch_rows = batch_rows
        self.rows = 0  # data rows, known after check()
        self._digests: list[bytes] | None = None

    @classmethod
    def open(cls, path: Path, schema: Schema, batch_rows: int = BATCH_ROWS) -> ParticipantsCsv:
        """Open the file at ``path`` (both passes read this one open file,
        even if the name is moved or replaced meanwhile).

        Raises:
            InputError: no such file, a directory, or unreadable.
        """
        try:
            fh = path.open(newline="", encoding="utf-8-sig")
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read it: {exc.strerror}") from None
        return cls(fh, path, schema, batch_rows)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ParticipantsCsv:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the two passes --------------------------------------------------------

    def check(self, check_row: RowCheck, progress: Callable[[int], None] | None = None) -> int:
        """The first pass: check every row, write nothing.

        Args:
            check_row: the caller's check of a row's id and values against
                the event (:meth:`headcount.core.event.Event.participant_check`),
                called as ``check_row("FILE:LINE", row)``; it raises to
                refuse the row (its message should start with ``FILE:LINE``).
                This module checks the file's shape only.
            progress: called with the number of rows checked so far, after
                each batch.

        Returns:
            The number of data rows.

        Raises:
            InputError: the file is unreadable, or a row is invalid (the
                message starts with ``FILE:LINE``); whatever ``check_row`` raises.
        """
        seen: set[str] = set()
        digests: list[bytes] = []
        digest = _new_digest()
        count = 0
        for line, row in self._rows():
            check_row(f"{self.path}:{line}", row)
            pid = row["id"]
            if pid in seen:
                first = self._first_line_of(pid)
                raise InputError(f"{self.path}:{line}: participant {pid!r} already on line {first}")
            seen.add(pid)
            _feed(digest, line, row)
            count += 1
            if count % self.batch_rows == 0:
                digests.append(digest.digest())
                digest = _new_digest()
                if progress is not None:
                    progress(count)
        if count % self.batch_rows:
            digests.append(digest.digest())
        self.rows = count
        self._digests = digests
        return count

    def batches(self) -> Iterator[list[Located]]:
        """The second pass: the rows again, ``batch_rows`` at a time, each
        batch as ``[("FILE:LINE", row), ...]``.

        Raises:
            InputError: the file is unreadable, or differs from what
                :meth:`check` read (it changed in between): raised before the
                first batch that differs is handed out.
        """
        if self._digests is None:
            raise AssertionError("ParticipantsCsv.batches() before check()")
        expected = iter(self._digests)
        batch: list[Located] = []
        digest = _new_digest()
        done = 0
        for line, row in self._rows():
            _feed(digest, line, row)
            batch.append((f"{self.path}:{line}", row))
            if len(batch) == self.batch_rows:
                self._same(next(expected, None), digest, done)
                yield batch
                done += len(batch)
                batch, digest = [], _new_digest()
        if batch:
            self._same(next(expected, None), digest, done)
            yield batch
            done += len(batch)
        if next(expected, None) is not None:
            self._changed(done)

    def _same(self, expected: bytes | None, digest: hashlib.blake2b, done: int) -> None:
        if digest.digest() != expected:
            self._changed(done)

    def _changed(self, done: int) -> NoReturn:
        raise InputError(
            f"{self.path} changed while it was being imported: the first {done:,} of its "
            "rows are imported, the rest are not; import the file again once it is complete "
            "(rows already imported are not written twice)",
            code="changed_during_import",
        )

    # -- reading ---------------------------------------------------------------------

    def _rows(self) -> Iterator[tuple[int, Row]]:
        """``(line, row)`` for every data row, from the top of the file; a row
        spanning several lines (a quoted line break) is numbered by its last.

        Raises:
            InputError: see :meth:`check`.
        """
        self._fh.seek(0)
        reader = csv.reader(self._fh, strict=True)
        try:
            header = next(reader, None)
            if not header:
                raise InputError(
                    f"{self.path}: empty file (expected a header line with an id column)"
                )
            header = [h.strip() for h in header]
            self._check_header(header)
            for cells in reader:
                if not cells or all(not c.strip() for c in cells):
                    continue
                yield reader.line_num, self._row(reader.line_num, header, cells)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except csv.Error as exc:
            raise InputError(f"{self.path}: malformed CSV: {exc}") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read it: {exc.strerror}") from None

    def _row(self, line: int, header: list[str], cells: list[str]) -> Row:
        where = f"{self.path}:{line}"
        if len(cells) != len(header):
            raise InputError(f"{where}: expected {len(header)} columns, found {len(cells)}")
        cells = [cell.strip() for cell in cells]
        return {k: v for k, v in zip(header, cells, strict=True) if v != "" or k == "id"}

    def _check_header(self, header: list[str]) -> None:
        if "id" not in header:
            raise InputError(f"{self.path}:1: the header has no 'id' column")
        seen = set()
        for name in header:
            if name in seen:
                raise InputError(f"{self.path}:1: column {name!r} appears twice")
            seen.add(name)
            if name != "id" and name not in self.schema.participant:
                raise InputError(
                    f"{self.path}:1: unknown column {name!r}; declared participant fields: "
                    f"{', '.join(sorted(self.schema.participant))}"
                )

    def _first_line_of(self, pid: str) -> int:
        """The line of the first row with id ``pid`` (an error path: the
        first pass keeps ids only, so it reads the file again)."""
        return next(line for line, row in self._rows() if row["id"] == pid)


def _new_digest() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=16)


def _feed(digest: hashlib.blake2b, line: int, row: Row) -> None:
    # repr() of str is unambiguous: no two different rows feed the same bytes.
    digest.update(repr((line, tuple(row.items()))).encode("utf-8", "surrogatepass"))
