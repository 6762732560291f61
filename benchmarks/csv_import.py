"""CSV import at scale: time, rate and peak memory of ``headcount participants import``.

Run from the repository root with the package installed::

    python benchmarks/csv_import.py            # 1,000,000 rows (the target's size)
    python benchmarks/csv_import.py --quick    # 100,000 rows, a smoke run
    python benchmarks/csv_import.py --rows 250000

Generates a participants CSV (``id,name,email,phone,qr_token``), imports it
into a fresh event with the real command line in a child process, and takes
the child's peak RSS (``ru_maxrss`` from ``wait4``). Then a second child
opens the store and reads the event's status (the cost of the next command
after an import). Baselines, each in its own child, in the same run: Python's
``csv`` module reading the same file; raw pycrdt appending the same rows to a
root array, 100 per transaction, each transaction's update written to SQLite
(WAL, ``synchronous=FULL``) and committed every 10,000 rows; raw pycrdt
applying the stored log's updates to an empty document. See
benchmarks/README.md. Never touches the network.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import OUT_DIR, Row, machine_info, print_header, print_table, write_json

SCRIPT = Path(__file__).resolve()
EVENT = "bench"
FULL_ROWS = 1_000_000
QUICK_ROWS = 100_000
RSS_TARGET_MB = 1024.0  # the peak an import of FULL_ROWS may reach
ROWS_PER_TXN = 100  # the engine's rows per log entry
ROWS_PER_COMMIT = 10_000  # the engine's rows per durable batch
SEP = "\x1f"


def log(message: str) -> None:
    print(f"[csv_import] {message}", file=sys.stderr, flush=True)


def write_people(path: Path, rows: int) -> int:
    """A participants CSV of ``rows`` rows; returns its size in bytes."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "name", "email", "phone", "qr_token"])
        for i in range(rows):
            writer.writerow(
                [
                    f"P{i:07d}",
                    f"Participant Number {i}",
                    f"participant.{i}@example.org",
                    f"+1-555-{i:07d}",
                    f"QR-{i:07d}",
                ]
            )
    return path.stat().st_size


# -- children: each runs in a fresh interpreter ------------------------------------------


def run_child(task: str, *args: str) -> dict[str, Any]:
    """Run ``task`` in a fresh interpreter: what it returns, its wall time
    and its peak RSS. Its stderr passes through.

    The peak is the child's own ``VmHWM`` (the high-water mark of its
    address space, read as it ends). ``ru_maxrss`` from ``wait4`` is kept
    too, but on Linux it also counts the parent's pages at the moment the
    child was spawned, which inflates small figures.
    """
    cmd = [sys.executable, str(SCRIPT), "--child", task, *args]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode != 0:
        raise SystemExit(f"csv_import: {task} failed (exit {proc.returncode}); see stderr")
    *lines, last = out.strip().splitlines()
    return {
        **json.loads(last),
        "stdout": "\n".join(lines),
        "wall_s": wall,
        "ru_maxrss_mb": usage.ru_maxrss / 1024,
    }


def peak_rss_mb() -> float:
    """This process's peak RSS so far (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource_maxrss_mb()


def resource_maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_cli(*argv: str) -> dict[str, Any]:
    """The ``headcount`` command line, in this process."""
    from headcount.cli.main import main

    code = main(list(argv))
    if code != 0:
        raise SystemExit(code)
    return {}


def child_parse(csv_path: str) -> dict[str, Any]:
    """Baseline: read and parse every row, keep nothing."""
    rows = cells = 0
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, strict=True)
        next(reader)
        for row in reader:
            rows += 1
            cells += len(row)
    return {"rows": rows, "cells": cells}


def child_raw_import(csv_path: str, db_path: str) -> dict[str, Any]:
    """Baseline: the same rows as strings in a pycrdt array, durable in SQLite."""
    from pycrdt import Array, Doc, TransactionEvent

    doc: Doc[Array[str]] = Doc()
    array = doc.get("r", type=Array)
    updates: list[bytes] = []

    def capture(event: TransactionEvent) -> None:
        updates.append(event.update)

    doc.observe(capture)
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, upd BLOB NOT NULL)")
    rows = 0
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, strict=True)
        next(reader)
        pending: list[str] = []
        for cells in reader:
            pending.append(SEP.join(cells))
            rows += 1
            if len(pending) == ROWS_PER_TXN:
                _append(doc, array, pending)
                pending = []
            if rows % ROWS_PER_COMMIT == 0:
                _commit(db, updates)
        if pending:
            _append(doc, array, pending)
        _commit(db, updates)
    db.close()
    return {"rows": rows, "array": len(array)}


def _append(doc: Any, array: Any, strings: list[str]) -> None:
    with doc.transaction():
        array.extend(strings)


def _commit(db: sqlite3.Connection, updates: list[bytes]) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO log(upd) VALUES (?)", [(u,) for u in updates])
    db.execute("COMMIT")
    updates.clear()


def child_open(data_dir: str) -> dict[str, Any]:
    """Open the store and read the event's status (it loads the event)."""
    from headcount import Replica

    t0 = time.perf_counter()
    with Replica.open(data_dir, read_only=True) as replica:
        t1 = time.perf_counter()
        status = replica.status(EVENT)
        t2 = time.perf_counter()
    return {"open_s": t1 - t0, "status_s": t2 - t1, "participants": status.participants}


