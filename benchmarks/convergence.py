"""Convergence benchmark: the real sync protocol in the deterministic simulator.

Run from the repository root with the package installed (``pip install -e '.[sim]'``
for the plots)::

    python benchmarks/convergence.py            # full sweep (a few minutes on 2 cores)
    python benchmarks/convergence.py --quick    # small sizes, a smoke run

Sweeps n = 10, 100, 1000 (and fanout, topology, faults, eager push), prints a
table with the baselines computed in the same run, and writes
``benchmarks/out/convergence.{csv,json}`` and ``convergence_rounds.png`` /
``convergence_bytes.png``. Baselines:

* push-pull gossip: log3(n) + ln ln(n) rounds (Karp et al. 2000); target
  mean rounds <= that + 1.5;
* push gossip: log2(n) + ln(n) rounds (Pittel 1987), for reference;
* minimal delta: the size of pycrdt's ``get_update`` of a document holding
  every update, against an empty state vector, per entry (what a receiver
  missing everything needs at the very least); target bytes per useful entry
  <= 1.2 x that + the signature and framing bytes of an entry on the wire;
* full-state exchange: every gossip contact ships both sides' whole
  document (upper bound: contacts x 2 x final state; lower bound: every
  node receives the final state once).

Every run is a pure function of its seed: rerun one with ``headcount sim``
and the flags in the CSV row. Never touches the network.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pycrdt import Doc

from _common import OUT_DIR, Row, machine_info, print_header, print_table, write_json
from headcount.sim import FaultPlan, FaultRates, Partition, SimConfig, Simulation
from headcount.sim.faults import Crash


def karp(n: int) -> float:
    return math.log(n, 3) + math.log(math.log(n))


def pittel(n: int) -> float:
    return math.log2(n) + math.log(n)


def minimal_delta(sim: Simulation) -> int:
    """pycrdt's delta from an empty state to a document holding every update."""
    doc = Doc()
    for w in sim.workload.writes:
        doc.apply_update(w.update)
    return len(doc.get_update(Doc().get_state()))


def one_run(config: SimConfig, baselines: bool = False) -> dict[str, Any]:
    """Run ``config``; the metrics plus wall times and (optionally) byte baselines."""
    t0 = time.perf_counter()
    sim = Simulation(config)
    built = time.perf_counter() - t0
    m = sim.run()
    row: dict[str, Any] = {
        **m.to_dict(),
        "build_seconds": built,
        "total_seconds": time.perf_counter() - t0,
        "faults": "yes" if not config.faults.empty else "no",
        "karp": karp(config.n),
        "pittel": pittel(config.n),
    }
    if baselines:
        delta = minimal_delta(sim)
        entries = max(1, len(sim.workload.writes))
        contacts = m.connections + _anti_entropy_contacts(m)
        row.update(
            minimal_delta_bytes=delta,
            minimal_delta_per_entry=delta / entries,
            full_state_upper=contacts * 2 * delta,
            full_state_lower=(m.nodes_final - 1) * delta,
        )
    segments = m.by_type.get("segments", [0, 0])[1]
    row.update(segments_bytes=segments, control_bytes=m.bytes - segments)
    row.pop("by_type")
    row["closes"] = json.dumps(row["closes"], sort_keys=True)
    return row


