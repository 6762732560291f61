"""What checking every peer entry's effect costs (issue 11).

A gate records a backlog of check-ins (100,000 by default, gate_sync's
backlog size; ``--quick``: 10,000) while another device is away; the other
device then takes the whole backlog in, in sync-sized batches, as its
receive path does. Measured in the same process, on fresh stores, each run
twice and the better kept:

1. an eager gate applying the backlog with validation (core/validate.py)
   vs the same without it (the check replaced by a pass-through: the
   baseline, what the code did before issue 11);
2. a lazy relay accepting it, the same two ways;
3. the check alone (decode + rules) over every entry vs raw pycrdt applying
   the same updates.

Target: at most 15 % slower than without validation (ratio <= 1.15). Local
check-ins are not validated (a device trusts its own writes), so core_bench's
check-in throughput does not change; row 4 shows it anyway.

Usage: python benchmarks/validation_cost.py [--quick] [--entries N] [--batch N]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import headcount.replica.replica as replica_module
from _common import OUT_DIR, Row, machine_info, print_header, print_table, write_json
from headcount import Replica, Role
from headcount.core.model import LogEntry
from headcount.core.validate import check_entries

EV = "bench"
TARGET = 1.15


def log(message: str) -> None:
    print(f"[validation_cost {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def without_validation() -> Iterator[None]:
    """The receive path as before issue 11: every entry passes."""
    original = replica_module.check_entries
    replica_module.check_entries = lambda entries, roles: (list(entries), [])  # type: ignore[assignment]
    try:
        yield
    finally:
        replica_module.check_entries = original


def make_backlog(root: Path, entries: int) -> tuple[Replica, Replica, list[LogEntry]]:
    Replica.init(root / "admin", role=Role.ADMIN, name="admin")
    Replica.init(root / "gate", role=Role.GATE, name="gate")
    admin = Replica.open(root / "admin", durability="off")
    gate = Replica.open(root / "gate", durability="off")
    admin.create_event(EV, "Bench")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"P {i}"} for i in range(1000)])
    gate.trust(admin.device_id, admin.identity.public_key_raw, admin.role)
    gate.apply_entries(admin.export_since(EV, {}))
    for i in range(entries):
        gate.check_in(EV, f"p{i % 1000}", at_ms=1_700_000_000_000 + i)
    backlog = admin.export_since(EV, {}) + gate.export_since(EV, {admin.device_id: 10**9})
    return admin, gate, backlog


def take_in(
    root: Path, name: str, role: Role, sources: list[Replica], backlog: list[LogEntry], batch: int,
    lazy: bool,
) -> float:  # fmt: skip
    """Seconds for a fresh replica to take ``backlog`` in, ``batch`` entries
    per call (one durable commit each, as a received message)."""
    path = root / name
    Replica.init(path, role=role, name=name)
    with Replica.open(path) as r:
        r.lazy_apply = lazy
        for s in sources:
            r.trust(s.device_id, s.identity.public_key_raw, s.role)
        gc.collect()
        started = time.perf_counter()
        for i in range(0, len(backlog), batch):
            result = r.apply_entries(backlog[i : i + batch])
            assert not result.refused and not result.rejected, (result.refused, result.rejected)
        if lazy:
            r.status(EV)  # a read applies what was logged: part of the relay's work
        took = time.perf_counter() - started
        assert r.status(EV).scans == len(backlog) - 2 or r.status(EV).scans > 0
    shutil.rmtree(path)
    return took


def best(times: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 entries instead of 100,000")
    parser.add_argument("--entries", type=int, help="check-ins in the backlog")
    parser.add_argument("--batch", type=int, default=500, help="entries per apply (500)")
    args = parser.parse_args()
    entries = args.entries or (10_000 if args.quick else 100_000)
    root = Path(tempfile.mkdtemp(prefix="headcount-validation-"))
    info = machine_info(root)
    try:
        log(f"recording a backlog of {entries:,} check-ins ...")
        admin, gate, backlog = make_backlog(root, entries)
        sources = [admin, gate]
        roles = {admin.device_id: "admin", gate.device_id: "gate"}
        figures: dict[str, Any] = {}
        for label, role, lazy in (("gate", Role.GATE, False), ("relay", Role.RELAY, True)):
            log(f"{label}: taking the backlog in, with and without validation ...")

            def run(name: str, role: Role = role, lazy: bool = lazy) -> float:
                return take_in(root, name, role, sources, backlog, args.batch, lazy)

            with without_validation():
                off = best(2, lambda: run("off"))
            on = best(2, lambda: run("on"))
            figures[label] = {"with_s": on, "without_s": off}
        log("the check alone, and raw pycrdt applying the same updates ...")
        started = time.perf_counter()
        ok, refused = check_entries(backlog, roles)
        check_s = time.perf_counter() - started
        assert len(ok) == len(backlog) and not refused
        from pycrdt import Doc

        doc: Doc = Doc()
        started = time.perf_counter()
        for e in backlog:
            doc.apply_update(e.update)
        raw_s = time.perf_counter() - started
        log("local check-ins (never validated), for completeness ...")
        Replica.init(root / "local", role=Role.ADMIN, name="local")
        with Replica.open(root / "local", durability="off") as r:
            r.create_event(EV, "Local")
            r.import_participants(EV, [{"id": "p0", "name": "P"}])
            n = min(entries, 20_000)
            started = time.perf_counter()
            for i in range(n):
                r.check_in(EV, "p0", at_ms=1_700_000_000_000 + i)
            local_rate = n / (time.perf_counter() - started)
        admin.close()
        gate.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = []
    for label in ("gate", "relay"):
        f = figures[label]
        ratio = f["with_s"] / f["without_s"]
        rows.append(
            Row(
                f"{label}: {entries:,}-entry backlog taken in",
                f["with_s"],
                f["without_s"],
                "s",
                f"ratio <= {TARGET}",
                ratio <= TARGET,
            )
        )
    rows.append(Row("check alone, whole backlog", check_s, raw_s, "s"))
    rows.append(
        Row("check per entry", check_s / len(backlog) * 1e3, raw_s / len(backlog) * 1e3, "ms")
    )
    rows.append(Row("local check-ins/s (not validated)", local_rate, None, "/s"))
    sizes = {"entries": entries, "batch": args.batch}
    print_header("validation cost (issue 11)", info, sizes)
    print_table(rows)
    print()
    print("baselines: rows 1-2 the same replica code with the effect check replaced by a")
    print("pass-through (before issue 11), fresh stores, best of 2 runs each; rows 3-4 raw pycrdt")
    print("applying the same updates one call each. Relay: lazy accept, then one read applies.")
    out = write_json(OUT_DIR / "validation_cost.json", info, sizes, rows, figures=figures)
    print(f"results in {out}")


if __name__ == "__main__":
    main()
