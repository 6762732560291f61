"""Core performance figures for headcount, each against a baseline measured in the same run.

Run from the repository root with the package installed::

    python benchmarks/core_bench.py            # full sizes (the targets)
    python benchmarks/core_bench.py --quick    # small sizes, a smoke run
    python benchmarks/core_bench.py --only open,throughput --profile

Prints a table (metric, value, baseline, ratio, target, result) and writes every
figure to ``benchmarks/out/core_bench.json``. See benchmarks/README.md for what
each figure means. Uses only headcount's public API, plus pycrdt and sqlite3
for the baselines. Never touches the network.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Map, TransactionEvent

from _common import (
    OUT_DIR,
    Row,
    distribution,
    machine_info,
    percentile,
    print_header,
    print_table,
    top_functions,
    write_json,
)
from headcount import Durability, Replica, Role

EVENT = "bench"
SEP = "\x1f"  # the engine's field separator in array elements
GATE = "north"
SCRIPT = Path(__file__).resolve()
MEASUREMENTS = ("latency", "import", "open", "throughput")


@dataclass(frozen=True)
class Sizes:
    latency_participants: int = 1_000
    latency_checkins: int = 2_000
    import_participants: int = 50_000
    open_participants: int = 50_000
    open_checkins: int = 100_000
    open_repeats: int = 3
    throughput_checkins: int = 20_000


FULL = Sizes()
QUICK = Sizes(
    latency_participants=1_000,
    latency_checkins=300,
    import_participants=5_000,
    open_participants=5_000,
    open_checkins=10_000,
    open_repeats=3,
    throughput_checkins=3_000,
)


# -- helpers ---------------------------------------------------------------


def log(message: str) -> None:
    """Progress goes to stderr so that stdout is only the report."""
    print(f"[core_bench] {message}", file=sys.stderr, flush=True)


def pid_of(i: int) -> str:
    return f"P{i:06d}"


def qr_of(i: int) -> str:
    return f"QR-{i:06d}"


def make_rows(n: int) -> list[dict[str, str]]:
    """``n`` deterministic participants with the four import fields."""
    return [
        {
            "id": pid_of(i),
            "name": f"Participant Number {i}",
            "email": f"participant.{i}@example.org",
            "phone": f"+1-555-{i:07d}",
            "qr_token": qr_of(i),
        }
        for i in range(n)
    ]


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def new_device(root: Path, name: str) -> Path:
    """A device that creates its own event: an admin (only admins and relays
    may; the measured check-ins, imports and opens do not depend on the role)."""
    path = root / name
    Replica.init(path, role=Role.ADMIN, name=name)
    return path


@contextmanager
def profiled(path: Path) -> Iterator[cProfile.Profile]:
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield prof
    finally:
        prof.disable()
        prof.dump_stats(str(path))


# -- 1. durable single check-in latency --------------------------------------------


def bench_latency(root: Path, sizes: Sizes) -> dict[str, Any]:
    """Sequential durable check-ins (by QR token), each timed on its own."""
    n, people = sizes.latency_checkins, sizes.latency_participants
    log(f"1: {n} durable check-ins")
    path = new_device(root, "latency")
    samples: list[int] = []
    update_sizes: list[int] = []
    json_sizes: list[int] = []
    with Replica.open(path) as rep:
        if rep.store.durability is not Durability.FULL:
            raise RuntimeError("Replica.open() did not default to full durability")
        rep.create_event(EVENT)
        rep.import_participants(EVENT, make_rows(people))
        log_before, count_before = rep.store.log_bytes(EVENT), rep.store.log_count(EVENT)
        for i in range(n):
            qr = qr_of(i % people)
            t0 = time.perf_counter_ns()
            result = rep.check_in(EVENT, qr, gate=GATE)
            samples.append(time.perf_counter_ns() - t0)
            if result.entry is None:
                raise RuntimeError(f"check-in {i} recorded nothing")
            update_sizes.append(len(result.entry.update))
            scan = {**result.scan.to_dict(), "hlc": result.scan.hlc}
            json_sizes.append(len(json.dumps(scan, separators=(",", ":")).encode()))
        log_delta = rep.store.log_bytes(EVENT) - log_before
        count_delta = rep.store.log_count(EVENT) - count_before
    if count_delta != n:
        raise RuntimeError(f"expected {n} new log entries, found {count_delta}")
    avg_update = statistics.fmean(update_sizes)
    base = bench_sqlite_floor(root, n, round(avg_update))
    return {
        "checkins": n,
        "participants": people,
        "engine_ms": distribution(s / 1e6 for s in samples),
        "first_checkin_ms": samples[0] / 1e6,
        "sqlite_floor_ms": distribution(s / 1e6 for s in base),
        "blob_bytes": round(avg_update),
        "bytes": {
            "log_bytes_per_checkin": log_delta / n,
            "entry_update_bytes_mean": avg_update,
            "entry_update_bytes_min": min(update_sizes),
            "entry_update_bytes_max": max(update_sizes),
            "scan_json_bytes_mean": statistics.fmean(json_sizes),
        },
    }


def bench_sqlite_floor(root: Path, n: int, blob_size: int) -> list[int]:
    """Raw sqlite3, WAL + synchronous=FULL: one INSERT of a blob + COMMIT per op."""
    db = sqlite3.connect(root / "floor.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, upd BLOB NOT NULL)")
        blobs = [os.urandom(blob_size) for _ in range(n)]
        samples: list[int] = []
        for blob in blobs:
            t0 = time.perf_counter_ns()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO log(upd) VALUES (?)", (blob,))
            db.execute("COMMIT")
            samples.append(time.perf_counter_ns() - t0)
        return samples
    finally:
        db.close()


# -- 2. batch import ----------------------------------------------------------------


def bench_import(root: Path, sizes: Sizes) -> dict[str, Any]:
    n = sizes.import_participants
    log(f"2: importing {n} participants")
    rows = make_rows(n)

    path = new_device(root, "import")
    with Replica.open(path) as rep:
        rep.create_event(EVENT)
        t0 = time.perf_counter()
        report = rep.import_participants(EVENT, rows)
        rows_s = time.perf_counter() - t0
        entries = report.entries
    if report.changed != n:
        raise RuntimeError(f"import_participants changed {report.changed} of {n}")

    csv_path = root / "participants.csv"
    write_csv(csv_path, rows)
    path = new_device(root, "import-csv")
    with Replica.open(path) as rep:
        rep.create_event(EVENT)
        t0 = time.perf_counter()
        report = rep.import_csv(EVENT, csv_path)
        csv_s = time.perf_counter() - t0
    if report.changed != n:
        raise RuntimeError(f"import_csv changed {report.changed} of {n}")

    raw_s, raw_bytes = raw_import(rows)
    return {
        "participants": n,
        "entries": entries,
        "csv_bytes": csv_path.stat().st_size,
        "import_participants_s": rows_s,
        "import_csv_s": csv_s,
        "raw_pycrdt_s": raw_s,
        "raw_pycrdt_update_bytes": raw_bytes,
        "import_participants_per_s": n / rows_s,
        "import_csv_per_s": n / csv_s,
        "raw_pycrdt_per_s": n / raw_s,
    }


def raw_import(rows: list[dict[str, str]], chunk: int = 1000) -> tuple[float, int]:
    """Raw pycrdt: the records as plain dict values in a root Map, 1000 per
    transaction, each transaction's update captured by an observer."""
    doc = Doc()
    people = doc.get("p", type=Map)
    updates: list[bytes] = []

    def capture(event: TransactionEvent) -> None:
        updates.append(event.update)

    doc.observe(capture)
    t0 = time.perf_counter()
    for start in range(0, len(rows), chunk):
        with doc.transaction():
            for row in rows[start : start + chunk]:
                people[row["id"]] = {k: v for k, v in row.items() if k != "id"}
    elapsed = time.perf_counter() - t0
    return elapsed, sum(len(u) for u in updates)


