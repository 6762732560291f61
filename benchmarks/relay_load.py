"""Relay under load: N simulated gates sync through one relay process over wss.

The relay runs in its own process (the real :class:`headcount.relay.server.Relay`
with its replica on disk). The gates are lightweight but speak the real
protocol: each has its own Ed25519 key and enrolled gate certificate (mutual
TLS, device id checked by the relay), an in-memory signed log
(:class:`headcount.protocol.memlog.MemLog`, real verification), a real
:class:`headcount.protocol.session.Session` driven by
:func:`headcount.net.websocket.dial`, and an :class:`EventDoc` producing real Y
check-in updates, so the relay's replica verifies and applies every entry.
Gates are spread over events (``--gates-per-event``, one venue per event):
each entry fans out to the other gates of its event.

Reported: aggregate entries/s acknowledged by the relay (target 2,000/s held
for ``--duration``), fan-out latency p50/p99 from an append to its arrival at
observer gates (target p99 <= 250 ms), relay CPU and RSS per connection
(target <= 2 MB), and relay RSS after all gates disconnect vs before; beside
each, the same figure of pycrdt-websocket under the same load
(relay_load_ybaseline.py).

Where fan-out latency is measured, and how that differs from the baseline's.
Both start at the sender's wall clock in whole milliseconds, read just before
its Y transaction (ours: the wall part of the entry's HLC; baseline: the
``ts_ms`` field of the scan string), and end at ``time.time()`` in an observer
(the first gate of the first ``--observers`` events of each loader), for every
entry of another gate of its event. In between:

* ours: the gate hashes the entry into its log and pushes it over its wss link
  (mutual TLS), its head signed as it is sent, as long as fewer than
  ``SessionConfig.window`` (4) Segments messages of the event are
  unacknowledged on that link (a full window waits for the relay's ``Ack``,
  which the relay sends only after its durable write); the relay checks the
  signature (in a worker thread), hash chain and scope and writes the entry to
  SQLite (lazy apply: its Y document is updated later, off this path); it
  forwards the entry to the other gates only once that write is committed and
  fsynced (group commit), again within a window of 4 unacknowledged messages
  per link; the time is read when the observer's ``MemLog`` has verified the
  signature and chain and appended the entry. The observer applies no Y update.
* baseline: the client sends one y-sync update message over its wss link
  (server-only TLS, no acks, no flow control); the pycrdt-websocket server
  applies it to the room's in-memory ``Doc`` (nothing is written to disk) and
  then sends it to every client of the room; the time is read in the
  observer client's ``Array`` observer, after its own pycrdt apply.

So ours pays an fsync, a signature (made at the sender, checked at the relay
and the observer) and ack-gated windows that the baseline does not; the
baseline pays a Y apply at the server and at the observer that ours does not
on this path. The same note is printed under the table.

    python benchmarks/relay_load.py --quick
    python benchmarks/relay_load.py --gates 1000 --rate 2000 --duration 60

Progress goes to stderr; the header, table and notes to stdout; JSON to
benchmarks/out/ (see _common.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from _common import (
    OUT_DIR,
    Row,
    distribution,
    machine_info,
    percentile,
    print_header,
    print_table,
    write_json,
)

SCRIPT = Path(__file__).resolve()
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 120.0
TICK_S = 0.05
TARGET_RATE = 2000.0
TARGET_P99_MS = 250.0
TARGET_MB_PER_CONN = 2.0


def log(msg: str) -> None:
    print(f"[relay_load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def gate_key(seed: str, i: int):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest())


def event_of(i: int, per_event: int) -> str:
    return f"load-{i // per_event:04d}"


# -- setup (parent) -------------------------------------------------------------


def setup(work: Path, gates: int, per_event: int, seed: str) -> dict:
    from cryptography.hazmat.primitives import serialization

    from headcount import Replica, Role
    from headcount.core.identity import device_id_for
    from headcount.pki.device import install_certificate
    from headcount.pki.org import enroll, init_org

    org = init_org(work / "org", "Load Test")
    Replica.init(work / "relay", role=Role.RELAY, name="relay")
    with Replica.open(work / "relay") as relay:
        cert = enroll(org, relay.identity.public_key_raw, relay.device_id, Role.RELAY, ["*"])
        install_certificate(
            work / "relay", cert.public_bytes(serialization.Encoding.PEM), org.certificate_pem
        )
        relay_id = relay.device_id
    gdir = work / "gates"
    gdir.mkdir()
    (work / "org.crt").write_bytes(org.certificate_pem)
    directory = {}
    for i in range(gates):
        key = gate_key(seed, i)
        pub = key.public_key()
        dev = device_id_for(pub)
        directory[dev] = pub.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        ).hex()
        cert = enroll(org, pub, dev, Role.GATE, [event_of(i, per_event)], name=f"g{i}")
        (gdir / f"{i}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (gdir / f"{i}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    (work / "directory.json").write_text(json.dumps(directory))
    return {"relay_id": relay_id}


# -- the relay child ------------------------------------------------------------


def _trace_relay(relay, path: str) -> None:
    """Debug aid: per received entry, the delay from its append (HLC wall
    time) to the relay's ingest, and the loop lag; written at exit."""
    import atexit

    from headcount.core.hlc import wall_ms

    delays: list[float] = []
    ingest = relay.node.log.ingest

    def traced(event, segments):
        now = time.time() * 1000
        delays.extend(now - wall_ms(e.hlc) for s in segments for e in s.entries)
        return ingest(event, segments)

    relay.node.log.ingest = traced
    lags: list[float] = []
    big: list = []

    async def lag() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t - 0.01) * 1000)
            if lags[-1] > 100:
                big.append((round(time.time() % 1000, 2), round(lags[-1])))

    relay._trace_task = asyncio.ensure_future(lag())

    def dump() -> None:
        if delays and lags:
            Path(path).write_text(
                json.dumps(
                    {
                        "n": len(delays),
                        "p50": percentile(delays, 50),
                        "p99": percentile(delays, 99),
                        "commits": relay.node.group.commits,
                        "lag_p50": percentile(lags, 50),
                        "lag_p99": percentile(lags, 99),
                        "lag_max": max(lags),
                        "big": big,
                    }
                )
            )

    atexit.register(dump)


