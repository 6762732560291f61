"""Participant CSV import: strict, all-or-nothing, errors by line number."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .ids import check_id, check_value
from .schema import Schema

MAX_CSV_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImportReport:
    rows: int
    changed: int
    entries: int

    def to_dict(self) -> dict[str, int]:
        return {"rows": self.rows, "changed": self.changed, "entries": self.entries}


def read_participants(path: Path, schema: Schema) -> list[dict[str, Any]]:
    """Read and validate a participants CSV.

    The header names the columns: ``id`` is required, every other column must
    be a participant field declared in ``schema``. Empty cells are left
    unset. Every row is checked before the caller writes anything.

    Raises:
        InputError: the file is unreadable, or a row is invalid (the message
            starts with ``FILE:LINE``).
    """
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            raise InputError(f"{path}: larger than {MAX_CSV_BYTES // 2**20} MiB")
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return _read(fh, path, schema)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV: {exc}") from None


def _read(fh: Any, path: Path, schema: Schema) -> list[dict[str, Any]]:
    reader = csv.reader(fh, strict=True)
    header = next(reader, None)
    if not header:
        raise InputError(f"{path}: empty file (expected a header line with an id column)")
    header = [h.strip() for h in header]
    _check_header(path, header, schema)
    rows: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        where = f"{path}:{line}"
        if len(cells) != len(header):
            raise InputError(f"{where}: expected {len(header)} columns, found {len(cells)}")
        row = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
        try:
            check_id("participant", row["id"])
            for name, value in row.items():
                check_value(name, value)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        if row["id"] in first_line:
            raise InputError(
                f"{where}: participant {row['id']!r} already on line {first_line[row['id']]}"
            )
        first_line[row["id"]] = line
        rows.append({k: v for k, v in row.items() if v != "" or k == "id"})
    return rows


def _check_header(path: Path, header: list[str], schema: Schema) -> None:
    if "id" not in header:
        raise InputError(f"{path}:1: the header has no 'id' column")
    seen = set()
    for name in header:
        if name in seen:
            raise InputError(f"{path}:1: column {name!r} appears twice")
        seen.add(name)
        if name != "id" and name not in schema.participant:
            raise InputError(
                f"{path}:1: unknown column {name!r}; declared participant fields: "
                f"{', '.join(sorted(schema.participant))}"
            )