# -- 3. open time --------------------------------------------------------------------


def build_big_event(root: Path, sizes: Sizes) -> tuple[Path, bytes, dict[str, Any]]:
    """An event with many participants and check-ins, written fast
    (durability off); ``close()`` flushes and snapshots it."""
    people, checkins = sizes.open_participants, sizes.open_checkins
    path = new_device(root, "open")
    t0 = time.perf_counter()
    rep = Replica.open(path, durability="off")
    try:
        rep.create_event(EVENT)
        rep.import_participants(EVENT, make_rows(people))
        for i in range(checkins):
            rep.check_in(EVENT, pid_of(i % people), gate=GATE)
        state = rep.event(EVENT).doc.encode_state()
        status = rep.status(EVENT)
    finally:
        rep.close()
    info = {
        "participants": status.participants,
        "scans": status.scans,
        "build_s": time.perf_counter() - t0,
        "state_bytes": len(state),
        "db_bytes": sum(f.stat().st_size for f in path.glob("headcount.db*")),
    }
    if (status.participants, status.scans) != (people, checkins):
        raise RuntimeError(f"built event has unexpected counts: {status}")
    return path, state, info


def child_open(path: str, event: str) -> None:
    """Run in a fresh interpreter: time open + status, print JSON."""
    t0 = time.perf_counter()
    rep = Replica.open(path)
    t1 = time.perf_counter()
    status = rep.status(event)
    t2 = time.perf_counter()
    rep.close()
    print(
        json.dumps(
            {
                "open_s": t1 - t0,
                "status_s": t2 - t1,
                "total_s": t2 - t0,
                "participants": status.participants,
                "scans": status.scans,
            }
        )
    )


