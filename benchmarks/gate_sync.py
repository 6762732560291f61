"""Gate-to-gate sync figures: two gate daemons, separate processes, loopback only.

Run from the repository root with the package installed::

    python benchmarks/gate_sync.py            # full sizes (the targets)
    python benchmarks/gate_sync.py --quick    # small sizes, a smoke run (< 30 s)
    python benchmarks/gate_sync.py --profile  # also cProfile both daemons

Gate A is ``headcount run`` (``python -m headcount run --config a.toml``);
gate B runs the same ``Daemon`` class in a child of this script whose only
addition is a hook on the node's effects that timestamps, with the system-wide
``time.monotonic_ns()``, every batch B applies. Measures (1) the latency from a
check-in sent to A's control socket until it is applied at B, and (2) the time
B needs to catch up on a backlog of check-ins made at A while B was down.
Prints a table (metric, value, baseline, ratio, target, result) and writes
every figure to ``benchmarks/out/gate_sync.json``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from pycrdt import Doc

from _common import (
    OUT_DIR,
    Row,
    distribution,
    machine_info,
    print_header,
    print_table,
    top_functions,
    write_json,
)
from headcount import Replica, Role
from headcount.pki.device import install_certificate
from headcount.pki.org import enroll, init_org
from headcount.service import control

EVENT = "bench"
HOST = "127.0.0.1"  # loopback only (DEVELOPERS.md network rule)
SCRIPT = Path(__file__).resolve()
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
VISIBLE_TIMEOUT_S = 5.0  # one check-in not at B after this: counted as a timeout
INITIAL_SYNC_TIMEOUT_S = 60.0
BACKLOG_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Sizes:
    participants: int = 2_000
    warmup: int = 20
    checkins: int = 500
    backlog: int = 100_000


FULL = Sizes()
QUICK = Sizes(participants=500, warmup=5, checkins=50, backlog=5_000)


def log(message: str) -> None:
    print(f"[gate_sync] {message}", file=sys.stderr, flush=True)


# -- gate B: the Daemon class plus a timestamping hook ----------------------------------


def observer_main(config_path: Path, prof_path: Path | None) -> int:
    """Run gate B in this process; print one line per effect of interest:
    ``APPLIED <monotonic_ns> <event> <scans in event> <entries>`` and
    ``PEER <monotonic_ns> <device>``."""
    import asyncio
    import cProfile

    from headcount.protocol.session import Applied, PeerIdentified
    from headcount.service.daemon import Daemon, load_config

    config = load_config(config_path, None)
    daemon = Daemon(config)
    node, replica, out = daemon.node, daemon.replica, sys.stdout

    def on_effect(source: Any, effect: Any) -> None:
        # Observers run once the node has acted on the effect: the entries
        # are applied and stored, and forwarded (B has no other peer).
        now = time.monotonic_ns()
        if isinstance(effect, Applied):
            scans = len(replica.event(effect.event).doc.scans)
            out.write(f"APPLIED {now} {effect.event} {scans} {effect.entries}\n")
            out.flush()
        elif isinstance(effect, PeerIdentified):
            out.write(f"PEER {now} {effect.device}\n")
            out.flush()

    node.effect_observers.append(on_effect)  # every effect of every link
    ready = asyncio.Event()

    async def main() -> None:
        task = asyncio.create_task(daemon.run(ready))
        await ready.wait()
        print(
            f"headcount gate {replica.device_id} listening on {config.listen_host}:{node.port}",
            flush=True,
        )
        print(f"READY {time.monotonic_ns()}", flush=True)
        await task

    prof = cProfile.Profile() if prof_path else None
    if prof:
        prof.enable()
    try:
        asyncio.run(main())
    finally:
        if prof and prof_path:
            prof.disable()
            prof.dump_stats(str(prof_path))
    return 0


# -- processes ----------------------------------------------------------------------------


class Gate:
    """One daemon process; stdout lines are collected by a reader thread."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path) -> None:
        self.name = name
        self.err_path = log_dir / f"{name}.stderr"
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err)
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
        first = self.proc.stdout.readline().decode() if ready else ""
        if "listening on" not in first:
            self.kill()
            raise RuntimeError(f"gate {name} did not start: {first!r}\n{self.stderr_tail()}")
        self.port = int(first.rsplit(":", 1)[1])
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().rstrip("\n"))

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            return self.err_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM and wait: the daemon closes cleanly (profiles are written)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(f"gate {self.name} did not stop on SIGTERM") from None
            if code != 0:
                raise RuntimeError(f"gate {self.name} exited {code}\n{self.stderr_tail()}")
        self._err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


