"""A gate behind a fault-injecting proxy keeps recording and converges.

The proxy sits between a gate and the admin on 127.0.0.1: for a while it
delays chunks, and cuts connections in the middle of a frame; then it heals.
The gate records check-ins the whole time; afterwards both hold the same
entries and no scan is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from headcount import Role
from headcount.pki.org import init_org

from .support.devices import enrolled_replica
from .support.nodes import effect_pulse, tls_node
from .support.seeds import reported_seed
from .support.wait import await_until

EV = "ev"
SEED = 20261124
SCAN_EVERY_S = 0.01  # the gate's scan rate while the link is faulty (a workload, not a wait)


class FaultyProxy:
    def __init__(self, target_port: int, rng: random.Random) -> None:
        self.target_port = target_port
        self.rng = rng
        self.faulty = True
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        budget = self.rng.randrange(200, 20_000)  # bytes before a cut, while faulty

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            nonlocal budget
            try:
                while data := await src.read(4096):
                    if self.faulty:
                        await asyncio.sleep(self.rng.uniform(0, 0.02))  # delay
                        budget -= len(data)
                        if budget <= 0:  # cut mid-frame: forward a prefix, then drop
                            dst.write(data[: self.rng.randrange(1, len(data) + 1)])
                            self.cuts += 1
                            break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                for w in (writer, up_w):
                    w.close()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))


def test_gate_behind_a_faulty_link_keeps_recording_and_converges(tmp_path, clock):
    rng = random.Random(SEED)
    org = init_org(tmp_path / "org", "Example Events")
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    gate = enrolled_replica(tmp_path, org, "gate", Role.GATE, clock)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(200)])

    async def main() -> tuple[int, set[str]]:
        a = tls_node(admin, [])
        at_admin = effect_pulse(a)
        await a.start()
        proxy = FaultyProxy(a.port, rng)
        await proxy.start()
        proxy.faulty = False  # the gate first receives the event over a sound link
        g = tls_node(gate, [("127.0.0.1", proxy.port)])
        at_gate = effect_pulse(g)
        await g.start()
        recorded: set[str] = set()
        await await_until(
            lambda: EV in gate.events() and gate.status(EV).participants == 200,
            20,
            "the event reached the gate",
            pulse=at_gate,
        )
        proxy.faulty = True

        async def keep_scanning() -> None:
            """Faulty period: the gate keeps scanning, connected or not."""
            while True:
                recorded.add(gate.check_in(EV, f"p{rng.randrange(200)}").scan.id)
                g.local_write(EV)
                await asyncio.sleep(SCAN_EVERY_S)

        scanner = asyncio.create_task(keep_scanning())
        try:
            # (the proxy reports no cuts: polled)
            await await_until(
                lambda: proxy.cuts >= 3 and len(recorded) >= 50,
                20,
                "three cuts while the gate scanned 50 times",
            )
        finally:
            scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scanner
        proxy.faulty = False  # healed
        g.retry_now()
        await await_until(
            lambda: EV in admin.events() and recorded <= set(admin.event(EV).doc.scans),
            20,
            "every scan reached the admin",
            pulse=at_admin,
        )
        cuts = proxy.cuts
        await g.stop()
        await a.stop()
        await proxy.stop()
        return cuts, recorded

    with reported_seed(SEED):
        cuts, recorded = asyncio.run(asyncio.wait_for(main(), 90))
    assert cuts >= 3, f"seed={SEED}: the proxy never cut a connection"
    assert len(recorded) >= 50, f"seed={SEED}"
    missing = recorded - set(admin.event(EV).doc.scans)
    assert not missing, f"seed={SEED}: {len(missing)} scans never reached the admin"
    assert admin.version_vector(EV) == gate.version_vector(EV), f"seed={SEED}"
    admin.close()
    gate.close()
