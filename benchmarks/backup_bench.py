"""Backup figures: full backup, verify and restore of a large event, each against
a baseline measured in the same run.

Run from the repository root with the package installed::

    python benchmarks/backup_bench.py            # 50,000 participants, 100,000 check-ins
    python benchmarks/backup_bench.py --quick    # 5,000 / 10,000: a smoke run

Every timed operation runs in its own fresh interpreter (the parent only
builds the store, prepares copies and collects JSON). Prints a table (metric,
value, baseline, ratio, target, result) and the sizes, and writes
``benchmarks/out/backup_bench.json``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import OUT_DIR, Row, machine_info, print_header, print_table, write_json
from headcount import Replica, Role
from headcount.backup import Secret, create_backup, restore_backup, verify_backup

EVENT = "bench"
SCRIPT = Path(__file__).resolve()
TARGET_S = 10.0
PASSPHRASE = "benchmark passphrase"
FULL = {"participants": 50_000, "checkins": 100_000}
QUICK = {"participants": 5_000, "checkins": 10_000}


def log(line: str) -> None:
    print(f"[backup_bench] {line}", file=sys.stderr, flush=True)


# -- children: one timed operation each ------------------------------------------------


def child(op: str, a: str, b: str, c: str, encrypted: bool) -> dict[str, Any]:
    """Run one operation in this (fresh) interpreter and return its timings."""
    secret = Secret(passphrase=PASSPHRASE.encode()) if encrypted else None
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if op == "create":
        m = create_backup(Path(a), "full", dest=Path(b), secret=secret)
        out = {"id": m.id, "files": m.raw["files"]}
    elif op == "verify":
        report = verify_backup(a, Path(b), secret=secret)
        assert report.content_checked
    elif op == "restore":
        report = restore_backup(a, Path(b), Path(c), secret=secret)
        out = {"events": report.events}
    elif op == "base_create":
        base_create(Path(a), Path(b))
    elif op == "base_sqlite":
        src = sqlite3.connect(f"{(Path(a) / 'headcount.db').as_uri()}?mode=ro", uri=True)
        dst = sqlite3.connect(Path(b) / "copy.db")
        src.backup(dst)
        dst.close()
        src.close()
    elif op == "base_verify":
        base_verify(Path(a))
    elif op == "base_restore":
        base_restore(Path(a), Path(c))
    else:
        raise SystemExit(f"unknown op {op}")
    out["seconds"] = time.perf_counter() - t0
    return out


def base_create(data: Path, dest: Path) -> None:
    """The naive backup: copy the database file, gzip it (level 6)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data / "headcount.db", dest / "copy.db")
    with (dest / "copy.db").open("rb") as src, gzip.open(dest / "copy.db.gz", "wb", 6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    (dest / "copy.db").unlink()


def base_verify(dest: Path) -> None:
    """The naive check: SHA-256 of the file, then decompress it all."""
    hashlib.sha256((dest / "copy.db.gz").read_bytes()).hexdigest()
    with gzip.open(dest / "copy.db.gz", "rb") as src:
        while src.read(1 << 20):
            pass


def base_restore(dest: Path, data: Path) -> None:
    """The naive restore: decompress beside the store, rename it over."""
    with gzip.open(dest / "copy.db.gz", "rb") as src, (data / "new.db").open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    os.replace(data / "new.db", data / "headcount.db")


def run_child(op: str, *args: str, encrypted: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, str(SCRIPT), "--child", op, *args]
    if encrypted:
        cmd.append("--encrypted")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{op} failed: {done.stderr.strip()}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


# -- the parent ---------------------------------------------------------------


def build(root: Path, people: int, checkins: int) -> tuple[Path, dict[str, Any]]:
    path = root / "gate"
    Replica.init(path, role=Role.ADMIN, name="north")  # it creates the event: an admin
    t0 = time.perf_counter()
    with Replica.open(path, durability="off") as rep:
        rep.create_event(EVENT, "Benchmark")
        rows = [
            {
                "id": f"P{i:06d}",
                "name": f"Participant {i}",
                "email": f"p{i}@example.org",
                "phone": f"+82-10-{i:08d}",
                "qr_token": f"QR-{i:06d}",
            }
            for i in range(people)
        ]
        rep.import_participants(EVENT, rows)
        for i in range(checkins):
            rep.check_in(EVENT, f"P{i % people:06d}", gate="north")
        counts = rep.status(EVENT)
    info = {
        "build_s": time.perf_counter() - t0,
        "participants": counts.participants,
        "scans": counts.scans,
        "db_bytes": (path / "headcount.db").stat().st_size,
    }
    log(
        f"built {counts.participants} participants, {counts.scans} scans in {info['build_s']:.1f} s"
    )
    return path, info


def measure(root: Path, data: Path, encrypted: bool) -> dict[str, Any]:
    tag = "encrypted" if encrypted else "plain"
    dest = root / f"dest-{tag}"
    log(f"{tag}: create")
    made = run_child("create", str(data), str(dest), "-", encrypted=encrypted)
    log(f"{tag}: verify")
    checked = run_child("verify", made["id"], str(dest), "-", encrypted=encrypted)
    target = root / f"restore-{tag}"
    shutil.copytree(data, target)  # restore over an existing device (not timed)
    log(f"{tag}: restore")
    restored = run_child("restore", made["id"], str(dest), str(target), encrypted=encrypted)
    size = sum(f["size"] for f in made["files"])
    raw = sum(f["raw_size"] for f in made["files"])
    return {"create": made, "verify": checked, "restore": restored, "size": size, "raw": raw}


def baselines(root: Path, data: Path) -> dict[str, Any]:
    dest = root / "dest-base"
    log("baselines")
    out = {"create": run_child("base_create", str(data), str(dest), "-")}
    (root / "dest-sqlite").mkdir()
    out["sqlite"] = run_child("base_sqlite", str(data), str(root / "dest-sqlite"), "-")
    out["verify"] = run_child("base_verify", str(dest), "-", "-")
    target = root / "restore-base"
    shutil.copytree(data, target)
    out["restore"] = run_child("base_restore", str(dest), "-", str(target))
    out["size"] = (dest / "copy.db.gz").stat().st_size
    return out


def rows_for(info: dict[str, Any], runs: dict[str, Any], base: dict[str, Any]) -> list[Row]:
    rows = []
    for tag, run in runs.items():
        for op in ("create", "verify", "restore"):
            value = run[op]["seconds"]
            rows.append(
                Row(
                    f"full backup {op} ({tag})",
                    value,
                    base[op]["seconds"],
                    "s",
                    f"<= {TARGET_S:.0f} s",
                    value <= TARGET_S,
                )
            )
    for tag, run in runs.items():
        rows.append(Row(f"backup size ({tag})", run["size"] / 1e6, base["size"] / 1e6, "MB"))
        rows.append(
            Row(
                f"compression ratio ({tag})",
                info["db_bytes"] / run["size"],
                info["db_bytes"] / base["size"],
                "x",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--tmp-dir", type=Path, help="where the stores go (default: system temp)")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "backup_bench.json")
    parser.add_argument("--child", nargs=4, metavar=("OP", "A", "B", "C"), help=argparse.SUPPRESS)
    parser.add_argument("--encrypted", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, encrypted=args.encrypted)))
        return
    sizes = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    with tempfile.TemporaryDirectory(dir=args.tmp_dir, prefix="backup-bench-") as tmp:
        root = Path(tmp)
        machine = machine_info(root)
        data, info = build(root, sizes["participants"], sizes["checkins"])
        runs = {"plain": measure(root, data, False), "encrypted": measure(root, data, True)}
        base = baselines(root, data)
        machine["loadavg_end"] = os.getloadavg()
    rows = rows_for(info, runs, base)
    print_header(f"backup_bench ({mode})", machine, sizes)
    print(
        f"store: {info['participants']} participants, {info['scans']} check-ins, "
        f"{info['db_bytes'] / 1e6:.2f} MB (built in {info['build_s']:.1f} s, durability off)"
    )
    print_table(rows)
    print(
        "baselines: create = copyfile + gzip -6 of headcount.db; verify = SHA-256 + gunzip; "
        "restore = gunzip + rename over the store. Raw sqlite3 backup API copy alone: "
        f"{base['sqlite']['seconds']:.2f} s. Encrypted = AES-256-GCM, scrypt n=2^17 "
        "(one derivation per operation included)."
    )
    out = write_json(
        args.out.resolve(), machine, sizes, rows, mode=mode, info=info, runs=runs, baseline=base
    )
    print(f"results in {out}")


if __name__ == "__main__":
    main()
