"""In-memory devices and h11-style connection pairs (two sessions, one perfect link)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from headcount.core.identity import device_id_for
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import (
    Applied,
    Close,
    Effect,
    EntryRefused,
    EquivocationFound,
    LogView,
    Send,
    Session,
    SessionConfig,
)


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def make_devices(n: int, directory: dict[str, bytes] | None = None) -> list[MemLog]:
    """``n`` in-memory devices that all know each other."""
    directory = {} if directory is None else directory
    logs = []
    for _ in range(n):
        key = Ed25519PrivateKey.generate()
        device = device_id_for(key.public_key())
        directory[device] = raw_public(key)
        logs.append(MemLog(device, key, directory))
    return logs


@dataclass
class Side:
    session: Session
    closed: str | None = None
    applied: int = 0
    equivocations: list[EquivocationFound] = field(default_factory=list)
    refused: list[EntryRefused] = field(default_factory=list)


class ConnectionPair:
    """Two sessions joined by a perfect in-memory link (h11's idea)."""

    def __init__(self, a: LogView, b: LogView, config: SessionConfig | None = None) -> None:
        self.now = 0.0
        self.sides = [Side(Session(a, self.now, config)), Side(Session(b, self.now, config))]
        self.queues: list[list[bytes]] = [[], []]  # bytes in flight towards side i
        self.closed = False
        for i, side in enumerate(self.sides):
            self.carry_out(i, side.session.start(self.now))

    def carry_out(self, i: int, effects: list[Effect]) -> None:
        """Do what side ``i``'s session asked: queue its frames towards the
        other side (delivered by :meth:`run`) and record the rest."""
        for effect in effects:
            if isinstance(effect, Send):
                self.queues[1 - i].append(effect.data)
            elif isinstance(effect, Close):
                self.sides[i].closed = effect.error or "clean"
            elif isinstance(effect, Applied):
                self.sides[i].applied += effect.entries
            elif isinstance(effect, EquivocationFound):
                self.sides[i].equivocations.append(effect)
            elif isinstance(effect, EntryRefused):
                self.sides[i].refused.append(effect)

    def run(self, max_steps: int = 100_000) -> None:
        """Deliver until no bytes are in flight."""
        for _ in range(max_steps):
            if not any(self.queues):
                return
            for i in (0, 1):
                while self.queues[i]:
                    data = self.queues[i].pop(0)
                    self.carry_out(i, self.sides[i].session.receive_data(data, self.now))
        raise AssertionError("link did not go quiet")

    def push(self, i: int, event: str) -> None:
        self.carry_out(i, self.sides[i].session.local_entries(event, self.now))
        self.run()

    def inject(self, i: int, data: bytes) -> None:
        """Deliver raw bytes to side ``i`` as if the peer had sent them."""
        self.carry_out(i, self.sides[i].session.receive_data(data, self.now))