def relay_child(work: Path, max_connections: int) -> None:
    from headcount.relay.server import Relay, load_relay_config

    async def main() -> None:
        config = load_relay_config(None, work / "relay")
        config.https = ("127.0.0.1", 0)
        config.ops = ("127.0.0.1", 0)  # metrics: relay.ops_port
        config.max_connections = max_connections
        relay = Relay(config)
        trace = os.environ.get("RELAY_LOAD_TRACE")
        if trace:
            _trace_relay(relay, trace)
        ready = asyncio.Event()
        task = asyncio.create_task(relay.run(ready))
        await asyncio.wait_for(ready.wait(), START_TIMEOUT_S)
        print(f"port {relay.https_port}", flush=True)
        if os.environ.get("RELAY_LOAD_PRELOAD"):
            # the memory baseline: the same data in memory, never a connection
            from headcount.net.node import release_memory

            for event in relay.replica.events():
                relay.replica.event(event)
            release_memory()
            print("loaded", flush=True)
        await task

    profile = os.environ.get("RELAY_LOAD_PROFILE")
    if not profile:
        asyncio.run(main())
        return
    import cProfile

    cProfile.runctx("asyncio.run(main())", globals(), {"asyncio": asyncio, "main": main}, profile)


# -- a load-generator child ------------------------------------------------------


