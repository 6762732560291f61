"""(d) The simulator's link under the suite: sessions joined by the
simulator's :class:`~headcount.sim.network.Network` in virtual time."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

from headcount.protocol.memlog import MemLog
from headcount.protocol.session import Close, Effect, Send, SessionConfig
from headcount.sim.network import LAN, Link, Network
from headcount.sim.scheduler import Scheduler, Timer

from .harness import End, Harness, Raw

NETWORK_SEED = 1  # the simulated network's randomness (it names it when a wait fails)
SIM_TRAFFIC_EVERY = 0.01  # virtual seconds between frames of steady traffic


# -- (d) the simulator's link ------------------------------------------------------------


class _SimPeer:
    """The simulator's driver for one session at one side of a link: sends
    ride the :class:`~headcount.sim.network.Network`, and a scheduler timer
    is armed at :meth:`Session.next_deadline` after every input."""

    def __init__(self, h: SimHarness, end: End, link: Link, side: int) -> None:
        self.h, self.end, self.link, self.side = h, end, link, side
        self.session = end.session
        self.far: Callable[[Any], None] = lambda _item: None  # the other side's deliver
        self.timer: Timer | None = None

    def start(self) -> None:
        self._run(self.session.start(self.h.sched.now))

    def deliver(self, item: Any) -> None:
        """What the other side sent arrives (None: the connection closed)."""
        if self.end.ended:
            return
        if item is None:
            self.session.connection_lost(self.h.sched.now)
            self.end.ended = True
        else:
            self._run(self.session.receive_data(item, self.h.sched.now))

    async def notify(self, event: str) -> None:
        self._run(self.session.local_entries(event, self.h.sched.now))

    async def close(self) -> None:
        self._run(self.session.close(self.h.sched.now))

    def _run(self, effects: list[Effect]) -> None:
        net, to = self.h.net, 1 - self.side
        for effect in effects:
            if isinstance(effect, Send):
                net.send(self.link, to, effect.data, len(effect.data), "frame", self.far)
            else:
                self.end.effect(effect)
                if isinstance(effect, Close):
                    self.end.ended = True
                    net.send_control(self.link, to, None, self.far)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.session.next_deadline()
        if deadline is not None and not self.end.ended:
            sched = self.h.sched
            tick = lambda: self._run(self.session.tick(sched.now))  # noqa: E731
            self.timer = sched.at(max(deadline, sched.now + 1e-6), tick)


class _SimRaw:
    """A raw peer on the simulator's link: sends bytes at once, as one unit."""

    def __init__(self, h: SimHarness, link: Link, victim: _SimPeer) -> None:
        self.h, self.link, self.victim = h, link, victim

    async def __call__(self, data: bytes) -> None:
        self.send(data)

    def send(self, data: bytes) -> None:
        self.h.net.send(self.link, self.victim.side, data, len(data), "raw", self.victim.deliver)


class SimHarness(Harness):
    """Sessions joined by the simulator's :class:`~headcount.sim.network.Network`
    (a LAN link, stream transport) in virtual time: waiting runs the scheduler."""

    name = "sim"

    def __init__(self) -> None:
        super().__init__()
        self.sched = Scheduler()
        self.net = Network(self.sched, random.Random(NETWORK_SEED), "stream")

    def now(self) -> float:
        return self.sched.now

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        if not predicate():
            self.sched.run(self.sched.now + timeout, stop=predicate)
        assert predicate(), (
            f"sim (network seed {NETWORK_SEED}): the condition: not true after {timeout} virtual s"
        )

    async def keep_sending(
        self,
        raw: Raw,
        frame: Callable[[int], bytes],
        until: Callable[[], bool],
        timeout: float = 5.0,
    ) -> None:
        """Steady traffic in virtual time: a frame every ``SIM_TRAFFIC_EVERY`` s."""
        assert isinstance(raw, _SimRaw)
        numbers = itertools.count()

        def send() -> None:
            if not until():
                raw.send(frame(next(numbers)))
                self.sched.after(SIM_TRAFFIC_EVERY, send)

        send()
        await self.wait_until(until, timeout)

    def _peer(self, log: MemLog, config: SessionConfig, link: Link, side: int) -> _SimPeer:
        end = End(self.session(log, config))
        peer = end.driver = _SimPeer(self, end, link, side)
        return peer

    async def connect(self, a: MemLog, b: MemLog, config: SessionConfig) -> tuple[End, End]:
        link = Link(0, 1, LAN)
        pa, pb = self._peer(a, config, link, 0), self._peer(b, config, link, 1)
        pa.far, pb.far = pb.deliver, pa.deliver
        pa.start()
        pb.start()
        return pa.end, pb.end

    async def connect_raw(self, victim: MemLog, config: SessionConfig) -> tuple[End, Raw]:
        link = Link(0, 1, LAN)
        peer = self._peer(victim, config, link, 1)  # its sends go nowhere: raw peers ignore them
        peer.start()
        return peer.end, _SimRaw(self, link, peer)
