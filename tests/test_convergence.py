"""Property tests: replicas that exchange entries in any order converge.

Several replicas (an admin and gates) apply random operations, exchange
random subsets of their logs in random order with duplicates, and finally
exchange everything. Afterwards every replica must read identically, no
acknowledged scan may be missing, and conflicts must be exactly the ones the
causal history implies. Hypothesis prints the failing example and a
reproduction blob (``print_blob``).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from headcount import (
    HeadcountError,
    PermissionDeniedError,
    Replica,
    Role,
)

from .conftest import FakeClock
from .helpers import sync_all

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
            self._deliver(*step[1:])

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

    def _deliver(self, src: int, dst: int, seed: int) -> None:
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


@SETTINGS
@given(st.lists(op, min_size=8, max_size=50))
def test_any_delivery_order_converges_without_loss(steps: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        try:
            for step in steps:
                world.run(step)
            sync_all(world.replicas, rounds=2)
            views = [world.view(r) for r in world.replicas]
            assert views[1] == views[0]
            assert views[2] == views[0]
            scans, attendance, _, conflicts, _ = views[0]
            assert world.acked <= set(scans), "an acknowledged scan was lost"
            people = [a["participant"] for a in attendance]
            assert len(people) == len(set(people)), "two attendance records for one participant"
            for c in conflicts:
                event(f"conflict {c['kind']}")
            event(f"resolutions {len(world.replicas[0].event(EVENT).resolutions())}")
            fields = [(c["participant"], c["field"]) for c in conflicts]
            assert len(fields) == len(set(fields)), "more than one record for one conflict"
            for r in world.replicas:  # re-delivering everything changes nothing
                before = world.view(r)
                for other in world.replicas:
                    r.apply_entries(other.export_since(EVENT, {})) if other is not r else None
                assert world.view(r) == before
        finally:
            world.close()


@SETTINGS
@given(
    writers=st.lists(st.sampled_from([0, 1, 2]), min_size=2, max_size=3, unique=True),
    values=st.lists(st.sampled_from(ALLERGIES[1:]), min_size=3, max_size=3, unique=True),
    order_seed=st.integers(0, 2**32),
)
def test_concurrent_critical_writes_make_exactly_one_conflict(
    writers: list[int], values: list[str], order_seed: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        try:
            for n, i in enumerate(writers):
                world.replicas[i].upsert_participant(EVENT, "p1", {"allergies": values[n]})
            for src in writers:  # delivered in a random order, with duplicates
                for dst in range(3):
                    world._deliver(src, dst, order_seed + src * 7 + dst)
            sync_all(world.replicas, rounds=2)
            for r in world.replicas:
                conflicts = r.conflicts(EVENT)
                assert len(conflicts) == 1, conflicts
                c = conflicts[0]
                assert (c.record, c.field) == ("p1", "allergies")
                assert sorted(x.value for x in c.candidates) == sorted(values[: len(writers)])
                assert r.participant(EVENT, "p1").conflicted == ("allergies",)
            assert len({r.conflicts(EVENT)[0].id for r in world.replicas}) == 1
            # A gate cannot close it; a gate's write adds a candidate instead.
            gate = world.replicas[1]
            cid = gate.conflicts(EVENT)[0].id
            try:
                gate.resolve_conflict(EVENT, cid, value="x", use_value=True)
                raise AssertionError("a gate resolved a conflict")
            except PermissionDeniedError:
                pass
            gate.upsert_participant(EVENT, "p1", {"allergies": "gate-guess"})
            sync_all(world.replicas)
            cands = world.replicas[0].conflicts(EVENT)[0].candidates
            assert len(cands) == len(writers) + 1
            # The admin, having seen every candidate, closes it everywhere.
            admin = world.replicas[0]
            admin.resolve_conflict(
                EVENT, admin.conflicts(EVENT)[0].id, value="nuts; fish", use_value=True
            )
            sync_all(world.replicas)
            for r in world.replicas:
                assert r.conflicts(EVENT) == []
                assert r.participant(EVENT, "p1").fields["allergies"] == "nuts; fish"
        finally:
            world.close()


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(ALLERGIES)), max_size=12))
def test_sequential_critical_writes_never_conflict(writes: list[tuple[int, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        try:
            for i, value in writes:
                world.replicas[i].upsert_participant(EVENT, "p2", {"allergies": value})
                sync_all(world.replicas, rounds=1)  # everyone sees it before the next write
            for r in world.replicas:
                assert r.conflicts(EVENT) == []
                expected = writes[-1][1] if writes else "none"
                assert r.participant(EVENT, "p2").fields["allergies"] == expected
        finally:
            world.close()
