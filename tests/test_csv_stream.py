"""Streamed CSV import (``Replica.import_csv``): rows are checked in a first
pass and written in durable batches in a second; memory holds no imported
participant; the result equals importing the same rows as a list.

Small ``batch_rows`` make a few dozen rows behave as a million would.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headcount import InputError, NotFoundError, Replica, Role
from headcount.cli import records
from headcount.core import csvimport
from headcount.core.csvimport import ImportProgress

from .support.cli import Cli
from .support.clock import FakeClock

EV = "ev"
SCHEMA = {"participant": {"tags": "union"}}
COLUMNS = ["id", "name", "email", "allergies", "tags"]


def people(n: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {
            "id": f"P{i:05d}",
            "name": f"Guest {i}",
            "email": f"g{i}@example.org" if i % 3 else "",
            "allergies": "nuts" if i % 7 == 0 else "",
            "tags": "vip" if i % 5 == 0 else "",
        }
        for i in range(start, start + n)
    ]


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), "utf-8")
    return path


def as_list_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """What the CSV import makes of ``rows``: cells stripped, empty ones unset."""
    return [{k: v.strip() for k, v in r.items() if v.strip() or k == "id"} for r in rows]


def stored(data_dir: Path) -> dict[str, Any]:
    """What a fresh read-only replica loads from disk."""
    with Replica.open(data_dir, read_only=True) as r:
        ev = r.event(EV)
        return {
            "participants": [p.to_dict() for p in ev.participants(include_deleted=True)],
            "conflicts": [c.to_dict() for c in ev.conflicts()],
            "entries": sum(r.version_vector(EV).values()),
        }


@pytest.fixture
def admin(tmp_path: Path, clock: FakeClock) -> Any:
    path = tmp_path / "admin"
    Replica.init(path, role=Role.ADMIN, name="admin")
    with Replica.open(path, wall_clock=clock) as r:
        r.create_event(EV, "Event", SCHEMA)
        yield r


def test_a_streamed_import_writes_every_row_in_durable_batches(
    admin: Replica, tmp_path: Path
) -> None:
    rows = people(53)
    path = write_csv(tmp_path / "people.csv", rows)
    durable: list[tuple[int, int]] = []

    def progress(p: ImportProgress) -> None:
        if p.phase == "imported":
            # Another connection sees the batch: it is committed before the next is read.
            durable.append((p.rows, len(stored(admin.data_dir)["participants"])))

    report = admin.import_csv(EV, path, batch_rows=10, progress=progress)
    assert (report.rows, report.changed) == (53, 53)
    assert durable == [(10, 10), (20, 20), (30, 30), (40, 40), (50, 50), (53, 53)]
    assert report.entries == stored(admin.data_dir)["entries"] - 1  # all but the creation
    expected = {r.pop("id"): r for r in as_list_rows(rows)}
    for fields in expected.values():
        if "tags" in fields:
            fields["tags"] = [fields["tags"]]  # a union field holds a list
    assert {p.id: p.fields for p in admin.event(EV).participants()} == expected


def test_memory_holds_no_imported_participant_while_streaming(
    admin: Replica, tmp_path: Path
) -> None:
    admin.import_participants(EV, [{"id": "OLD1", "name": "Old"}, {"id": "OLD2"}])
    path = write_csv(tmp_path / "people.csv", people(40))
    held: list[int] = []

    def progress(p: ImportProgress) -> None:
        if p.phase == "imported":
            held.append(sum(1 for _ in admin.event(EV).doc.participant_ids()))

    admin.import_csv(EV, path, batch_rows=8, progress=progress)
    assert held == [2] * 5  # only the participants there before the import
    assert not admin.is_loaded(EV)  # reloaded from the store on the next read
    assert len(admin.event(EV).participants()) == 42


def test_a_one_batch_import_keeps_the_event_loaded(admin: Replica, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "people.csv", people(5))
    assert admin.import_csv(EV, path, batch_rows=5).changed == 5
    assert admin.is_loaded(EV)
    assert len(admin.event(EV).participants()) == 5


@pytest.mark.parametrize("position", [0, 17, 39])
def test_one_bad_row_anywhere_writes_nothing(admin: Replica, tmp_path: Path, position: int) -> None:
    rows = people(40)
    rows[position]["email"] = "x" * 9000
    path = write_csv(tmp_path / "people.csv", rows)
    before = stored(admin.data_dir)
    with pytest.raises(InputError, match=f"{path}:{position + 2}: email: value is larger than"):
        admin.import_csv(EV, path, batch_rows=8)
    assert stored(admin.data_dir) == before
    assert admin.event(EV).participants() == []


def test_a_duplicate_id_batches_apart_names_both_lines(admin: Replica, tmp_path: Path) -> None:
    rows = people(30)
    rows[27]["id"] = rows[3]["id"]
    path = write_csv(tmp_path / "people.csv", rows)
    before = stored(admin.data_dir)
    with pytest.raises(InputError, match=f"{path}:29: participant 'P00003' already on line 5"):
        admin.import_csv(EV, path, batch_rows=4)
    assert stored(admin.data_dir) == before


def test_a_deleted_participant_in_a_late_batch_writes_nothing(
    admin: Replica, tmp_path: Path
) -> None:
    admin.import_participants(EV, [{"id": "P00025", "name": "Gone"}])
    admin.delete_participant(EV, "P00025")
    path = write_csv(tmp_path / "people.csv", people(30))
    before = stored(admin.data_dir)
    with pytest.raises(NotFoundError, match=f"{path}:27: participant 'P00025' was deleted"):
        admin.import_csv(EV, path, batch_rows=4)
    assert stored(admin.data_dir) == before


def test_a_file_changed_between_the_passes_stops_before_the_changed_batch(
    admin: Replica, tmp_path: Path
) -> None:
    rows = people(3000)
    path = write_csv(tmp_path / "people.csv", rows)
    changed = [dict(r) for r in rows]
    changed[2500]["name"] = "Not what was checked"

    def progress(p: ImportProgress) -> None:
        if p.phase == "imported" and p.rows == 1000:
            write_csv(path, changed)  # the same file (inode), rewritten in place

    with pytest.raises(InputError, match="changed while it was being imported") as info:
        admin.import_csv(EV, path, batch_rows=1000, progress=progress)
    assert info.value.code == "changed_during_import"
    assert "first 2,000 of its rows are imported" in info.value.message
    names = {p["id"]: p.get("name") for p in stored(admin.data_dir)["participants"]}
    assert len(names) == 2000 and "Not what was checked" not in names.values()
    # Importing the complete file again finishes the job, rewriting nothing.
    report = admin.import_csv(EV, path, batch_rows=1000)
    assert (report.rows, report.changed) == (3000, 1000)


def test_reimporting_rewrites_nothing_and_updates_change_only_what_differs(
    admin: Replica, tmp_path: Path
) -> None:
    rows = people(30)
    path = write_csv(tmp_path / "people.csv", rows)
    admin.import_csv(EV, path, batch_rows=7)
    again = admin.import_csv(EV, path, batch_rows=7)
    assert (again.rows, again.changed, again.entries) == (30, 0, 0)
    rows[4]["name"] = "Renamed"
    rows[20]["allergies"] = "gluten"  # a critical field: a sequential edit, no conflict
    report = admin.import_csv(EV, write_csv(path, rows), batch_rows=7)
    assert (report.rows, report.changed) == (30, 2)
    ev = admin.event(EV)
    assert ev.participant("P00004").fields["name"] == "Renamed"
    assert ev.participant("P00020").fields["allergies"] == "gluten"
    assert ev.conflicts() == []


def test_bom_and_quoted_line_breaks_survive_both_passes(admin: Replica, tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    body = "".join(f'P{i},"Line one\nline two {i}"\n' for i in range(12))
    path.write_bytes(("\ufeffid,name\n" + body).encode("utf-8"))
    report = admin.import_csv(EV, path, batch_rows=5)
    assert (report.rows, report.changed) == (12, 12)
    assert admin.event(EV).participant("P11").fields["name"] == "Line one\nline two 11"


CELL = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    max_size=6,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(st.integers(0, 60), CELL, CELL), max_size=40),
    st.integers(1, 9),
    st.lists(st.tuples(st.integers(0, 60), CELL), max_size=5),
)
def test_streamed_import_equals_importing_the_rows_as_a_list(
    tmp_path_factory: pytest.TempPathFactory,
    raw: list[tuple[int, str, str]],
    batch_rows: int,
    existing: list[tuple[int, str]],
) -> None:
    """Differential: whatever the rows, the batch size and the participants
    already there, ``import_csv`` ends where ``import_participants`` does."""
    ids = {}
    for n, name, tags in raw:
        ids.setdefault(f"P{n}", {"id": f"P{n}", "name": name, "tags": tags})
    rows = list(ids.values())
    before = {f"P{n}": {"id": f"P{n}", "name": name} for n, name in existing}
    root = tmp_path_factory.mktemp("diff")
    path = write_csv(root / "people.csv", rows, ["id", "name", "tags"])
    results = []
    for name in ("listed", "streamed"):
        Replica.init(root / name, role=Role.ADMIN, name=name)
        with Replica.open(root / name, wall_clock=FakeClock()) as r:
            r.create_event(EV, "Event", SCHEMA)
            r.import_participants(EV, list(before.values()))
            if name == "listed":
                report = r.import_participants(EV, as_list_rows(rows))
            else:
                report = r.import_csv(EV, path, batch_rows=batch_rows)
            results.append((report.rows, report.changed))
        results.append(stored(root / name)["participants"])
    assert results[0:2] == results[2:4]


def test_the_command_reports_progress_on_stderr_for_a_long_import(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = Cli(capsys, tmp_path / "admin")
    cli.ok("init", "--role", "admin")
    cli.ok("event", "create", EV)
    path = write_csv(tmp_path / "people.csv", people(12), COLUMNS[:4])  # no "tags" field here
    ticks = iter(range(0, 1000, 3))  # every reading of the clock: 3 s later
    monkeypatch.setattr(records, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    monkeypatch.setattr(csvimport, "BATCH_ROWS", 5)
    res = cli("participants", "import", EV, str(path))
    assert res.code == 0, res
    assert res.out == "imported 12 rows: 12 participants created or changed\n"
    assert res.err.splitlines() == [
        "headcount: checked 5 rows (nothing is written until every row is valid), 3 s",
        "headcount: imported 5 of 12 rows (41%), 9 s",
        "headcount: imported 12 of 12 rows (100%), 15 s",
    ]
    quiet = cli("participants", "import", EV, str(path), as_json=True)
    assert (quiet.code, quiet.err, quiet.json["changed"]) == (0, "", 0)