def child_raw_open(data_dir: str) -> dict[str, Any]:
    """Baseline: apply the event's stored updates (snapshot, then log) to a pycrdt doc."""
    from pycrdt import Array, Doc

    t0 = time.perf_counter()
    store = (Path(data_dir) / "headcount.db").resolve()
    db = sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)
    doc: Doc[Array[str]] = Doc()
    array = doc.get("r", type=Array)
    snap = db.execute("SELECT state, upto FROM snapshots WHERE event=?", (EVENT,)).fetchone()
    if snap:
        doc.apply_update(snap[0])
    after = snap[1] if snap else 0
    for (update,) in db.execute(
        "SELECT upd FROM log WHERE event=? AND id>? ORDER BY id", (EVENT, after)
    ):
        doc.apply_update(update)
    items = len(array)
    db.close()
    return {"total_s": time.perf_counter() - t0, "items": items}


# -- the run ------------------------------------------------------------------------------


def run(root: Path, rows: int) -> dict[str, Any]:
    from headcount import Replica, Role

    csv_path = root / "people.csv"
    log(f"writing {rows:,} rows to {csv_path}")
    size = write_people(csv_path, rows)
    data_dir = root / "admin"
    Replica.init(data_dir, role=Role.ADMIN, name="bench")
    with Replica.open(data_dir) as replica:
        replica.create_event(EVENT, "CSV import benchmark")
    log("baseline: parsing the file with the csv module")
    parse = run_child("parse", str(csv_path))
    log("baseline: raw pycrdt + SQLite import")
    raw = run_child("raw-import", str(csv_path), str(root / "raw.db"))
    log("headcount participants import (progress below comes from the command)")
    argv = ["--data-dir", str(data_dir), "participants", "import", EVENT, str(csv_path)]
    engine = run_child("cli", *argv)
    said = engine.pop("stdout").strip()
    if said != f"imported {rows} rows: {rows} participants created or changed":
        raise SystemExit(f"csv_import: the import said {said!r}, expected {rows} rows")
    log("open + status after the import, and its baseline")
    opened = run_child("open", str(data_dir))
    raw_open = run_child("raw-open", str(data_dir))
    if opened["participants"] != rows:
        raise SystemExit(f"csv_import: the reopened event has {opened['participants']} rows")
    store = data_dir / "headcount.db"
    return {
        "rows": rows,
        "csv_bytes": size,
        "parse": parse,
        "raw_import": raw,
        "import": engine,
        "open": opened,
        "raw_open": raw_open,
        "store_bytes": sum(
            p.stat().st_size for p in data_dir.iterdir() if p.name.startswith(store.name)
        ),
    }


def rows_for(results: dict[str, Any], full: bool) -> list[Row]:
    n = results["rows"]
    imp, raw, parse = results["import"], results["raw_import"], results["parse"]
    opened, raw_open = results["open"], results["raw_open"]
    peak = imp["peak_rss_mb"]
    return [
        Row("import time", imp["wall_s"], raw["wall_s"], "s"),
        Row("import rate", n / imp["wall_s"], n / raw["wall_s"], "/s"),
        Row(
            "import peak RSS",
            peak,
            raw["peak_rss_mb"],
            "MB",
            f"<= {RSS_TARGET_MB:,.0f} MB" + ("" if full else f" at {FULL_ROWS:,} rows"),
            peak <= RSS_TARGET_MB if full else None,
        ),
        Row("import time vs csv parse", imp["wall_s"], parse["wall_s"], "s"),
        Row("import peak RSS vs csv parse", peak, parse["peak_rss_mb"], "MB"),
        Row(
            "open+status after import",
            opened["open_s"] + opened["status_s"],
            raw_open["total_s"],
            "s",
        ),
        Row("open+status peak RSS", opened["peak_rss_mb"], raw_open["peak_rss_mb"], "MB"),
    ]


def print_details(results: dict[str, Any]) -> None:
    opened = results["open"]
    print(
        f"file: {results['rows']:,} rows, {results['csv_bytes'] / 2**20:,.1f} MiB; "
        f"store after import {results['store_bytes'] / 2**20:,.1f} MiB"
    )
    print(
        "baselines: 'import' rows = raw pycrdt appending the same rows (100 per transaction) "
        "with each update committed to SQLite every 10,000 rows; 'vs csv parse' rows = the csv "
        "module only reading the file; 'open' rows = raw pycrdt applying the stored updates"
    )
    print(
        f"open+status: open {opened['open_s']:.2f} s + status {opened['status_s']:.2f} s "
        f"(child wall {opened['wall_s']:.2f} s with interpreter start and imports)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help=f"rows (default {FULL_ROWS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows")
    parser.add_argument(
        "--tmp-dir", type=Path, default=None, help="where the files go (default: system temp)"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR / "csv_import.json")
    return parser.parse_args(argv)


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "cli": child_cli,
    "parse": child_parse,
    "raw-import": child_raw_import,
    "open": child_open,
    "raw-open": child_raw_open,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # --child TASK ARGS...: run_child's side
        task, *rest = argv[1:]
        result = CHILDREN[task](*rest)
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}), flush=True)
        return 0
    args = parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    if rows < 1:
        raise SystemExit("csv_import: --rows must be at least 1")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="headcount-csv-", dir=args.tmp_dir) as tmp:
        root = Path(tmp)
        info = machine_info(root)
        results = run(root, rows)
        info["loadavg_end"] = os.getloadavg()
    elapsed = time.perf_counter() - started
    full = rows >= FULL_ROWS
    table = rows_for(results, full)
    print_header("csv_import", info, {"rows": rows})
    print_table(table)
    print()
    print_details(results)
    if not full:
        print(f"note: fewer than {FULL_ROWS:,} rows: the memory target is not judged")
    out = args.out.resolve()
    print(f"\ntotal {elapsed:.1f} s; results in {out}")
    write_json(out, info, {"rows": rows}, table, elapsed_s=elapsed, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
