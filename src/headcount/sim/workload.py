"""Workloads: real check-in updates, produced once by the real event code.

Every write of a run is made up front, from the "workload" random stream, by
one :class:`~headcount.eventdoc.EventDoc` / :class:`~headcount.event.Event`
per writing node (its device id, its role, a hybrid clock fed with simulated
time), so its ``update`` is a real Y update. The simulator then replays each
write at its origin at its time (``MemLog.append``), and the bytes are shared
by reference by every node that receives them.

Kinds:

``checkins``  check-in bursts at gates: each gate records bursts of ``burst``
              scans, 50 ms apart, each burst starting at a random time in
              ``[0, window]``.
``import``    bulk participant import at one admin node, 100 participants per
              entry (``updates`` entries), spread evenly over ``[0, window]``.
``critical``  an import of ``participants`` participants at the admin, then
              every gate edits the critical ``allergies`` field of the same few
              participants without seeing the other gates' edits: concurrent
              edits that must surface as conflicts.
``mixed``     10 % import, 10 % critical edits, 80 % check-ins.

Y client ids are drawn from the workload stream too (the default is random
per ``Doc``), so the update bytes, and with them every byte count, depend
only on the seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from headcount.core.event import IMPORT_CHUNK, Event
from headcount.core.eventdoc import EventDoc
from headcount.core.hlc import HybridClock
from headcount.core.model import LogEntry, ScanKind

EVENT = "sim"
T0_MS = 1_780_000_000_000
KINDS = ("checkins", "import", "critical", "mixed")
SCAN_GAP = 0.05  # seconds between two scans of one burst


@dataclass(frozen=True, slots=True)
class Write:
    """One local transaction of ``node`` at simulated time ``at``."""

    at: float
    node: int
    update: bytes
    hlc: int
    kind: str
    order: int  # generation order (causal); ties at the same time keep it


@dataclass(slots=True)
class Workload:
    kind: str
    writes: list[Write]  # in generation (causal) order
    participants: int
    writers: list[int] = field(default_factory=list)

    @property
    def update_bytes(self) -> int:
        return sum(len(w.update) for w in self.writes)

    def schedule(self) -> list[Write]:
        """The writes in the order the simulator replays them."""
        return sorted(self.writes, key=lambda w: (w.at, w.order))


Op = tuple[float, int, str, Any]  # (at, priority, kind, argument)


class _Generator:
    """The writing side of one node: its own event document."""

    def __init__(self, node: int, device: str, role: str) -> None:
        self.node = node
        # The Y client id derives from the device id: deterministic already.
        self.event = Event(EventDoc(EVENT, device, role, HybridClock()))
        self.ops: list[Op] = []

    def run(self, rng: random.Random, out: list[Write]) -> None:
        for at, _, kind, arg in sorted(self.ops, key=lambda op: (op[0], op[1])):
            wall = T0_MS + round(at * 1000)
            entries: list[LogEntry]
            if kind == "scan":
                pid, scan_kind = arg
                sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                _, entry = self.event.record_scan(
                    scan_kind, pid, gate=f"gate{self.node}", method="qr", wall_ms=wall,
                    scan_id=sid, allow_unknown=True,
                )  # fmt: skip
                entries = [entry] if entry is not None else []
            else:  # "import" or "edit": rows of participants
                entries, _ = self.event.upsert_participants(arg, wall)
            for e in entries:
                out.append(Write(at, self.node, e.update, e.hlc, kind, len(out)))


def make_workload(
    kind: str,
    updates: int,
    writers: list[int],
    devices: list[str],
    rng: random.Random,
    *,
    window: float = 0.0,
    burst: int = 20,
    participants: int | None = None,
) -> Workload:
    """Generate a workload of about ``updates`` log entries.

    Args:
        kind: one of :data:`KINDS`.
        writers: the nodes that write; the first is the admin (imports).
        devices: every node's device id, by node index.
        participants: size of the participant pool (default: enough for the
            workload).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown workload {kind!r} (one of {', '.join(KINDS)})")
    if not writers or updates < 1:
        raise ValueError("a workload needs at least one writer and one update")
    admin = writers[0]
    gates = writers if kind == "checkins" else writers[1:] or writers[:1]
    gens: dict[int, _Generator] = {}

    def gen(node: int) -> _Generator:
        if node not in gens:
            role = "admin" if node == admin else "gate"
            gens[node] = _Generator(node, devices[node], role)
        return gens[node]

    n_import, n_edit = _split(kind, updates)
    pool = participants or max(IMPORT_CHUNK * n_import, 1 if kind == "critical" else updates)
    if n_import:
        _plan_import(gen(admin), n_import, pool, window)
    if n_edit:
        _plan_edits(gen, gates, n_edit, pool, window, rng)
    n_scan = updates - n_import - n_edit
    if n_scan > 0:
        _plan_scans(gen, gates, n_scan, pool, window, burst, rng)
    out: list[Write] = []
    if admin in gens:
        gens[admin].run(rng, out)
    import_updates = [w.update for w in out]
    for node, g in sorted(gens.items()):
        if node != admin:
            g.event.doc.load(import_updates)  # gates had the participant list
            g.run(rng, out)
    return Workload(kind, out, pool, sorted(gens))


def _split(kind: str, updates: int) -> tuple[int, int]:
    """(import entries, edit entries) of a workload of ``updates`` entries."""
    if kind == "import":
        return updates, 0
    if kind == "critical":
        return 1, max(0, updates - 1)
    if kind == "mixed":
        n_import = max(1, updates // 10)
        return n_import, min(updates - n_import, max(1, updates // 10))
    return 0, 0


def _plan_import(g: _Generator, entries: int, pool: int, window: float) -> None:
    per = -(-pool // entries)
    for c in range(entries):
        rows = [
            {"id": f"p{k}", "name": f"Guest {k}", "qr_token": f"qr{k}", "allergies": "none"}
            for k in range(c * per, min(pool, (c + 1) * per))
        ]
        if rows:
            g.ops.append((window * c / entries, 0, "import", rows))


def _plan_edits(
    gen: Callable[[int], _Generator],
    gates: list[int],
    edits: int,
    pool: int,
    window: float,
    rng: random.Random,
) -> None:
    hot = max(1, min(pool, edits // (2 * len(gates)) or 1, 20))
    for j in range(edits):
        node = gates[j % len(gates)]
        pid = f"p{rng.randrange(hot)}"
        row = [{"id": pid, "allergies": f"allergy-{node}-{j}"}]
        gen(node).ops.append((window * rng.random(), 1, "edit", row))


def _plan_scans(
    gen: Callable[[int], _Generator],
    gates: list[int],
    scans: int,
    pool: int,
    window: float,
    burst: int,
    rng: random.Random,
) -> None:
    per_gate = [scans // len(gates) + (i < scans % len(gates)) for i in range(len(gates))]
    for node, count in zip(gates, per_gate, strict=True):
        done = 0
        while done < count:
            size = min(max(1, burst), count - done)
            start = window * rng.random()
            for k in range(size):
                pid = f"p{rng.randrange(pool)}"
                scan_kind = ScanKind.OUT if rng.random() < 0.1 else ScanKind.IN
                gen(node).ops.append((start + k * SCAN_GAP, 2, "scan", (pid, scan_kind)))
            done += size