def _anti_entropy_contacts(m: Any) -> int:
    # every gossip contact over an open connection starts with a Summary
    # asking for a reply; handshakes are counted as connections.
    return max(0, (m.by_type.get("summary", [0])[0] - 2 * m.connections) // 2)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- sweeps ------------------------------------------------------------------------


def sweep_rounds(sizes: list[int], seeds: int) -> list[dict[str, Any]]:
    """One rumour (a 1,000-participant import at one node), push-pull, fanout 1."""
    rows = []
    for n in sizes:
        for seed in range(seeds):
            progress(f"rounds: n={n} seed={seed}")
            cfg = SimConfig(n=n, seed=seed, workload="import", updates=10, writers=1)
            rows.append({"sweep": "rounds", **one_run(cfg)})
    return rows


def sweep_bytes(sizes: list[int], updates: int, writers: int) -> list[dict[str, Any]]:
    """A fixed workload (check-ins at a few gates) disseminated to n nodes."""
    rows = []
    for n in sizes:
        progress(f"bytes: n={n} updates={updates} writers={writers}")
        cfg = SimConfig(n=n, seed=1, updates=updates, writers=writers, idle_rounds=5)
        rows.append({"sweep": "bytes", **one_run(cfg, baselines=True)})
    return rows


def sweep_idle(n: int, records: list[int]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        progress(f"idle: n={n} records={r}")
        cfg = SimConfig(n=n, seed=2, updates=r, writers=10, idle_rounds=10)
        rows.append({"sweep": "idle", **one_run(cfg, baselines=True)})
    return rows


def sweep_scale(n: int, updates: int, writer_counts: list[int]) -> list[dict[str, Any]]:
    """The timed runs, each in a fresh interpreter (no heap left by other runs)."""
    rows = []
    for w in writer_counts:
        progress(f"scale: n={n} updates={updates} writers={w} (the < 60 s target)")
        spec = json.dumps({"n": n, "seed": 1, "updates": updates, "writers": w})
        done = subprocess.run(
            [sys.executable, __file__, "--one", spec], check=True, capture_output=True, text=True
        )
        rows.append({"sweep": "scale", **json.loads(done.stdout)})
    return rows


def sweep_variants(n: int, seeds: int) -> list[dict[str, Any]]:
    """Fanout, topologies, eager push and faults at one size (info only)."""
    base = SimConfig(n=n, updates=1000, writers=10, window=5.0)
    heal = 20.0
    variants: dict[str, SimConfig] = {
        "mesh f=1": base,
        "mesh f=2": replace(base, fanout=2),
        "mesh f=3": replace(base, fanout=3),
        "mesh eager push": replace(base, eager_push=True),
        "clusters(4)+relay": replace(base, topology="clusters"),
        "random graph d=6": replace(base, topology="random"),
        "line": replace(base, topology="line", n=min(n, 30)),
        "stream loss 5%": replace(
            base, faults=FaultPlan(rates=FaultRates(loss=0.05), rates_until=heal)
        ),
        "datagram loss 5%": replace(
            base,
            transport="datagram",
            faults=FaultPlan(rates=FaultRates(loss=0.05), rates_until=heal),
        ),
        "partition 20 s": replace(
            base,
            faults=FaultPlan(partitions=(Partition(0.0, heal, frozenset(range(n // 2))),)),
        ),
        "10% nodes crash 10 s": replace(
            base,
            faults=FaultPlan(crashes=tuple(Crash(i, 2.0, 10.0) for i in range(0, n, 10))),
        ),
    }
    rows = []
    for name, cfg in variants.items():
        for seed in range(seeds):
            progress(f"variant: {name} seed={seed}")
            rows.append({"sweep": "variant", "variant": name, **one_run(replace(cfg, seed=seed))})
    return rows


def sweep_semantic(n: int, seeds: int) -> list[dict[str, Any]]:
    rows = []
    for seed in range(seeds):
        progress(f"materialized: n={n} seed={seed}")
        cfg = SimConfig(
            n=n, seed=seed, workload="mixed", updates=300, writers=4, window=5.0,
            mode="materialized",
            faults=FaultPlan(rates=FaultRates(loss=0.02), rates_until=8.0,
                             crashes=(Crash(1, 3.0, 4.0),)),
        )  # fmt: skip
        rows.append({"sweep": "semantic", **one_run(cfg)})
    return rows


# -- report --------------------------------------------------------------------------


def report(rows: list[dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    by = _group(rows)
    for n, runs in sorted(by.get("rounds", {}).items()):
        rounds = [r["rounds"] for r in runs if r["converged"]]
        bound = karp(n)
        mean = statistics.mean(rounds) if rounds else None
        ok = len(rounds) == len(runs) and mean is not None and mean <= bound + 1.5
        out.append(
            Row(
                f"mean rounds, push-pull, n={n} ({len(runs)} seeds; "
                f"min {min(rounds, default=0)} max {max(rounds, default=0)})",
                mean, bound, "", f"<= {bound + 1.5:.1f}", ok,
            )
        )  # fmt: skip
        out.append(Row(f"  push-only bound log2 n + ln n, n={n}", pittel(n)))
    for sweep in ("bytes", "scale", "idle"):
        for _, runs in sorted(by.get(sweep, {}).items()):
            for r in runs:
                out += _bytes_rows(sweep, r)
    out += _idle_rows(rows)
    for r in rows:
        if r["sweep"] == "scale":
            ok = r["converged"] and r["total_seconds"] < 60
            out.append(
                Row(
                    f"wall, n={r['n']} {r['entries']:,} updates {r['writers']} writers",
                    r["total_seconds"], None, "s", "< 60 s", ok,
                )
            )  # fmt: skip
    sem = [r for r in rows if r["sweep"] == "semantic"]
    if sem:
        ok = all(r["converged"] and r["semantic_converged"] for r in sem)
        out.append(
            Row(
                f"materialized runs semantically converged, n={sem[0]['n']} "
                f"(conflicts {sorted({r['conflicts'] for r in sem})})",
                sum(bool(r["semantic_converged"]) for r in sem), len(sem), "", "all", ok,
            )
        )  # fmt: skip
    return out


def _group(rows: list[dict[str, Any]]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    by: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in rows:
        by.setdefault(r["sweep"], {}).setdefault(r["n"], []).append(r)
    return by


def _bytes_rows(sweep: str, r: dict[str, Any]) -> list[Row]:
    if not r.get("bytes_per_useful"):
        return []
    label = f"n={r['n']} {r['entries']:,} entries {r['writers']} writers"
    useful = max(1, r["useful"])
    minimal = r["minimal_delta_per_entry"]
    allowance = r["framing_per_entry"] or 0.0
    target = 1.2 * minimal + allowance
    ok = r["bytes_per_useful"] <= target
    return [
        Row(
            f"bytes/useful entry [{sweep}] {label}", r["bytes_per_useful"], minimal, "B",
            f"<= {target:.0f} B (1.2 x {minimal:.0f} + {allowance:.0f})", ok,
        ),
        Row(f"  update bytes sent / useful (vs minimal delta), {label}",
            r["payload_bytes"] / useful, minimal, "B"),
        Row(f"  framing+signature bytes / useful, {label}",
            (r["segments_bytes"] - r["payload_bytes"]) / useful, None, "B"),
        Row(f"  control bytes (summary, ack, hello, ping, bye) / useful, {label}",
            r["control_bytes"] / useful, None, "B"),
        Row(f"  redundant / useful deliveries, {label}", r["redundant"] / useful),
        Row(f"  total bytes vs full-state exchange (upper), {label}", r["bytes"],
            r["full_state_upper"], "B"),
        Row(f"  total bytes vs full-state exchange (lower), {label}", r["bytes"],
            r["full_state_lower"], "B"),
    ]  # fmt: skip


def _idle_rows(rows: list[dict[str, Any]]) -> list[Row]:
    idle = sorted((r for r in rows if r["sweep"] == "idle"), key=lambda r: r["entries"])
    if len(idle) < 2:
        return []
    small, big = idle[0], idle[-1]
    ratio = big["idle_bytes_per_node_round"] / small["idle_bytes_per_node_round"]
    out = [
        Row(
            f"idle bytes/node/round, n={r['n']}, {r['entries']:,} records (full-state: 2 x state)",
            r["idle_bytes_per_node_round"], 2 * r["minimal_delta_bytes"], "B",
        )
        for r in idle
    ]  # fmt: skip
    out.append(
        Row(
            f"idle traffic growth {small['entries']:,} -> {big['entries']:,} records",
            ratio, None, "x", "<= 1.10x (does not grow)", ratio <= 1.10,
        )
    )  # fmt: skip
    return out


# -- plots ---------------------------------------------------------------------------


def plot(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib is not installed (pip install -e '.[sim]'): no plots")
        return []
    made = []
    by = _group(rows)
    if "rounds" in by:
        ns = sorted(by["rounds"])
        means = [statistics.mean(r["rounds"] for r in by["rounds"][n]) for n in ns]
        lo = [min(r["rounds"] for r in by["rounds"][n]) for n in ns]
        hi = [max(r["rounds"] for r in by["rounds"][n]) for n in ns]
        xs = [ns[0] * (ns[-1] / ns[0]) ** (k / 50) for k in range(51)]
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ax.errorbar(ns, means, yerr=[[m - a for m, a in zip(means, lo, strict=True)],
                                     [b - m for m, b in zip(means, hi, strict=True)]],
                    fmt="o-", capsize=4, label="measured (mean, min-max)")  # fmt: skip
        ax.plot(xs, [karp(x) for x in xs], "--", label="push-pull bound log3 n + ln ln n")
        ax.plot(xs, [karp(x) + 1.5 for x in xs], ":", label="target (bound + 1.5)")
        ax.plot(xs, [pittel(x) for x in xs], "-.", label="push log2 n + ln n")
        ax.set_xscale("log")
        ax.set_xlabel("nodes n")
        ax.set_ylabel("gossip rounds to full dissemination")
        ax.set_title("Rounds vs n (full mesh, fanout 1, push-pull)")
        ax.legend()
        ax.grid(alpha=0.3)
        path = out / "convergence_rounds.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        made.append(path)
    if "bytes" in by:
        ns = sorted(by["bytes"])
        runs = [by["bytes"][n][0] for n in ns]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
        a1.plot(ns, [r["bytes_per_useful"] for r in runs], "o-", label="ours, all bytes / useful")
        a1.plot(ns, [r["minimal_delta_per_entry"] for r in runs], "s--", label="minimal Y delta")
        a1.plot(ns, [1.2 * r["minimal_delta_per_entry"] + (r["framing_per_entry"] or 0)
                     for r in runs], ":", label="target 1.2 x delta + framing")  # fmt: skip
        a1.set_xscale("log")
        a1.set_xlabel("nodes n")
        a1.set_ylabel("bytes per useful entry")
        a1.legend()
        a1.grid(alpha=0.3)
        a2.plot(ns, [r["bytes"] for r in runs], "o-", label="ours, total")
        a2.plot(ns, [r["full_state_upper"] for r in runs], "^--", label="full state per contact")
        a2.plot(ns, [r["full_state_lower"] for r in runs], "v:", label="full state once per node")
        a2.set_xscale("log")
        a2.set_yscale("log")
        a2.set_xlabel("nodes n")
        a2.set_ylabel("bytes sent until converged")
        a2.legend()
        a2.grid(alpha=0.3)
        fig.suptitle(f"Bytes vs n ({runs[0]['entries']:,} check-ins at {runs[0]['writers']} gates)")
        path = out / "convergence_bytes.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        made.append(path)
    return made


# -- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per size (rounds)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    parser.add_argument("--one", metavar="JSON", help=argparse.SUPPRESS)  # one run, as JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(SimConfig(**json.loads(args.one)), baselines=True)))
        return 0
    quick = args.quick
    plan: dict[str, Any] = {
        "n": [10, 100] if quick else [10, 100, 1000],
        "seeds": min(args.seeds, 3) if quick else args.seeds,
        "bytes_updates": 1000 if quick else 10_000,
        "idle_n": 50 if quick else 100,
        "idle_records": [1000, 10_000],
        "scale_n": None if quick else 1000,
        "variants_n": 30 if quick else 100,
        "variants_seeds": 1 if quick else 3,
        "semantic_n": 8 if quick else 10,
        "semantic_seeds": 2 if quick else 3,
    }
    info = machine_info()
    started = time.perf_counter()
    rows = sweep_rounds(plan["n"], plan["seeds"])
    rows += sweep_bytes(plan["n"], plan["bytes_updates"], 10)
    rows += sweep_idle(plan["idle_n"], plan["idle_records"])
    if plan["scale_n"]:
        rows += sweep_scale(plan["scale_n"], 10_000, [100, 1000])
    rows += sweep_variants(plan["variants_n"], plan["variants_seeds"])
    rows += sweep_semantic(plan["semantic_n"], plan["semantic_seeds"])
    elapsed = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    table = report(rows)
    print_header(f"convergence ({'quick' if quick else 'full'}), simulated", info, plan)
    print_table(table)
    _variants_table(rows)
    fields = sorted({k for r in rows for k in r})
    with (args.out / "convergence.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    write_json(args.out / "convergence.json", info, plan, table, elapsed_s=elapsed, runs=rows)
    made = plot(rows, args.out)
    print(f"\ntotal {elapsed:.0f} s; wrote {args.out / 'convergence.csv'}, "
          f"{args.out / 'convergence.json'}" + "".join(f", {p}" for p in made))  # fmt: skip
    return 0


def _variants_table(rows: list[dict[str, Any]]) -> None:
    variants: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["sweep"] == "variant":
            variants.setdefault(r["variant"], []).append(r)
    if not variants:
        return
    print(
        "\nvariants (info), means over seeds: rounds and time from the last write; healed+ ="
        " seconds from the end of the faults to convergence"
    )
    print(f"{'variant':24} {'n':>5} {'conv':>5} {'rounds':>7} {'time s':>7} {'healed+':>7} "
          f"{'bytes/useful':>12} "
          f"{'redundant/useful':>16} {'conn. failed':>12}")  # fmt: skip
    for name, runs in variants.items():
        conv = sum(r["converged"] for r in runs)
        red = statistics.mean(r["redundant"] / max(1, r["useful"]) for r in runs)
        print(f"{name:24} {runs[0]['n']:>5} {conv:>2}/{len(runs):<2} {_mean(runs, 'rounds'):>7.1f} "
              f"{_mean(runs, 'time_to_converge'):>7.1f} {_healed(runs):>7} "
              f"{_mean(runs, 'bytes_per_useful'):>12.1f} {red:>16.2f} "
              f"{_mean(runs, 'connect_failures'):>12.1f}")  # fmt: skip


def _mean(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.mean(r[key] or 0 for r in runs)


def _healed(runs: list[dict[str, Any]]) -> str:
    values = [r["time_after_heal"] for r in runs if r["time_after_heal"] is not None]
    return f"{statistics.mean(values):.1f}" if values else "-"


if __name__ == "__main__":
    sys.exit(main())