def bench_open(root: Path, sizes: Sizes) -> dict[str, Any]:
    log(
        f"building an event with {sizes.open_participants} participants and "
        f"{sizes.open_checkins} check-ins (durability off)"
    )
    path, state, info = build_big_event(root, sizes)  # stays for profile-open
    runs: list[dict[str, Any]] = []
    for _ in range(sizes.open_repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--child-open", str(path), EVENT],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"open subprocess failed:\n{proc.stderr}")
        run = json.loads(proc.stdout)
        if (run["participants"], run["scans"]) != (info["participants"], info["scans"]):
            raise RuntimeError(f"reopened event has unexpected counts: {run}")
        run["process_wall_s"] = wall
        runs.append(run)
    raw = []
    for _ in range(sizes.open_repeats):
        doc = Doc()
        t0 = time.perf_counter()
        doc.apply_update(state)
        raw.append(time.perf_counter() - t0)
    totals = [r["total_s"] for r in runs]
    return {
        **info,
        "runs": runs,
        "engine_min_s": min(totals),
        "engine_median_s": percentile(totals, 50),
        "raw_apply_s": raw,
        "raw_min_s": min(raw),
        "raw_median_s": percentile(raw, 50),
    }


# -- 4. write throughput, durability off ------------------------------------------------


def engine_checkins(root: Path, name: str, n: int) -> tuple[Replica, Callable[[], list[int]]]:
    """A device with ``n`` participants, and a function doing ``n`` check-ins
    (distinct participants, by id) and flushing the store's buffer; it
    returns the entries' update sizes."""
    rep = Replica.open(new_device(root, name), durability="off")
    rep.create_event(EVENT)
    rep.import_participants(EVENT, make_rows(n))

    def run() -> list[int]:
        out = []
        for i in range(n):
            result = rep.check_in(EVENT, pid_of(i), gate=GATE)
            out.append(len(result.entry.update) if result.entry else 0)
        rep.store.flush()  # write the buffered tail too, so every size pays for its writes
        return out

    return rep, run


def bench_throughput(root: Path, sizes: Sizes) -> dict[str, Any]:
    n = sizes.throughput_checkins
    log(f"4: {n} check-ins, durability off")
    rep, run = engine_checkins(root, "throughput", n)
    try:
        t0 = time.perf_counter()
        update_sizes = run()
        engine_s = time.perf_counter() - t0
        scans = rep.status(EVENT).scans
    finally:
        rep.close()
    if scans != n:
        raise RuntimeError(f"expected {n} scans, found {scans}")
    raw_s, raw_bytes = raw_checkins(n, rep.device_id, "array")
    map_s, map_bytes = raw_checkins(n, rep.device_id, "map")
    return {
        "checkins": n,
        "engine_s": engine_s,
        "engine_per_s": n / engine_s,
        "engine_update_bytes_mean": statistics.fmean(update_sizes),
        "raw_pycrdt_s": raw_s,
        "raw_pycrdt_per_s": n / raw_s,
        "raw_update_bytes_mean": raw_bytes / n,
        "raw_map_s": map_s,
        "raw_map_per_s": n / map_s,
        "raw_map_update_bytes_mean": map_bytes / n,
    }


def raw_checkins(n: int, device: str, layout: str) -> tuple[float, int]:
    """Raw pycrdt doing the engine's transactions: one per check-in, update
    captured by an observer, a fresh UUID4 per scan.

    ``layout="array"``: exactly the engine's Y operation, appending the same
    encoded scan string to a root Array with pycrdt's public API.
    ``layout="map"``: what a pycrdt user would naturally write, setting the
    UUID4 key of a root Map to a scan-shaped list.
    """
    doc = Doc()
    scans = doc.get("s", type=Array if layout == "array" else Map)
    updates: list[bytes] = []

    def capture(event: TransactionEvent) -> None:
        updates.append(event.update)

    doc.observe(capture)
    pids = [pid_of(i) for i in range(n)]
    t0 = time.perf_counter()
    for pid in pids:
        ts = time.time_ns() // 1_000_000
        with doc.transaction():
            key = str(uuid.uuid4())
            if layout == "array":
                scans.append(SEP.join((key, pid, "in", str(ts), str(ts << 16), GATE, "qr", device)))
            else:
                scans[key] = [pid, "in", ts, ts << 16, GATE, "qr", device]
    elapsed = time.perf_counter() - t0
    return elapsed, sum(len(u) for u in updates)


# -- profiles -----------------------------------------------------------------------------


def profile_throughput(root: Path, sizes: Sizes, out_dir: Path) -> dict[str, Any]:
    """Measurement 4's check-in loop under cProfile, on a fresh device."""
    rep, run = engine_checkins(root, "profile-throughput", sizes.throughput_checkins)
    prof_path = out_dir / "core_bench_throughput.prof"
    try:
        with profiled(prof_path):
            run()
    finally:
        rep.close()
    return {"file": str(prof_path)}


def profile_open(root: Path, sizes: Sizes, out_dir: Path) -> dict[str, Any]:
    """Measurement 3's open + status under cProfile, on the store it built."""
    prof_path = out_dir / "core_bench_open.prof"
    with profiled(prof_path):
        rep = Replica.open(root / "open")
        rep.status(EVENT)
    rep.close()
    return {"file": str(prof_path)}


TASKS: dict[str, Callable[[Path, Sizes], dict[str, Any]]] = {
    "latency": bench_latency,
    "import": bench_import,
    "open": bench_open,
    "throughput": bench_throughput,
}
PROFILES: dict[str, Callable[[Path, Sizes, Path], dict[str, Any]]] = {
    "open": profile_open,
    "throughput": profile_throughput,
}


def run_child(task: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement or profile in a fresh interpreter, so that no
    measurement pays for the heap (or leaks) another one left behind."""
    cmd = [sys.executable, str(SCRIPT), "--child", task, "--root", str(root)]
    cmd += ["--out", str(args.out)]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"core_bench: {task} failed (exit {proc.returncode}); see stderr above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(task: str, root: Path, sizes: Sizes, out_path: Path) -> None:
    kind, _, name = task.partition(":")
    if kind == "profile":
        result = PROFILES[name](root, sizes, out_path.parent)
    else:
        result = TASKS[kind](root, sizes)
    print(json.dumps(result))


# -- report -------------------------------------------------------------------------------


def rows_for(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    if "latency" in results:
        lat = results["latency"]
        eng, base = lat["engine_ms"], lat["sqlite_floor_ms"]
        for q in ("p50", "p90", "p99", "max"):
            row = Row(f"1 durable check-in {q}", eng[q], base[q], "ms")
            if q == "p99":
                row.target, row.passed = "<= 10 ms", eng[q] <= 10
            rows.append(row)
    if "import" in results:
        imp = results["import"]
        for key, label in (("import_participants", "rows"), ("import_csv", "csv")):
            rate = imp[f"{key}_per_s"]
            row = Row(f"2 import ({label}) /s", rate, imp["raw_pycrdt_per_s"], "/s")
            row.target, row.passed = ">= 10000/s", rate >= 10_000
            rows.append(row)
    if "open" in results:
        op = results["open"]
        rows.append(Row("3 open+status min", op["engine_min_s"], op["raw_min_s"], "s"))
        med = op["engine_median_s"]
        rows.append(Row("3 open+status median", med, op["raw_median_s"], "s", "<= 2 s", med <= 2.0))
    if "throughput" in results:
        tp = results["throughput"]
        for label, key in (("same Y ops", "raw_pycrdt_per_s"), ("Map idiom", "raw_map_per_s")):
            row = Row(f"4 check-ins/s vs {label}", tp["engine_per_s"], tp[key], "/s")
            row.target = "ratio >= 0.50"
            row.passed = (row.ratio or 0) >= 0.5
            rows.append(row)
    if "latency" in results:
        b = results["latency"]["bytes"]
        rows.append(
            Row(
                "5 log bytes / check-in", b["log_bytes_per_checkin"], b["scan_json_bytes_mean"], "B"
            )
        )
    return rows


def print_details(results: dict[str, Any]) -> None:
    if "latency" in results:
        lat = results["latency"]
        e, b = lat["engine_ms"], lat["sqlite_floor_ms"]
        print(
            f"1: {lat['checkins']} durable check-ins by QR token, {lat['participants']} "
            f"participants; mean {e['mean']:.3f} ms (floor {b['mean']:.3f} ms); first "
            f"check-in {lat['first_checkin_ms']:.3f} ms; floor blob {lat['blob_bytes']} B"
        )
        by = lat["bytes"]
        print(
            f"5: update bytes mean {by['entry_update_bytes_mean']:.1f} "
            f"(min {by['entry_update_bytes_min']}, max {by['entry_update_bytes_max']}); "
            f"baseline = compact JSON of the scan incl. id and hlc"
        )
    if "import" in results:
        imp = results["import"]
        print(
            f"2: {imp['participants']} participants in {imp['entries']} entries: rows "
            f"{imp['import_participants_s']:.3f} s, csv {imp['import_csv_s']:.3f} s "
            f"({imp['csv_bytes']:,} B file), raw pycrdt {imp['raw_pycrdt_s']:.3f} s"
        )
    if "open" in results:
        op = results["open"]
        runs = ", ".join(
            f"{r['total_s']:.3f} (open {r['open_s']:.3f} + status {r['status_s']:.3f}; "
            f"process {r['process_wall_s']:.3f})"
            for r in op["runs"]
        )
        print(
            f"3: {op['participants']} participants, {op['scans']} scans, built in "
            f"{op['build_s']:.1f} s; snapshot {op['state_bytes']:,} B, db {op['db_bytes']:,} B"
        )
        print(f"   runs (s): {runs}")
        print(f"   raw apply_update (s): {', '.join(f'{x:.3f}' for x in op['raw_apply_s'])}")
    if "throughput" in results:
        tp = results["throughput"]
        print(
            f"4: {tp['checkins']} check-ins: engine {tp['engine_s']:.3f} s, raw pycrdt "
            f"{tp['raw_pycrdt_s']:.3f} s; update bytes engine "
            f"{tp['engine_update_bytes_mean']:.1f}, raw {tp['raw_update_bytes_mean']:.1f}"
        )


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--only",
        default=",".join(MEASUREMENTS),
        help=f"comma-separated subset of {','.join(MEASUREMENTS)} (default: all)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile open (3) and throughput (4) with cProfile, after the timed runs",
    )
    parser.add_argument("--top", type=int, default=15, help="functions per profile listing")
    parser.add_argument(
        "--tmp-dir", type=Path, default=None, help="where the stores go (default: system temp)"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR / "core_bench.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-open", nargs=2, metavar=("DIR", "EVENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chosen = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurement(s) {unknown}; choose from {list(MEASUREMENTS)}")
    args.only = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    out_path: Path = args.out.resolve()
    if args.child_open:
        child_open(*args.child_open)
        return 0
    if args.child:
        child_main(args.child, args.root, sizes, out_path)
        return 0
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    profiles: dict[str, dict[str, str]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="headcount-bench-", dir=args.tmp_dir) as tmp:
        root = Path(tmp)
        info = machine_info(root)
        for name in MEASUREMENTS:
            if name in args.only:
                results[name] = run_child(name, root, args)
        if args.profile:
            for name in PROFILES:
                if name in args.only:
                    log(f"profiling {name}")
                    profiles[name] = run_child(f"profile:{name}", root, args)
                    for sort in ("cumulative", "tottime"):
                        profiles[name][sort] = top_functions(
                            Path(profiles[name]["file"]), sort, args.top
                        )
        info["loadavg_end"] = os.getloadavg()
    elapsed = time.perf_counter() - started

    rows = rows_for(results)
    mode = "quick" if args.quick else "full"
    title = f"core_bench ({mode}; {', '.join(args.only)})"
    print_header(title, info, asdict(sizes))
    print_table(rows)
    print()
    print_details(results)
    if args.quick:
        print("note: --quick sizes are below the targets' sizes; verdicts are indicative only")
    for name, entry in profiles.items():
        for sort in ("cumulative", "tottime"):
            print(f"\nprofile {name}, top {args.top} by {sort} ({entry['file']}):")
            print(entry[sort])
    print(f"\ntotal {elapsed:.1f} s; results in {out_path}")
    write_json(
        out_path,
        info,
        asdict(sizes),
        rows,
        mode=mode,
        elapsed_s=elapsed,
        results=results,
        profiles=profiles,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
