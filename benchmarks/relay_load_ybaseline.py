"""Baseline for relay_load.py: the same load against pycrdt-websocket's server.

What a Python user would otherwise pick to relay Y updates between gates: the
stock ``pycrdt.websocket.WebsocketServer`` (0.16.x) with its ``YRoom`` per room,
one room per event (room name = our event id, ``load-0003``). It runs in its own
process, a child of this script, like our relay child. pycrdt-websocket ships no
HTTP server of its own (its docs plug it into ``websockets`` or an ASGI server
such as Hypercorn); here it is served by aiohttp, the library our relay uses, so
both sides pay the same HTTP/WebSocket/TLS stack. The only code of ours on the
server side is the ~20-line adapter from aiohttp's WebSocket to pycrdt's
``Channel`` protocol (like the ``HttpxWebsocket`` adapter pycrdt-websocket ships).

The load is the same shape as ours: ``--gates`` clients over ``--procs``
load-generator processes, each client one wss connection speaking the y-sync
protocol with pycrdt's own functions (``create_sync_message``,
``handle_sync_message``, ``create_update_message``), with its own ``Doc`` and a
root ``Array`` "s" to which it appends one scan string per entry, in the format
of ``headcount.core.eventdoc.encode_scan`` (``id|participant|in|ts_ms|hlc|gate|qr|
device``, ``ts_ms`` the wall time at the append), and sends the update. Gates of
one event join the same room, so the server fans each update out to the event's
other gates. Pacing is ours: clock-paced aggregate ``--rate`` for ``--duration``
in 50 ms ticks, round-robin over the gates.

What is not the same, and in whose favour:

* **Memory only**: the rooms have no ``YStore`` (no persistence). Ours fsyncs
  every batch to SQLite before acknowledging it. This favours the baseline.
* **Server-only TLS** (a self-signed Ed25519 certificate for 127.0.0.1 made in
  the work directory); ours does mutual TLS with enrolled device certificates
  and checks the device id. This favours the baseline (slightly: handshakes).
* **No acknowledgements, signatures, hash chains or verification**: y-websocket
  applies whatever arrives. Ours signs, verifies and chains every entry and
  acknowledges it. This favours the baseline.
* y-websocket's room broadcasts every update to *all* its clients, the sender
  included (10 frames per update for 10 gates an event; ours sends 9).
* "entries/s" here is the rate of scans the **server applied** (the length of
  the rooms' "s" arrays when the load generators finished draining, over the
  load duration), since there are no acks to count; the figure of updates the
  server received is also given (``server_updates_received``).
* Fan-out latency is measured at a few observer clients per loader (the first
  gate of the first ``--observers`` events of each loader, like ours): they
  apply every update to their ``Doc``; an ``Array`` observer takes the wall time
  after the apply minus the ``ts_ms`` of each remote scan that arrived.
  Non-observer clients answer the server's sync step 1 and then read and
  discard every frame (they never decode or apply an update).

* pycrdt-websocket 0.16.5 hangs clients that join a new room concurrently (all
  but one wait forever on the room's start lock), so the loaders connect the
  first gate of each event, then the others; each client counts as connected
  once the room's sync step 1 has arrived.

Everything listens on 127.0.0.1 only and every wait is bounded.

    pip install -e '.[bench]'
    python benchmarks/relay_load_ybaseline.py --quick
    python benchmarks/relay_load_ybaseline.py --gates 1000 --rate 2000 --duration 20

Progress goes to stderr, the figures to stdout, JSON to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import gc
import hashlib
import ipaddress
import json
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported from elsewhere

from _common import OUT_DIR, machine_info, print_header, print_table, write_json
from relay_load import (
    CONNECT_TIMEOUT_S,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    drive_load,
    event_of,
    latency_summary,
    load_sizes,
    log,
    paced,
    proc_stats,
    read_json_line,
    rows_for,
    start_loaders,
    stop,
)

SCRIPT = Path(__file__).resolve()
HOST = "127.0.0.1"  # loopback only
SEP = "\x1f"  # headcount.core.registers.SEP, the separator of encode_scan
DRAIN_S = 10.0
JOIN_TIMEOUT_S = 30.0
STATS_TIMEOUT_S = 30.0
MAX_MSG = 4 * 1024 * 1024
CERT = "ybaseline.crt"
KEY = "ybaseline.key"


# -- TLS: a self-signed server certificate for 127.0.0.1 ----------------------------


def make_cert(work: Path) -> None:
    """Server-only TLS for the baseline (ours is mutual TLS with enrolled devices)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    key = Ed25519PrivateKey.generate()  # the key type of our relay and gates
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay-load baseline")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None)
    )  # fmt: skip
    (work / CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (work / KEY).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def server_tls(work: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # as ours
    ctx.load_cert_chain(work / CERT, work / KEY)
    return ctx


def client_tls(work: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(work / CERT)  # the server is checked; the client is anonymous
    return ctx


# -- the server child: stock WebsocketServer behind aiohttp --------------------------


def server_child(work: Path) -> None:
    asyncio.run(_server_main(work))


async def _server_main(work: Path) -> None:
    from aiohttp import WSMsgType, web
    from pycrdt import Array
    from pycrdt.websocket import WebsocketServer, exception_logger

    counts = {"updates": 0, "frames_in": 0, "connections": 0}
    closing = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)

    class AiohttpChannel:
        """pycrdt's ``Channel`` protocol over an aiohttp server WebSocket."""

        def __init__(self, ws: web.WebSocketResponse, path: str) -> None:
            self._ws = ws
            self._path = path

        @property
        def path(self) -> str:
            return self._path

        def __aiter__(self) -> AiohttpChannel:
            return self

        async def __anext__(self) -> bytes:
            return await self.recv()

        async def recv(self) -> bytes:
            while True:
                msg = await self._ws.receive()
                if msg.type is WSMsgType.BINARY:
                    data = msg.data
                    counts["frames_in"] += 1
                    if data[:2] == b"\x00\x02":  # SYNC, SYNC_UPDATE
                        counts["updates"] += 1
                    return data
                if msg.type in closing:
                    raise StopAsyncIteration

        async def send(self, message: bytes) -> None:
            # YRoom broadcasts with one task per client and update: a send to a
            # closing socket must not fail the room's task group.
            if self._ws.closed:
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.send_bytes(message)

    server = WebsocketServer(  # stock settings: rooms ready, auto-cleaned when empty
        exception_handler=exception_logger
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MSG, autoping=True)
        await ws.prepare(request)
        counts["connections"] += 1
        await server.serve(AiohttpChannel(ws, request.match_info["room"]))
        return ws

    def stats() -> dict:
        rooms = list(server.rooms.values())
        return {
            "rooms": len(rooms),
            "clients": sum(len(r.clients) for r in rooms),
            "scans_applied": sum(len(r.ydoc.get("s", type=Array)) for r in rooms),
            **counts,
        }

    app = web.Application()
    app.router.add_get("/{room}", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    loop = asyncio.get_running_loop()
    async with server:
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, ssl_context=server_tls(work))  # as ours
        await site.start()
        port = runner.addresses[0][1]
        print(json.dumps({"port": port}), flush=True)
        try:
            # commands on stdin; EOF (the parent went away) stops the server
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                if line.strip() == "stats":
                    print(json.dumps({"stats": stats()}), flush=True)
                elif line.strip() == "trim":  # diagnostic: is "after" RSS live or cached?
                    gc.collect()
                    with contextlib.suppress(OSError, AttributeError):
                        ctypes.CDLL("libc.so.6").malloc_trim(0)
                    print(json.dumps({"stats": stats()}), flush=True)
        finally:
            await asyncio.wait_for(runner.cleanup(), STOP_TIMEOUT_S)


# -- a load-generator child -----------------------------------------------------------


def load_child(args: argparse.Namespace) -> None:
    asyncio.run(_load_main(args))


async def _load_main(args: argparse.Namespace) -> None:
    import aiohttp
    from pycrdt import (
        Array,
        ArrayEvent,
        Doc,
        TransactionEvent,
        YMessageType,
        YSyncMessageType,
        create_sync_message,
        create_update_message,
        handle_sync_message,
    )

    work = Path(args.work)
    ctx = client_tls(work)
    lo, hi = args.lo, args.hi
    per_event = args.gates_per_event
    observers = set(range(lo, min(hi, lo + args.observers * per_event), per_event))
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    measuring = {"on": False}
    appended_per_event: dict[str, int] = {}
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    class Client:
        def __init__(self, i: int) -> None:
            self.i = i
            self.gate = f"g{i}"
            self.device = hashlib.sha256(f"{args.seed}:{i}".encode()).hexdigest()[:20]
            self.event = event_of(i, per_event)
            self.observer = i in observers
            self.doc = Doc()
            self.scans = self.doc.get("s", type=Array)
            self.local = False
            self.update: bytes | None = None
            self.doc.observe(self._capture)
            if self.observer:
                self.scans.observe(self._on_scans)
            self.hlc = 0
            self.ws: aiohttp.ClientWebSocketResponse | None = None
            self.task: asyncio.Task | None = None
            self.joined = asyncio.Event()  # the room's sync step 1 arrived
            self.appended = 0
            self.appended_at_start = 0

        def _capture(self, event: TransactionEvent) -> None:
            if self.local:
                self.update = event.update

        def _on_scans(self, event: ArrayEvent) -> None:
            if not measuring["on"]:
                return
            now = time.time() * 1000  # after the apply, as ours (after verify + apply)
            for d in event.delta:
                for raw in d.get("insert", ()):
                    f = raw.split(SEP)
                    if f[5] != self.gate:
                        latencies.append(now - int(f[3]))

        async def connect(self) -> None:
            self.ws = await asyncio.wait_for(
                http.ws_connect(
                    f"wss://{HOST}:{args.port}/{self.event}",
                    ssl=ctx,
                    max_msg_size=MAX_MSG,
                    autoping=True,
                ),
                30,
            )
            await self.ws.send_bytes(create_sync_message(self.doc))  # sync step 1
            self.task = asyncio.create_task(self.read())
            await asyncio.wait_for(self.joined.wait(), JOIN_TIMEOUT_S)

        async def read(self) -> None:
            ws = self.ws
            assert ws is not None
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    continue
                data = msg.data
                if data[0] != YMessageType.SYNC:
                    continue  # awareness
                if data[1] == YSyncMessageType.SYNC_STEP1:
                    self.joined.set()
                if self.observer:
                    reply = handle_sync_message(data[1:], self.doc)
                    if reply is not None:
                        await ws.send_bytes(reply)
                elif data[1] == YSyncMessageType.SYNC_STEP1:
                    await ws.send_bytes(handle_sync_message(data[1:], self.doc))
                # else: a non-observer discards the frame

        async def append(self) -> None:
            now = int(time.time() * 1000)
            self.hlc = max(now << 16, self.hlc + 1)  # a hybrid clock, as headcount.core.hlc
            scan = SEP.join(
                (
                    str(uuid.uuid4()),
                    f"p{self.appended % 500}",
                    "in",
                    str(now),
                    str(self.hlc),
                    self.gate,
                    "qr",
                    self.device,
                )
            )
            self.local = True
            try:
                with self.doc.transaction():
                    self.scans.append(scan)
            finally:
                self.local = False
            self.appended += 1
            appended_per_event[self.event] = appended_per_event.get(self.event, 0) + 1
            if self.ws is not None and not self.ws.closed and self.update is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.send_bytes(create_update_message(self.update))

    clients = [Client(i) for i in range(lo, hi)]
    out: dict = {"lo": lo, "hi": hi}
    try:
        sem = asyncio.Semaphore(32)

        async def connect(c: Client) -> None:
            async with sem:
                for attempt in range(5):
                    try:
                        await c.connect()
                        return
                    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                        if attempt == 4:
                            raise
                        log(f"baseline client {c.i}: connect failed ({exc!r}); retrying")
                        await asyncio.sleep(0.5)

        # Two waves: the first gate of each event, then the others. In 0.16.5 the
        # first clients to join a new room concurrently race in
        # WebsocketServer.start_room: all but one wait forever on the room's start
        # lock (never added to the room, never read). Once a room has started,
        # concurrent joins are fine. Each join is confirmed by the room's step 1.
        first: dict[str, Client] = {}
        for c in clients:
            first.setdefault(c.event, c)
        rest = [c for c in clients if first[c.event] is not c]
        t0 = loop.time()
        await asyncio.wait_for(
            asyncio.gather(*(connect(c) for c in first.values())), CONNECT_TIMEOUT_S
        )
        await asyncio.wait_for(
            asyncio.gather(*(connect(c) for c in rest)), CONNECT_TIMEOUT_S - (loop.time() - t0)
        )
        out["connect_s"] = loop.time() - t0
        print(json.dumps({"connected": len(clients)}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)  # the go signal
        rate = args.rate  # this process's share, entries/s
        measuring["on"] = True
        for c in clients:
            c.appended_at_start = c.appended
        elapsed, lag_ticks = await paced(clients, rate, args.duration)
        # drain: no acks in y-websocket, so wait up to 10 s until every observer
        # holds all the scans of its event (all of an event's gates are in this process)
        obs = [c for c in clients if c.observer]

        def missing() -> int:
            return sum(max(0, appended_per_event.get(c.event, 0) - len(c.scans)) for c in obs)

        drain_start = loop.time()
        drain_deadline = drain_start + DRAIN_S
        while loop.time() < drain_deadline and missing():
            await asyncio.sleep(0.1)
        out["drain_s"] = loop.time() - drain_start
        measuring["on"] = False
        out.update(
            elapsed_s=elapsed,
            appended=sum(c.appended - c.appended_at_start for c in clients),
            observer_missing=missing(),
            lag_ticks=lag_ticks,
            latencies_ms=latencies,
            closed_early=sum(1 for c in clients if c.ws is None or c.ws.closed),
        )
        print(json.dumps({"measured": True}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)  # the disconnect signal
    finally:
        for c in clients:
            if c.ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.ws.close(), 2)
        tasks = [c.task for c in clients if c.task is not None]
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(http.close(), 5)
    print(json.dumps({"result": out}), flush=True)


# -- parent ---------------------------------------------------------------------------


def _server_stats(server: subprocess.Popen, command: str = "stats") -> dict:
    server.stdin.write(command + "\n")
    server.stdin.flush()
    while True:
        msg = read_json_line(server, STATS_TIMEOUT_S, "server stats")
        if "stats" in msg:
            return msg["stats"]


def run_baseline(args: argparse.Namespace, work: Path) -> dict:
    """The same load against pycrdt-websocket; keys as relay_load.run_ours where they apply."""
    try:
        import pycrdt.websocket  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("pycrdt-websocket is not installed: pip install -e '.[bench]'") from exc
    work.mkdir(parents=True, exist_ok=True)
    make_cert(work)
    server = None
    loaders: list[subprocess.Popen] = []
    try:
        server = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--_server", str(work)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        port = int(read_json_line(server, START_TIMEOUT_S, "server port")["port"])
        log(f"baseline: pycrdt-websocket server pid {server.pid} on port {port}")
        time.sleep(1.0)
        loaders = start_loaders(SCRIPT, args, work, port)
        stats: dict = {}

        def before_bye() -> None:
            stats["loaded"] = _server_stats(server)

        load = drive_load(
            server.pid,
            loaders,
            args,
            name="baseline",
            measure_timeout=DRAIN_S + 60,
            before_bye=before_bye,
        )
        after = _server_stats(server)
        _server_stats(server, "trim")
        _, rss_trimmed = proc_stats(server.pid)
    finally:
        for p in loaders:
            stop(p)
        if server is not None and server.stdin is not None:
            with contextlib.suppress(OSError):
                server.stdin.close()
        stop(server)
    results = load["results"]
    loaded = stats["loaded"]
    elapsed = max(r["elapsed_s"] for r in results)
    return {
        "server": "pycrdt-websocket "
        + _version("pycrdt-websocket")
        + " WebsocketServer/YRoom behind aiohttp, pycrdt "
        + _version("pycrdt"),
        **latency_summary(results, args.gates, load),
        "rate_basis": "scans applied by the server's rooms / load duration",
        "server_scans_applied": loaded["scans_applied"],
        "server_updates_received": loaded["updates"],
        "server_rooms_loaded": loaded["rooms"],
        "server_clients_loaded": loaded["clients"],
        "server_rooms_after": after["rooms"],
        "server_connections": after["connections"],
        "observer_missing_after_drain": sum(r["observer_missing"] for r in results),
        "drain_s": max(r["drain_s"] for r in results),
        "rate_target": args.rate,
        "rate_achieved": loaded["scans_applied"] / elapsed,
        "rate_appended": sum(r["appended"] for r in results) / elapsed,
        "rss_after_gc_trim_mb": rss_trimmed,
    }


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def summary(b: dict) -> str:
    return (
        f"{b['gates']} clients connected in {b['connect_s']:.1f} s, {b['appended']:,} appended "
        f"({b['rate_appended']:,.0f}/s), "
        f"{b['server_updates_received']:,} updates received and {b['server_scans_applied']:,} "
        f"scans held by the server, {b['observer_missing_after_drain']} missing at observers "
        f"after the {b['drain_s']:.1f} s drain, {b['latency_samples']:,} latency samples, "
        f"{b['closed_early']} connections closed early, {b['server_rooms_after']} rooms left "
        f"after disconnect (RSS {b['rss_after_gc_trim_mb']:.0f} MB after gc + malloc_trim), "
        f"{b['loader_lag_ticks']} load-generator ticks overran, "
        "load-generator CPU " + ", ".join(f"{c:.0f}%" for c in b["loader_cpu_pct"])
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gates", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=2000.0, help="aggregate entries/s")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--gates-per-event", type=int, default=10)
    ap.add_argument("--observers", type=int, default=2, help="observer clients per loader")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--seed", default="relay-load")
    ap.add_argument("--quick", action="store_true", help="50 gates, 10 s")
    ap.add_argument("--_server", help=argparse.SUPPRESS)
    ap.add_argument("--_load", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--lo", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--hi", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._server:
        server_child(Path(args._server))
        return 0
    if args._load:
        load_child(args)
        return 0
    if args.quick:
        args.gates, args.duration = 50, 10.0
    if args.gates < 1 or args.gates > 5000 or not 0 < args.duration <= 600:
        ap.error("--gates must be 1..5000 and --duration 0..600 s")
    with tempfile.TemporaryDirectory(prefix="relay_load_ybaseline_") as tmp:
        info = machine_info(Path(tmp))
        result = run_baseline(args, Path(tmp))
    sizes = load_sizes(args)
    rows = rows_for(None, result)
    print_header("relay_load_ybaseline: pycrdt-websocket under the relay load", info, sizes)
    print_table(rows)
    print(f"baseline: {result['server']}")
    print(summary(result))
    out = write_json(
        OUT_DIR / f"relay_load_ybaseline_{args.gates}g_{int(time.time())}.json",
        info,
        sizes,
        rows,
        args=vars(args),
        baseline=result,
    )
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
