"""Property tests: replicas that exchange entries in any order converge.

Several replicas (an admin and gates) apply random operations, exchange
random subsets of their logs in random order with duplicates, and finally
exchange everything. Afterwards every replica must read identically, no
acknowledged scan may be missing, and conflicts must be exactly the ones the
causal history implies. Hypothesis prints the failing example and a
reproduction blob (``print_blob``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from headcount import PermissionDeniedError

from .support.convergence import ALLERGIES, EVENT, SETTINGS, World, op
from .support.sync import sync_all


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
                    world.deliver(src, dst, order_seed + src * 7 + dst)
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