class Observer:
    """Follows gate B's APPLIED / PEER lines."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.scans = -1
        self.applied: list[tuple[int, int, int]] = []  # (ns, scans, entries)
        self.peer_ns: int | None = None
        self.ready_ns: int | None = None

    def pump(self, timeout: float) -> bool:
        """Consume one line (waiting up to ``timeout``); False if none came."""
        try:
            line = self.gate.lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return False
        parts = line.split()
        if parts and parts[0] == "APPLIED" and parts[2] == EVENT:
            ns, scans, entries = int(parts[1]), int(parts[3]), int(parts[4])
            self.applied.append((ns, scans, entries))
            self.scans = max(self.scans, scans)
        elif parts and parts[0] == "PEER" and self.peer_ns is None:
            self.peer_ns = int(parts[1])
        elif parts and parts[0] == "READY":
            self.ready_ns = int(parts[1])
        return True

    def wait_scans(self, count: int, timeout: float) -> int | None:
        """The monotonic_ns at which B first held ``count`` scans, or None."""
        deadline = time.monotonic() + timeout
        while True:
            if self.scans >= count:  # the first APPLIED line that reached the count
                return next(ns for ns, scans, _ in self.applied if scans >= count)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self.gate.proc.poll() is not None:
                raise RuntimeError(f"gate B died\n{self.gate.stderr_tail()}")
            self.pump(min(left, 0.5))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def enrolled(root: Path, org: Any, name: str, role: Role = Role.GATE) -> Path:
    path = root / name
    Replica.init(path, role=role, name=name)
    with Replica.open(path) as r:
        cert = enroll(org, r.identity.public_key_raw, r.device_id, role, ["*"])
    install_certificate(path, cert.public_bytes(serialization.Encoding.PEM), org.certificate_pem)
    return path


def write_config(path: Path, data: Path, listen: str, peers: list[str]) -> Path:
    peer_list = ", ".join(f'"{p}"' for p in peers)
    path.write_text(f'data_dir = "{data}"\n[network]\nlisten = "{listen}"\npeers = [{peer_list}]\n')
    return path


def start_a(config: Path, root: Path, prof: Path | None) -> Gate:
    cmd = [sys.executable]
    if prof:
        cmd += ["-m", "cProfile", "-o", str(prof)]
    cmd += ["-m", "headcount", "run", "--config", str(config)]
    return Gate("A", cmd, root)


def start_b(config: Path, root: Path, prof: Path | None) -> tuple[Gate, Observer]:
    cmd = [sys.executable, str(SCRIPT), "--observer", str(config)]
    if prof:
        cmd += ["--observer-profile", str(prof)]
    gate = Gate("B", cmd, root)
    return gate, Observer(gate)


def scans_at(sock: Path) -> int:
    reply = control.request(sock, {"op": "status"})
    assert reply is not None
    for ev in reply["events"]:
        if ev["event"] == EVENT:
            return int(ev["scans"])
    return -1


def wait_participants(sock: Path, gate: Gate, n: int) -> None:
    """Until B holds the event with all its participants (the initial sync)."""
    deadline = time.monotonic() + INITIAL_SYNC_TIMEOUT_S
    while time.monotonic() < deadline:
        if gate.proc.poll() is not None:
            raise RuntimeError(f"gate B died\n{gate.stderr_tail()}")
        events = [e for e in status_of(sock)["events"] if e["event"] == EVENT]
        if events and events[0]["participants"] == n:
            return
        time.sleep(0.05)
    raise RuntimeError("B never received the event and its participants")


def status_of(sock: Path) -> dict[str, Any]:
    reply = control.request(sock, {"op": "status"})
    assert reply is not None
    return reply


# -- the two measurements -----------------------------------------------------------------


def measure_latency(
    a_sock: Path, obs: Observer, sizes: Sizes, rng: random.Random, scan_ids: list[str]
) -> dict[str, Any]:
    e2e: list[int] = []
    ack: list[int] = []
    after_ack: list[int] = []
    timeouts = 0
    total = sizes.warmup + sizes.checkins
    expected = scans_at(a_sock)
    if obs.wait_scans(expected, INITIAL_SYNC_TIMEOUT_S) is None:
        raise RuntimeError(f"B never caught up with A before the latency run ({expected} scans)")
    for i in range(total):
        sid = str(uuid.uuid4())
        who = f"P{rng.randrange(sizes.participants):06d}"
        t0 = time.monotonic_ns()
        reply = control.request(
            a_sock, {"op": "scan", "kind": "in", "event": EVENT, "who": who, "scan_id": sid}
        )
        t1 = time.monotonic_ns()
        if not reply or not reply.get("recorded"):
            raise RuntimeError(f"A did not record the check-in: {reply}")
        expected += 1
        seen = obs.wait_scans(expected, VISIBLE_TIMEOUT_S)
        if i >= sizes.warmup:
            scan_ids.append(sid)
            if seen is None:
                timeouts += 1
                expected = max(expected, obs.scans)
            else:
                e2e.append(seen - t0)
                ack.append(t1 - t0)
                after_ack.append(max(0, seen - t1))
        if (i + 1) % 100 == 0:
            log(f"latency: {i + 1}/{total} check-ins")
        time.sleep(rng.uniform(0.0, 0.005))  # not in lockstep with anything
    return {
        "checkins": sizes.checkins,
        "warmup": sizes.warmup,
        "timeouts": timeouts,
        "timeout_s": VISIBLE_TIMEOUT_S,
        "a_to_b_ms": distribution(ns / 1e6 for ns in e2e),
        "a_ack_ms": distribution(ns / 1e6 for ns in ack),
        "ack_to_b_ms": distribution(ns / 1e6 for ns in after_ack),
    }


def write_backlog(a_dir: Path, sizes: Sizes, rng: random.Random) -> tuple[list[bytes], float]:
    """The backlog, written straight into A's replica (A's daemon is stopped);
    returns the new entries' Y updates and the write time."""
    with Replica.open(a_dir, durability="off") as r:
        before = r.version_vector(EVENT)
        t0 = time.perf_counter()
        for i in range(sizes.backlog):
            r.check_in(EVENT, f"P{rng.randrange(sizes.participants):06d}")
            if (i + 1) % 20_000 == 0:
                log(f"backlog: {i + 1}/{sizes.backlog} check-ins written at A")
        r.store.flush()
        elapsed = time.perf_counter() - t0
        updates = [e.update for e in r.export_since(EVENT, before)]
    if len(updates) != sizes.backlog:
        raise RuntimeError(f"expected {sizes.backlog} new entries at A, found {len(updates)}")
    return updates, elapsed