async def paced(clients: list, rate: float, duration: float) -> tuple[float, int]:
    """``await client.append()`` at ``rate`` a second in all, round-robin over
    ``clients``, for ``duration`` seconds, paced by the clock (fall behind and
    the next tick catches up). Returns the time taken and the ticks that overran."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    k = 0
    lag_ticks = 0
    while (now := loop.time()) - start < duration:
        for _ in range(int(rate * (now - start + TICK_S)) - k):
            client = clients[k % len(clients)]
            k += 1
            await client.append()
        spent = loop.time() - now
        if spent > TICK_S:
            lag_ticks += 1
        await asyncio.sleep(max(0.0, TICK_S - spent))
    return loop.time() - start, lag_ticks


def load_child(args: argparse.Namespace) -> None:
    asyncio.run(_load_main(args))


async def _load_main(args: argparse.Namespace) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: F401

    from headcount.core.eventdoc import EventDoc
    from headcount.core.hlc import HybridClock, wall_ms
    from headcount.core.identity import device_id_for
    from headcount.core.model import Method, Scan, ScanKind
    from headcount.net.websocket import dial
    from headcount.protocol.memlog import MemLog
    from headcount.protocol.session import DEFAULT_ACK_DELAY, Session, SessionConfig
    from headcount.sim.memo import MemoVerifier

    work = Path(args.work)
    directory = {
        d: bytes.fromhex(k) for d, k in json.loads((work / "directory.json").read_text()).items()
    }
    url = f"wss://127.0.0.1:{args.port}/sync"
    lo, hi = args.lo, args.hi
    per_event = args.gates_per_event
    observers = set(range(lo, min(hi, lo + args.observers * per_event), per_event))
    latencies: list[float] = []
    shared_verify = MemoVerifier()
    loop = asyncio.get_running_loop()
    measuring = {"on": False}

    class Gate:
        def __init__(self, i: int) -> None:
            key = gate_key(args.seed, i)
            self.i = i
            self.device = device_id_for(key.public_key())
            self.event = event_of(i, per_event)
            if i in observers:  # the full receive path, real verification
                self.log = MemLog(self.device, key, directory, on_apply=self._observe)
            else:
                # Many simulated gates share this process: each distinct
                # signature is verified once, for real, and repeats come from
                # the cache (as the simulator does; a forgery is a miss).
                self.log = MemLog(self.device, key, directory, verify=shared_verify)
            self.doc = EventDoc(self.event, self.device, "gate", HybridClock())
            self.peer = None
            self.task = None
            self.appended = 0
            self.appended_at_start = 0
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.check_hostname = False
            ctx.load_cert_chain(work / "gates" / f"{i}.crt", work / "gates" / f"{i}.key")
            ctx.load_verify_locations(work / "org.crt")
            self.ctx = ctx

        def _observe(self, entry) -> None:
            if entry.device != self.device and measuring["on"]:
                latencies.append(time.time() * 1000 - wall_ms(entry.hlc))

        async def connect(self) -> None:
            def new_session(der: bytes | None) -> Session:
                # as a gate daemon's sessions (its default [sync] ack_delay)
                config = SessionConfig(ack_delay=DEFAULT_ACK_DELAY)
                return Session(self.log, time.monotonic(), config)

            self.peer = await dial(url, new_session, ssl_context=self.ctx)
            self.task = asyncio.create_task(self.peer.run())

        def acked(self) -> int:
            best = 0
            for (_peer, ev), vv in self.log.acks.items():
                if ev == self.event:
                    best = max(best, vv.get(self.device, 0))
            return best

        async def append(self) -> None:
            now = int(time.time() * 1000)

            def body(dot: str, hlc: int) -> None:
                scan = Scan(
                    str(uuid.uuid4()),
                    f"p{self.appended % 500}",
                    ScanKind.IN,
                    now,
                    hlc,
                    f"g{self.i}",
                    Method.QR,
                    self.device,
                )
                self.doc.write_scan(scan)

            entry = self.doc.transact(now, body)
            self.log.append(self.event, entry.update, entry.hlc)
            self.appended += 1
            if self.peer is not None:
                await self.peer.notify(self.event)

    gates = [Gate(i) for i in range(lo, hi)]
    out: dict = {"lo": lo, "hi": hi}
    try:
        sem = asyncio.Semaphore(32)

        async def connect(g: Gate) -> None:
            async with sem:
                for attempt in range(5):
                    try:
                        await g.connect()
                        return
                    except (OSError, TimeoutError, ssl.SSLError) as exc:
                        if attempt == 4:
                            raise
                        log(f"gate {g.i}: connect failed ({exc!r}); retrying")
                        await asyncio.sleep(0.5)
                    except Exception as exc:  # aiohttp.ClientError
                        if attempt == 4:
                            raise
                        log(f"gate {g.i}: connect failed ({exc!r}); retrying")
                        await asyncio.sleep(0.5)

        t0 = loop.time()
        await asyncio.wait_for(asyncio.gather(*(connect(g) for g in gates)), CONNECT_TIMEOUT_S)
        out["connect_s"] = loop.time() - t0
        print(json.dumps({"connected": len(gates)}), flush=True)
        # wait for the go signal on stdin
        await loop.run_in_executor(None, sys.stdin.readline)
        rate = args.rate  # this process's share, entries/s
        measuring["on"] = True
        for g in gates:
            g.appended_at_start = g.appended
        elapsed, lag_ticks = await paced(gates, rate, args.duration)
        # drain: wait up to 10 s for the relay to acknowledge everything appended
        drain_deadline = loop.time() + 10
        while loop.time() < drain_deadline:
            if all(g.acked() >= g.appended for g in gates):
                break
            await asyncio.sleep(0.1)
        measuring["on"] = False
        out.update(
            elapsed_s=elapsed,
            appended=sum(g.appended - g.appended_at_start for g in gates),
            acked=sum(g.acked() - g.appended_at_start for g in gates),
            unacked=sum(g.appended - g.acked() for g in gates),
            lag_ticks=lag_ticks,
            latencies_ms=latencies,
            closed_early=sum(1 for g in gates if g.peer is None or g.peer.closed.is_set()),
            close_reasons=sorted(
                {str(g.peer.close_reason) for g in gates if g.peer and g.peer.closed.is_set()}
            )[:5],
        )
        print(json.dumps({"measured": True}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)  # disconnect signal
    finally:
        for g in gates:
            if g.peer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(g.peer.close(), 2)
        tasks = [g.task for g in gates if g.task is not None]
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    print(json.dumps({"result": out}), flush=True)


# -- parent: process control and /proc --------------------------------------------


def proc_stats(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return cpu, rss


def read_json_line(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{what}: child exited with {proc.wait()}")
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(line)


def stop(proc: subprocess.Popen | None) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def data_baseline(work: Path, max_connections: int) -> float:
    """RSS (MB) of a relay on the run's data directory that loaded every
    event and never had a connection: what "back to baseline" means once
    the relay holds the run's data."""
    env = {**os.environ, "RELAY_LOAD_PRELOAD": "1"}
    env.pop("RELAY_LOAD_PROFILE", None)
    env.pop("RELAY_LOAD_TRACE", None)
    relay = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--_relay", str(work), str(max_connections)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for expected in ("port ", "loaded"):
            ready, _, _ = select.select([relay.stdout], [], [], START_TIMEOUT_S)
            line = relay.stdout.readline() if ready else ""
            if not line.startswith(expected):
                raise RuntimeError(f"baseline relay did not start: {line!r}")
        time.sleep(2.0)
        return proc_stats(relay.pid)[1]
    finally:
        stop(relay)


