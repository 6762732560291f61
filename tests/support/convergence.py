"""Three replicas of one event applying random operations and exchanging random
parts of their logs (the property tests of convergence and of the lazy relay)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from headcount import HeadcountError, Replica, Role

from .clock import FakeClock
from .sync import sync_all

EVENT = "ev"
PIDS = ["p0", "p1", "p2", "p3"]
NAMES = ["Ann", "Bob", "Cy"]
ALLERGIES = ["none", "nuts", "fish", "gluten"]
ROLES = [Role.ADMIN, Role.GATE, Role.GATE]

edit = st.tuples(
    st.just("edit"),
    st.integers(0, 2),
    st.sampled_from(PIDS),
    st.sampled_from(["name", "allergies", "allergies", "phone"]),
    st.integers(0, 3),
)
op = st.one_of(
    st.tuples(
        st.just("scan"), st.integers(0, 2), st.sampled_from(PIDS), st.booleans(), st.integers(0, 5)
    ),
    edit,
    edit,
    st.tuples(st.just("delete"), st.just(0), st.sampled_from(PIDS)),
    st.tuples(st.just("resolve"), st.just(0), st.integers(0, 3)),
    st.tuples(st.just("deliver"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2**32)),
    st.tuples(st.just("tick"), st.integers(0, 5000)),
)


class World:
    """Three replicas of one event on a shared fake clock."""

    def __init__(self, base: Path) -> None:
        self.clock = FakeClock()
        self.replicas: list[Replica] = []
        for i, role in enumerate(ROLES):
            Replica.init(base / f"r{i}", role=role, name=f"r{i}")
            self.replicas.append(
                Replica.open(base / f"r{i}", wall_clock=self.clock, durability="off")
            )
        admin = self.replicas[0]
        admin.create_event(EVENT, "prop")
        admin.import_participants(
            EVENT, [{"id": p, "name": "x", "allergies": "none"} for p in PIDS]
        )
        sync_all(self.replicas, rounds=1)
        self.acked: set[str] = set()
        self.keys: list[tuple[str, str, bool]] = []  # (key, pid, is_in) for re-sends

    def close(self) -> None:
        for r in self.replicas:
            r.close()

    def run(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "tick":
            self.clock.advance(step[1])
        elif kind == "scan":
            self._scan(*step[1:])
        elif kind == "edit":
            _, i, pid, field, v = step
            value = ([*NAMES, "Dee"])[v] if field == "name" else ALLERGIES[v]
            try:
                self.replicas[i].upsert_participant(EVENT, pid, {field: value})
            except HeadcountError:
                pass  # e.g. the participant was deleted here: refused, nothing written
        elif kind == "delete":
            try:
                self.replicas[0].delete_participant(EVENT, step[2])
            except HeadcountError:
                pass
        elif kind == "resolve":
            self._resolve(step[2])
        elif kind == "deliver":
            self.deliver(*step[1:])

    def _scan(self, i: int, pid: str, is_in: bool, resend: int) -> None:
        r = self.replicas[i]
        key = None
        if resend and self.keys:
            key, pid, is_in = self.keys[resend % len(self.keys)]
        fn = r.check_in if is_in else r.check_out
        try:
            res = fn(EVENT, pid, gate=f"g{i}", scan_id=key)
        except HeadcountError:
            return  # deleted participant on this replica
        self.acked.add(res.scan.id)
        self.keys.append((res.scan.id, pid, is_in))

    def _resolve(self, which: int) -> None:
        admin = self.replicas[0]
        open_ = admin.conflicts(EVENT)
        if not open_:
            return
        c = open_[which % len(open_)]
        if c.kind.value == "modified_deleted":
            admin.resolve_conflict(EVENT, c.id, restore=bool(which % 2))
        else:
            admin.resolve_conflict(EVENT, c.id, choose=c.candidates[which % len(c.candidates)].dot)

    def deliver(self, src: int, dst: int, seed: int) -> None:
        """A random subset of src's log, shuffled, with duplicates."""
        if src == dst:
            return
        rng = random.Random(seed)
        entries = self.replicas[src].export_since(EVENT, {})
        batch = [e for e in entries if rng.random() < 0.6]
        batch += rng.sample(batch, k=len(batch) // 3)
        rng.shuffle(batch)
        result = self.replicas[dst].apply_entries(batch)
        assert not result.rejected, result.rejected
        assert not result.refused, result.refused

    def view(self, r: Replica) -> tuple[Any, ...]:
        ev = r.event(EVENT)
        return (
            sorted(ev.doc.scans),
            [a.to_dict() for a in ev.attendance_list()],
            [p.to_dict() for p in ev.participants(include_deleted=True)],
            [c.to_dict() for c in ev.conflicts()],
            ev.config(),
        )


SETTINGS = settings(
    max_examples=int(os.environ.get("HEADCOUNT_EXAMPLES", "60")),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