def raw_baseline(b_state: bytes, updates: list[bytes]) -> dict[str, Any]:
    """Raw pycrdt: (1) apply each update to a Doc holding B's prior state;
    (2) encode the whole difference once (``get_update(state vector)``) and
    apply it in one call to another such Doc."""
    receiver = Doc()
    receiver.apply_update(b_state)
    t0 = time.perf_counter()
    for u in updates:
        receiver.apply_update(u)
    per_update = time.perf_counter() - t0
    fresh = Doc()
    fresh.apply_update(b_state)
    sv = fresh.get_state()
    t0 = time.perf_counter()
    diff = receiver.get_update(sv)
    encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh.apply_update(diff)
    apply_once = time.perf_counter() - t0
    return {
        "updates": len(updates),
        "update_bytes": sum(len(u) for u in updates),
        "apply_each_s": per_update,
        "encode_diff_s": encode,
        "apply_diff_s": apply_once,
        "encode_apply_diff_s": encode + apply_once,
        "diff_bytes": len(diff),
    }


def run(args: argparse.Namespace, sizes: Sizes, root: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    log("creating the organisation and enrolling A (an admin: it creates the event) and gate B")
    org = init_org(root / "org", "Bench Events")
    a_dir, b_dir = enrolled(root, org, "gate-a", Role.ADMIN), enrolled(root, org, "gate-b")
    with Replica.open(a_dir) as r:
        r.create_event(EVENT, "Benchmark")
        r.import_participants(
            EVENT, [{"id": f"P{i:06d}", "name": f"N{i}"} for i in range(sizes.participants)]
        )
    a_port = free_port()  # fixed, so that B's static peer is right after A restarts
    a_cfg = write_config(root / "a.toml", a_dir, f"{HOST}:{a_port}", [])
    b_cfg = write_config(root / "b.toml", b_dir, f"{HOST}:0", [f"{HOST}:{a_port}"])
    a_sock, b_sock = a_dir / "control.sock", b_dir / "control.sock"
    prof = (lambda name: args.out.parent / f"gate_sync_{name}.prof") if args.profile else None
    gates: list[Gate] = []
    results: dict[str, Any] = {"sizes": asdict(sizes)}
    latency_ids: list[str] = []
    try:
        # 1. latency
        log("phase 1: starting A and B")
        a = start_a(a_cfg, root, prof("latency_a") if prof else None)
        gates.append(a)
        b, obs = start_b(b_cfg, root, prof("latency_b") if prof else None)
        gates.append(b)
        wait_participants(b_sock, b, sizes.participants)
        log(f"latency: {sizes.warmup} warm-up + {sizes.checkins} check-ins through A's socket")
        results["latency"] = measure_latency(a_sock, obs, sizes, rng, latency_ids)
        results["latency"]["peers_at_b"] = status_of(b_sock)["peers"]
        b_scans_before = scans_at(b_sock)
        for g in (b, a):
            g.stop()
        gates.clear()

        # 2. backlog
        log(f"phase 2: B is down; writing {sizes.backlog} check-ins into A's replica")
        with Replica.open(b_dir, read_only=True) as r:
            b_state = r.event(EVENT).doc.doc.get_update()
        updates, write_s = write_backlog(a_dir, sizes, rng)
        log("backlog: raw pycrdt baseline")
        baseline = raw_baseline(b_state, updates)
        del updates
        target_scans = b_scans_before + sizes.backlog
        log("backlog: starting A, then B; waiting for B to hold every scan")
        a = start_a(a_cfg, root, prof("backlog_a") if prof else None)
        gates.append(a)
        t_launch = time.monotonic_ns()
        b, obs = start_b(b_cfg, root, prof("backlog_b") if prof else None)
        gates.append(b)
        done = obs.wait_scans(target_scans, BACKLOG_TIMEOUT_S)
        if done is None:
            raise RuntimeError(f"B did not catch up in {BACKLOG_TIMEOUT_S} s: {obs.scans} scans")
        while obs.ready_ns is None and obs.pump(1.0):
            pass
        peer_ns = obs.peer_ns or t_launch
        batches = [x for x in obs.applied if x[0] <= done]
        results["backlog"] = {
            "checkins": sizes.backlog,
            "write_at_a_s": write_s,
            "b_scans_before": b_scans_before,
            "b_scans_after": obs.scans,
            "launch_to_synced_s": (done - t_launch) / 1e9,
            "ready_to_synced_s": (done - (obs.ready_ns or t_launch)) / 1e9,
            "connected_to_synced_s": (done - peer_ns) / 1e9,
            "first_apply_after_connect_s": (batches[0][0] - peer_ns) / 1e9 if batches else None,
            "applied_batches": len(batches),
            "entries_in_batches": sum(x[2] for x in batches),
            "raw": baseline,
        }
        results["backlog"]["a_status"] = scans_at(a_sock)
        for g in (b, a):
            g.stop()
        gates.clear()
    finally:
        for g in gates:
            g.kill()

    log("verifying B's replica")
    with Replica.open(b_dir, read_only=True) as rb, Replica.open(a_dir, read_only=True) as ra:
        b_scans = rb.event(EVENT).doc.scans
        missing = sum(1 for s in latency_ids if s not in b_scans)
        results["verify"] = {
            "a_scans": len(ra.event(EVENT).doc.scans),
            "b_scans": len(b_scans),
            "latency_scan_ids_missing_at_b": missing,
            "identical_scan_ids": set(ra.event(EVENT).doc.scans) == set(b_scans),
        }
    if prof:
        results["profiles"] = {
            name: {
                "file": str(prof(name)),
                **{s: top_functions(prof(name), s, args.top) for s in ("cumulative", "tottime")},
            }
            for name in ("latency_a", "latency_b", "backlog_a", "backlog_b")
            if prof(name).exists()
        }
    return results


# -- report -------------------------------------------------------------------------------


def rows_for(res: dict[str, Any]) -> list[Row]:
    lat, back = res["latency"], res["backlog"]
    e2e, ack = lat["a_to_b_ms"], lat["a_ack_ms"]
    rows = []
    for q, limit in (("p50", 20.0), ("p99", 100.0), ("max", None)):
        row = Row(f"1 check-in A -> visible at B {q}", e2e[q], ack[q], "ms")
        if limit is not None:
            row.target, row.passed = f"<= {limit:g} ms", e2e[q] <= limit
        rows.append(row)
    raw = back["raw"]
    n = back["checkins"]
    rows.append(
        Row(
            f"2 backlog {n:,} synced after reconnect",
            back["connected_to_synced_s"],
            raw["apply_each_s"],
            "s",
            "<= 10 s",
            back["connected_to_synced_s"] <= 10.0,
        )
    )
    rows.append(
        Row(
            "2 backlog vs encode+apply one diff",
            back["connected_to_synced_s"],
            raw["encode_apply_diff_s"],
            "s",
        )
    )
    rows.append(Row("2 backlog from B's launch", back["launch_to_synced_s"], None, "s"))
    return rows


def print_details(res: dict[str, Any]) -> None:
    lat, back, ver = res["latency"], res["backlog"], res["verify"]
    e, a, s = lat["a_to_b_ms"], lat["a_ack_ms"], lat["ack_to_b_ms"]
    print(
        f"1: {lat['checkins']} check-ins (after {lat['warmup']} warm-up), one at a time, each sent "
        f"to A's control socket and timed until B applied it; {lat['timeouts']} not at B within "
        f"{lat['timeout_s']:g} s"
    )
    for label, d in (("A -> B visible", e), ("A ack (baseline)", a), ("A ack -> B", s)):
        print(
            f"   {label:<17} mean {d['mean']:.2f}  p50 {d['p50']:.2f}  p90 {d['p90']:.2f}  "
            f"p99 {d['p99']:.2f}  max {d['max']:.2f} ms"
        )
    raw = back["raw"]
    print(
        f"2: {back['checkins']:,} check-ins written at A (durability off) in "
        f"{back['write_at_a_s']:.2f} s while B was down; B then had all "
        f"{back['b_scans_after']:,} scans {back['connected_to_synced_s']:.3f} s after its link "
        f"to A was authenticated ({back['launch_to_synced_s']:.3f} s after its launch, "
        f"{back['ready_to_synced_s']:.3f} s after it listened); first batch applied "
        f"{back['first_apply_after_connect_s']:.3f} s after connect; "
        f"{back['applied_batches']} applied batches"
    )
    print(
        f"   raw pycrdt: apply each of the {raw['updates']:,} updates ({raw['update_bytes']:,} B) "
        f"{raw['apply_each_s'] * 1e3:.1f} ms; encode the diff once "
        f"{raw['encode_diff_s'] * 1e3:.2f} ms "
        f"({raw['diff_bytes']:,} B) + apply it {raw['apply_diff_s'] * 1e3:.2f} ms"
    )
    print(
        f"verify: A {ver['a_scans']:,} scans, B {ver['b_scans']:,}, identical scan ids: "
        f"{ver['identical_scan_ids']}, latency scans missing at B: "
        f"{ver['latency_scan_ids_missing_at_b']}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--checkins", type=int, help="latency check-ins (default 500, quick 50)")
    parser.add_argument("--backlog", type=int, help="backlog size (default 100000, quick 5000)")
    parser.add_argument("--profile", action="store_true", help="cProfile both daemons")
    parser.add_argument("--top", type=int, default=15, help="functions per profile listing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tmp-dir", type=Path, help="where the gates' data dirs are created")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "gate_sync.json")
    parser.add_argument("--observer", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--observer-profile", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.observer:
        return observer_main(args.observer, args.observer_profile)
    sizes = QUICK if args.quick else FULL
    if args.checkins or args.backlog:
        sizes = Sizes(
            participants=sizes.participants,
            warmup=sizes.warmup,
            checkins=args.checkins or sizes.checkins,
            backlog=args.backlog or sizes.backlog,
        )
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="headcount-gate-sync-", dir=args.tmp_dir) as tmp:
        root = Path(tmp)
        info = machine_info(root)
        results = run(args, sizes, root)
        info["loadavg_end"] = os.getloadavg()
    elapsed = time.perf_counter() - started

    rows = rows_for(results)
    mode = "quick" if args.quick else "full"
    print_header(f"gate_sync ({mode}), two gate daemons on {HOST}", info, asdict(sizes))
    print(
        "baselines: 1 = A's own durable check-in round trip through its control socket (same "
        "requests); 2 = raw pycrdt apply of the same updates, one call each"
    )
    print_table(rows)
    print()
    print_details(results)
    if args.quick:
        print("note: --quick sizes are below the targets' sizes; verdicts are indicative only")
    if args.profile:
        print("note: --profile runs both daemons under cProfile: the figures are inflated")
    for name, entry in results.get("profiles", {}).items():
        for sort in ("cumulative", "tottime"):
            print(f"\nprofile {name}, top {args.top} by {sort} ({entry['file']}):")
            print(entry[sort])
    print(f"\ntotal {elapsed:.1f} s; results in {args.out}")
    write_json(args.out, info, asdict(sizes), rows, mode=mode, elapsed_s=elapsed, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
