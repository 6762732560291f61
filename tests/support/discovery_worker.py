"""Discovery worker (run as a script by tests/test_discovery.py; not a test module).

Usage, always inside ``netns-run`` (a private network namespace with only
loopback):

``python discovery_worker.py cluster EVENT PARTICIPANT WRITER TIMEOUT DIR...``
    The orchestrator. Starts one ``gate`` process per data directory (separate
    OS processes, all inside the one namespace the orchestrator runs in);
    waits until every gate has found all the others by mDNS; tells the gate at
    index WRITER to check PARTICIPANT in; waits until every other gate holds
    that check-in; closes every gate's stdin (stop) and prints one JSON line
    with the outcome. Each phase is bounded (TIMEOUT seconds in all, then
    10 s to stop); gates that do not exit in time are killed.

``python discovery_worker.py gate DATA_DIR EVENT PARTICIPANT WRITER OTHERS TIMEOUT``
    One node: a real TLS :class:`Node` on 127.0.0.1 port 0 with NO static
    peers, plus :class:`Discovery` on 127.0.0.1 that dials what it finds. It
    prints JSON lines: ``ready``; ``found`` once OTHERS peers were discovered;
    then, if WRITER is 1, ``checked_in`` after a ``go`` line on stdin (and once
    it holds the event), else ``has`` once it holds the check-in; and ``done``
    when its stdin closes (the orchestrator asks it to stop, or died). It
    stops by itself after TIMEOUT seconds whatever happens.

``python discovery_worker.py guard``
    Checks the unicast guard: with a non-loopback address added to ``lo``, a
    unicast mDNS query sent from that address gets no reply, while the same
    query from 127.0.0.1 does. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from zeroconf import DNSIncoming, DNSOutgoing, DNSQuestion
from zeroconf.const import _CLASS_IN, _FLAGS_QR_QUERY, _TYPE_SRV

from headcount import NotFoundError, Replica
from headcount.net.advert import instance_name
from headcount.net.discovery import Discovery
from headcount.net.node import Node, NodeConfig
from headcount.pki.device import load_device_certificate, ssl_context
from headcount.protocol.session import Applied


def emit(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# -- one gate ------------------------------------------------------------------


def _holds(replica: Replica, event: str, participant: str) -> tuple[bool, bool]:
    """(has the event with the participant, has the participant's check-in)."""
    if event not in replica.events():
        return False, False
    try:
        return True, replica.event(event).attendance(participant).check_in is not None
    except NotFoundError:
        return False, False


async def _listen(go: asyncio.Event, stop: asyncio.Event) -> None:
    """Commands on stdin: a line ``go`` sets ``go``; end of input sets ``stop``."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"go":
            go.set()
    stop.set()


async def gate(data_dir: str, event: str, participant: str, writer: bool, others: int) -> None:
    """One node; see the module docstring for its protocol."""
    replica = Replica.open(Path(data_dir))
    _, ca = load_device_certificate(replica.data_dir)
    config = NodeConfig(gossip_interval=1.0, backoff_base=0.05, backoff_max=1.0)
    node = Node(
        replica,
        config,
        ssl_context(replica.data_dir, server_side=True),
        ssl_context(replica.data_dir, server_side=False),
        ca,
    )
    has_event, has_scan, found_all = asyncio.Event(), asyncio.Event(), asyncio.Event()
    go, stop = asyncio.Event(), asyncio.Event()

    def check() -> None:
        ev, scan = _holds(replica, event, participant)
        if ev:
            has_event.set()
        if scan:
            has_scan.set()

    def watch(_source: Any, effect: Any) -> None:
        if isinstance(effect, Applied):
            check()

    node.effect_observers.append(watch)
    found: set[str] = set()

    def on_peer(device: str, host: str, port: int) -> None:
        node.add_peer(host, port)
        found.add(device)
        if len(found) >= others:
            found_all.set()

    async def flow() -> None:
        await found_all.wait()
        emit(found=replica.device_id, peers=sorted(found))
        if writer:
            await go.wait()
            await has_event.wait()
            result = replica.check_in(event, participant)
            node.local_write(event)
            emit(checked_in=result.scan.id, device=replica.device_id, at=time.monotonic())
        else:
            await has_scan.wait()
            scan = replica.event(event).attendance(participant).check_in
            assert scan is not None
            emit(has=replica.device_id, scan=scan.id, at=time.monotonic())

    await node.start()
    assert node.port is not None
    discovery = Discovery(
        replica.device_id,
        node.port,
        role=replica.role.value,
        events=replica.events(),
        on_peer=on_peer,
    )
    listener = asyncio.ensure_future(_listen(go, stop))
    try:
        await discovery.start()
        emit(ready=replica.device_id, port=node.port)
        check()
        steps = asyncio.ensure_future(flow())
        await stop.wait()  # the orchestrator closed our stdin
        if steps.done():
            steps.result()  # re-raises whatever went wrong in the steps
        else:
            steps.cancel()  # stopped before the steps finished: say so
            emit(unfinished=replica.device_id)
    finally:
        listener.cancel()
        emit(
            done=replica.device_id,
            discovered=sorted(a.device_id for a in discovery.peers.values()),
            ignored=discovery.ignored,
            static_peers=len(config.peers),
            rejected=node.rejected,
        )
        await discovery.stop()
        await node.stop()
        replica.close()


# -- the orchestrator ------------------------------------------------------------


async def _read_lines(index: int, proc: asyncio.subprocess.Process, queue: asyncio.Queue) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        with contextlib.suppress(ValueError):
            queue.put_nowait((index, json.loads(line)))


async def cluster(
    event: str, participant: str, writer: int, dirs: list[str], timeout: float
) -> dict:
    """Run the gates; returns the outcome (see the module docstring)."""
    started = time.monotonic()
    procs = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, __file__, "gate", d, event, participant),
            # a gate's own limit is only a safety net behind the orchestrator's
            *("1" if i == writer else "0", str(len(dirs) - 1), str(timeout + 15)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for i, d in enumerate(dirs)
    ]
    queue: asyncio.Queue[tuple[int, dict]] = asyncio.Queue()
    readers = [asyncio.ensure_future(_read_lines(i, p, queue)) for i, p in enumerate(procs)]
    messages: dict[int, dict[str, dict]] = {i: {} for i in range(len(procs))}

    async def collect(kinds: list[str], within: float) -> bool:
        """Wait until gate i has sent a message of kind ``kinds[i]``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not all(kinds[i] in messages[i] for i in messages):
                    index, message = await queue.get()
                    for key in message:
                        messages[index].setdefault(key, message)
                return True
        return False

    def left() -> float:
        return max(0.0, timeout - (time.monotonic() - started))

    everyone = range(len(procs))
    found = await collect(["found" for _ in everyone], left())
    discovered = time.monotonic() - started
    if found:
        writer_stdin = procs[writer].stdin
        assert writer_stdin is not None
        writer_stdin.write(b"go\n")
        await collect(["checked_in" if i == writer else "has" for i in everyone], left())
    converged = time.monotonic() - started
    for proc in procs:  # ask every gate to stop: close its stdin
        assert proc.stdin is not None
        proc.stdin.close()
    await collect(["done" for _ in everyone], 10.0)
    codes = []
    for proc in procs:
        try:
            codes.append(await asyncio.wait_for(proc.wait(), 10.0))
        except TimeoutError:
            proc.kill()
            codes.append(await proc.wait())
    for task in readers:
        task.cancel()
    scan = messages[writer].get("checked_in", {})
    has = [m["has"] for m in messages.values() if "has" in m]
    return {
        "netns": os.environ.get("NETNS_RUN_INSIDE") == "1",
        "gates": len(procs),
        "ready": [m.get("ready", {}).get("ready") for m in messages.values()],
        "found": [m.get("found", {}).get("peers") for m in messages.values()],
        "writer": scan.get("device"),
        "scan": scan.get("checked_in"),
        "has": {h["has"]: h["scan"] for h in has},
        "latency": {h["has"]: round(h["at"] - scan["at"], 4) for h in has if scan},
        "done": [m.get("done") for m in messages.values()],
        "exit_codes": codes,
        "seconds_to_discover": round(discovered, 3),
        "seconds_to_converge": round(converged, 3),
    }


# -- the unicast guard ---------------------------------------------------------

LAN_ADDRESS = "10.255.0.1"  # added to lo inside the namespace only


async def guard() -> dict:
    subprocess.run(["ip", "addr", "add", f"{LAN_ADDRESS}/32", "dev", "lo"], check=True)
    device = "0" * 20
    discovery = Discovery(device, 4000, role="gate", on_peer=lambda *_: None)
    await discovery.start()
    query = DNSOutgoing(_FLAGS_QR_QUERY)
    query.add_question(DNSQuestion(instance_name(device), _TYPE_SRV, _CLASS_IN))
    packet = query.packets()[0]
    lan = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lan.bind((LAN_ADDRESS, 0))
    lan.setblocking(False)
    loop = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loop.bind(("127.0.0.1", 0))
    loop.setblocking(False)
    try:
        # A legacy unicast query (source port != 5353) is answered by unicast.
        # The LAN query is sent first: when the loopback answer is back, the
        # LAN one has been handled too (one event loop, in arrival order).
        lan.sendto(packet, (LAN_ADDRESS, 5353))
        loop.sendto(packet, ("127.0.0.1", 5353))
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(loop, 9000), 5.0)
        answers = [r.name for r in DNSIncoming(data).answers()]
        try:
            lan_reply = len(lan.recv(9000))
        except BlockingIOError:
            lan_reply = 0
        return {
            "loopback_answers": answers,
            "lan_reply_bytes": lan_reply,
            "dropped_unicast": discovery.dropped_unicast,
        }
    finally:
        lan.close()
        loop.close()
        await discovery.stop()


def main(argv: list[str]) -> int:
    mode = argv[0]
    if os.environ.get("NETNS_RUN_INSIDE") != "1":  # guard even changes lo's addresses
        raise SystemExit("discovery_worker.py runs only inside netns-run")
    if mode == "gate":
        data_dir, event, participant, writer, others, timeout = argv[1:7]
        run = gate(data_dir, event, participant, writer == "1", int(others))
        try:
            asyncio.run(asyncio.wait_for(run, float(timeout)))
        except TimeoutError:
            emit(error="gate timed out")
            return 1
        return 0
    if mode == "cluster":
        event, participant, writer, timeout, *dirs = argv[1:]
        result = asyncio.run(cluster(event, participant, int(writer), dirs, float(timeout)))
    elif mode == "guard":
        result = asyncio.run(asyncio.wait_for(guard(), 20.0))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    emit(result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