def loader_bounds(gates: int, procs: int, per_event: int) -> list[tuple[int, int]]:
    """The loaders' gate ranges (``lo``, ``hi``): an event's gates in one process."""
    per = -(-gates // procs)
    per -= per % per_event or 0
    per = max(per, per_event)
    bounds = []
    lo = 0
    for p in range(procs):
        hi = gates if p == procs - 1 else min(gates, lo + per)
        if lo < hi:
            bounds.append((lo, hi))
        lo = hi
    return bounds


def start_loaders(script: Path, args: argparse.Namespace, work: Path, port: int) -> list:
    """One load-generator child of ``script`` per range of gates."""
    loaders = []
    for lo, hi in loader_bounds(args.gates, args.procs, args.gates_per_event):
        share = args.rate * (hi - lo) / args.gates
        flags = {
            "--work": work, "--port": port, "--lo": lo, "--hi": hi, "--rate": share,
            "--duration": args.duration, "--gates-per-event": args.gates_per_event,
            "--observers": args.observers, "--seed": args.seed,
        }  # fmt: skip
        command = [sys.executable, str(script), "--_load"]
        for flag, value in flags.items():
            command += [flag, str(value)]
        loaders.append(
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    return loaders


def drive_load(
    pid: int,
    loaders: list,
    args: argparse.Namespace,
    *,
    name: str,
    measure_timeout: float = 60.0,
    before_bye: Callable[[], None] | None = None,
) -> dict:
    """Run the load through connected ``loaders`` against the server ``pid``:
    wait for the connections, go, watch the server's CPU and RSS for
    ``--duration``, collect the loaders' measurements, disconnect them and
    measure the server once more. Returns the raw figures."""
    out: dict = {}
    cpu0, out["rss_before"] = proc_stats(pid)
    t = time.monotonic()
    for p in loaders:
        read_json_line(p, CONNECT_TIMEOUT_S + 30, "connection report")
    out["connect_s"] = time.monotonic() - t
    time.sleep(2.0)  # let the initial summaries settle
    cpu1, out["rss_connected"] = proc_stats(pid)
    out["cpu_connect_s"] = cpu1 - cpu0
    log(f"{name}: {args.gates} gates connected in {out['connect_s']:.1f} s; "
        f"RSS {out['rss_connected']:.0f} MB")  # fmt: skip
    for p in loaders:
        p.stdin.write("go\n")
        p.stdin.flush()
    t = time.monotonic()
    rss_peak = out["rss_connected"]
    loader_cpu_start = [proc_stats(p.pid)[0] for p in loaders]
    while time.monotonic() - t < args.duration:
        time.sleep(1.0)
        _, rss = proc_stats(pid)
        rss_peak = max(rss_peak, rss)
        if int(time.monotonic() - t) % 10 == 0:
            log(f"  {name} t={time.monotonic() - t:.0f}s RSS {rss:.0f} MB")
    cpu_end, _ = proc_stats(pid)
    loader_cpu_end = [proc_stats(p.pid)[0] for p in loaders]
    load_wall = time.monotonic() - t
    for p in loaders:
        read_json_line(p, measure_timeout, "measurement")
    out["cpu_total_s"], out["rss_loaded"] = proc_stats(pid)
    out["rss_peak"] = max(rss_peak, out["rss_loaded"])
    if before_bye is not None:
        before_bye()
    for p in loaders:
        p.stdin.write("bye\n")
        p.stdin.flush()
    out["results"] = [read_json_line(p, 60, "result")["result"] for p in loaders]
    for p in loaders:
        p.wait(timeout=STOP_TIMEOUT_S)
    time.sleep(3.0)
    _, out["rss_after"] = proc_stats(pid)
    out["cpu_pct"] = 100 * (cpu_end - cpu1) / load_wall
    out["loader_cpu_pct"] = [
        100 * (b - a) / load_wall for a, b in zip(loader_cpu_start, loader_cpu_end, strict=True)
    ]
    return out


def latency_summary(results: list[dict], gates: int, load: dict) -> dict:
    """The figures both servers report, from the loaders' results and ``drive_load``'s."""
    lat = distribution(x for r in results for x in r["latencies_ms"])
    return {
        "gates": gates,
        "connect_s": load["connect_s"],
        "appended": sum(r["appended"] for r in results),
        "loader_lag_ticks": sum(r["lag_ticks"] for r in results),
        "closed_early": sum(r["closed_early"] for r in results),
        "latency_samples": lat["n"],
        "p50_ms": lat.get("p50"),
        "p99_ms": lat.get("p99"),
        "max_ms": lat.get("max"),
        "mean_ms": lat.get("mean"),
        "relay_cpu_pct": load["cpu_pct"],
        "loader_cpu_pct": load["loader_cpu_pct"],
        "relay_cpu_connect_s": load["cpu_connect_s"],
        "relay_cpu_total_s": load["cpu_total_s"],
        "rss_before_mb": load["rss_before"],
        "rss_connected_mb": load["rss_connected"],
        "rss_peak_mb": load["rss_peak"],
        "rss_loaded_mb": load["rss_loaded"],
        "rss_after_mb": load["rss_after"],
        "mb_per_conn_idle": (load["rss_connected"] - load["rss_before"]) / gates,
        "mb_per_conn_peak": (load["rss_peak"] - load["rss_before"]) / gates,
    }


def run_ours(args: argparse.Namespace, work: Path) -> dict:
    t = time.monotonic()
    log(f"enrolling {args.gates} gate certificates ...")
    info = setup(work, args.gates, args.gates_per_event, args.seed)
    log(f"enrolled in {time.monotonic() - t:.1f} s")
    relay = None
    loaders: list[subprocess.Popen] = []
    try:
        relay = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--_relay", str(work), str(args.gates + 16)],
            stdout=subprocess.PIPE,
            text=True,
        )
        ready, _, _ = select.select([relay.stdout], [], [], START_TIMEOUT_S)
        line = relay.stdout.readline() if ready else ""
        if not line.startswith("port "):
            raise RuntimeError(f"relay did not start: {line!r}")
        port = int(line.split()[1])
        log(f"relay pid {relay.pid} on port {port}")
        time.sleep(1.0)
        loaders = start_loaders(SCRIPT, args, work, port)
        load = drive_load(relay.pid, loaders, args, name="relay")
    finally:
        for p in loaders:
            stop(p)
        stop(relay)
    results = load["results"]
    elapsed = max(r["elapsed_s"] for r in results)
    acked = sum(r["acked"] for r in results)
    return {
        "relay_id": info["relay_id"],
        **latency_summary(results, args.gates, load),
        "acked": acked,
        "unacked_after_drain": sum(r["unacked"] for r in results),
        "rate_target": args.rate,
        "rate_achieved": acked / elapsed,
        "close_reasons": sorted({c for r in results for c in r["close_reasons"]}),
        "rss_data_mb": data_baseline(work, args.gates + 16),
    }


def rows_for(ours: dict | None, base: dict | None) -> list[Row]:
    """The table: ours (value) beside the pycrdt-websocket baseline (baseline);
    either may be None (not run). Targets are judged on ours only."""

    def pair(key: str) -> tuple[float | None, float | None]:
        return (ours or {}).get(key), (base or {}).get(key)

    def within(value: float | None, limit: float | None) -> bool | None:
        if ours is None:
            return None  # nothing of ours to judge
        return value is not None and limit is not None and value <= limit

    rate, p99 = pair("rate_achieved"), pair("p99_ms")
    per_conn, after = pair("mb_per_conn_peak"), pair("rss_after_mb")
    back = None if ours is None else ours["rss_data_mb"] * 1.10 + 5
    rate_ok = None if ours is None else (rate[0] or 0) >= TARGET_RATE * 0.98
    return [
        Row("aggregate entries/s (ours: acked; baseline: applied)", *rate, "/s",
            f">= {TARGET_RATE:,.0f}/s (2% slack)", rate_ok),
        Row("fan-out latency p50", *pair("p50_ms"), "ms"),
        Row("fan-out latency p99", *p99, "ms", f"<= {TARGET_P99_MS:.0f} ms",
            within(p99[0], TARGET_P99_MS)),
        Row("fan-out latency max", *pair("max_ms"), "ms"),
        Row("relay CPU during load, % of 1 core", *pair("relay_cpu_pct"), "%"),
        Row("relay RSS per connection, peak", *per_conn, "MB", f"<= {TARGET_MB_PER_CONN} MB",
            within(per_conn[0], TARGET_MB_PER_CONN)),
        Row("relay RSS per connection, idle", *pair("mb_per_conn_idle"), "MB"),
        Row("relay RSS before connections", *pair("rss_before_mb"), "MB"),
        Row("relay RSS all connected", *pair("rss_connected_mb"), "MB"),
        Row("relay RSS peak", *pair("rss_peak_mb"), "MB"),
        Row("relay RSS after all disconnected", *after, "MB",
            "" if back is None else f"<= {back:,.0f} MB", within(after[0], back)),
        Row("relay RSS, same data loaded, never connected", *pair("rss_data_mb"), "MB"),
    ]  # fmt: skip


LATENCY_NOTE = """\
fan-out latency, where it is measured: from the sender's wall clock (whole ms, read just
before its Y transaction) to time.time() at an observer (the first gate of the first
--observers events of each loader; the observer's own entries are not counted).
  ours:     the gate's append (Y transaction, entry hashed into its log, head signed when
            sent) -> its wss link (mutual TLS; at most {window} unacknowledged Segments messages
            per event: a full window waits for the relay's Ack, which the relay sends only
            after its durable write) -> the relay checks signature (worker thread), hash chain
            and scope and writes the entry to SQLite (its Y document is updated later, off
            this path) -> forwarded only once that write is committed and fsynced (group
            commit), again within a window of {window} per observer link -> taken when the
            observer gate's log has verified the signature and chain and appended the entry
            (no Y apply at the observer: MemLog keeps entries only).
  baseline: the client's append (Y transaction, one update message) -> its wss link
            (server-only TLS, no acks, no flow control) -> the pycrdt-websocket server applies
            the update to the room's in-memory Doc (nothing written to disk) and sends it to
            every client of the room -> taken in the observer client's Array observer, after
            its own pycrdt apply of the update.
  So ours includes an fsync, a signature made at the sender and checked at the relay and
  at the observer, and ack-gated windows, none of which the baseline has; the baseline
  includes a Y apply at the server and at the observer that ours does not have on this
  path."""


def load_sizes(args: argparse.Namespace) -> dict:
    """The load's sizes, as the header prints them (ours and the baseline's)."""
    keys = ("gates", "rate", "duration", "gates_per_event", "observers", "procs")
    return {k: getattr(args, k) for k in keys}


def print_report(args: argparse.Namespace, info: dict, ours: dict | None, base: dict | None,
                 why: str) -> None:  # fmt: skip
    """The header, the table and the notes under it."""
    import relay_load_ybaseline as yb  # imports this module (as relay_load)

    print_header(
        "relay_load: one relay under many gates, beside pycrdt-websocket", info, load_sizes(args)
    )
    print_table(rows_for(ours, base))
    if base is None:
        print(f"baseline (pycrdt-websocket): {why}")
    print(
        "The baseline (stock pycrdt-websocket WebsocketServer, see relay_load_ybaseline.py) is "
        "memory-only, server-only TLS, with no acks, signatures or verification; its entries/s "
        "are the scans its rooms applied. Ours fsyncs every batch to SQLite, does mutual TLS "
        "and verifies every entry. RSS after disconnect: back to baseline means at most the "
        "RSS of a relay holding the same data that never had a connection, + 10% + 5 MB."
    )
    from headcount.protocol.session import SessionConfig

    print(LATENCY_NOTE.format(window=SessionConfig().window))
    if ours is not None:
        print(
            f"\nours: {ours['gates']} gates, {ours['appended']:,} entries appended, "
            f"{ours['acked']:,} acknowledged by the relay, "
            f"{ours['unacked_after_drain']} unacknowledged after 10 s drain, "
            f"{ours['latency_samples']:,} latency samples, "
            f"{ours['closed_early']} connections closed early {ours['close_reasons']}, "
            f"{ours['loader_lag_ticks']} load-generator ticks overran, load-generator CPU "
            + ", ".join(f"{c:.0f}%" for c in ours["loader_cpu_pct"])
        )
    if base is not None:
        print("\nbaseline: " + yb.summary(base))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gates", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=TARGET_RATE, help="aggregate entries/s")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--gates-per-event", type=int, default=10)
    ap.add_argument("--observers", type=int, default=2, help="observer gates per loader")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--seed", default="relay-load")
    ap.add_argument("--quick", action="store_true", help="50 gates, 10 s")
    which = ap.add_mutually_exclusive_group()
    which.add_argument(
        "--no-baseline", action="store_true", help="skip the pycrdt-websocket baseline"
    )
    which.add_argument(
        "--baseline-only", action="store_true", help="run only the pycrdt-websocket baseline"
    )
    ap.add_argument("--_relay", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_load", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--lo", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--hi", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._relay:
        relay_child(Path(args._relay[0]), int(args._relay[1]))
        return 0
    if args._load:
        load_child(args)
        return 0
    if args.quick:
        args.gates, args.duration = 50, 10.0
    if args.gates < 1 or args.gates > 5000 or not 0 < args.duration <= 600:
        ap.error("--gates must be 1..5000 and --duration 0..600 s")
    result: dict | None = None
    base: dict | None = None
    why = "skipped (--no-baseline)"
    with tempfile.TemporaryDirectory(prefix="relay_load_") as tmp:
        info = machine_info(Path(tmp))
        if not args.baseline_only:
            result = run_ours(args, Path(tmp))
        if not args.no_baseline:
            # imported here: relay_load_ybaseline imports this module (as relay_load)
            import relay_load_ybaseline as yb

            try:
                base = yb.run_baseline(args, Path(tmp) / "ybaseline")
            except Exception as exc:
                why = f"failed: {exc}"
                log(f"pycrdt-websocket baseline {why}")
                if result is None:
                    raise
        info["loadavg_end"] = os.getloadavg()
    if result is not None:
        result["baseline"] = base if base is not None else f"pycrdt-websocket: {why}"
    print_report(args, info, result, base, why)
    out = write_json(
        OUT_DIR / f"relay_load_{args.gates}g_{int(time.time())}.json",
        info,
        load_sizes(args),
        rows_for(result, base),
        args=vars(args),
        result=result,
        baseline=base or why,
    )
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
