"""A relay that logs entries at once and applies them when read (lazy_apply):
whatever the order and however reads interleave, what it reads equals a
fresh load of its own log, once everything has arrived it reads exactly like
a relay that applies entries as they arrive, and it forwards everything it
accepted.

(Midway the two may differ, legitimately: an eager replica holds a device's
chain back behind an entry whose Y dependencies are missing, a lazy one
accepts the chain and lets yrs hold back only what really waits.)"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from headcount import Replica, Role

from .support.convergence import EVENT, SETTINGS, World, op
from .support.replicas import introduce


def relay(base: Path, name: str, world: World, *, lazy: bool) -> Replica:
    """A relay that knows the world's devices and their roles (as their
    certificates teach it), but never synced with them."""
    Replica.init(base / name, role=Role.RELAY, name=name)
    r = Replica.open(base / name, wall_clock=world.clock, durability="off")
    r.lazy_apply = r.keep_observers = lazy
    for w in world.replicas:
        r.trust(w.device_id, w.identity.public_key_raw, w.role)
    return r


def fresh_view(path: Path, world: World) -> tuple[Any, ...]:
    """What a lazy relay on ``path`` reads right after opening (its log only)."""
    copy = Replica.open(path, read_only=True, wall_clock=world.clock)
    copy.lazy_apply = True
    try:
        return world.view(copy)
    finally:
        copy.close()


@SETTINGS
@given(
    steps=st.lists(op, min_size=8, max_size=40),
    seed=st.integers(0, 2**32),
    reads=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_lazy_relay_reads_and_forwards_like_an_eager_one(
    steps: list[tuple[Any, ...]], seed: int, reads: list[bool]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        world = World(base)
        relays: list[Replica] = []
        try:
            for step in steps:
                world.run(step)
            eager = relay(base, "eager", world, lazy=False)
            lazy = relay(base, "lazy", world, lazy=True)
            relays += [eager, lazy]
            entries = [e for r in world.replicas for e in r.export_since(EVENT, {})]
            rng = random.Random(seed)
            rng.shuffle(entries)
            entries += rng.sample(entries, k=len(entries) // 4)  # duplicates too
            chunks = [entries[i::6] for i in range(6)]
            for chunk, read in zip(chunks, reads, strict=True):
                for r in relays:
                    result = r.apply_entries(chunk)
                    assert (result.rejected, result.refused) == ([], [])
                    r.store.flush()  # for fresh_view
                if read and EVENT in lazy.events():  # a read midway: the lazy relay catches up
                    assert world.view(lazy) == fresh_view(base / "lazy", world)
            assert lazy.version_vector(EVENT) == eager.version_vector(EVENT)
            assert world.view(lazy) == world.view(eager)
            assert world.acked <= set(world.view(lazy)[0])
            # what the lazy relay accepted reaches a gate that never met the writers
            gate = relay(base, "gate", world, lazy=False)
            relays.append(gate)
            result = gate.apply_entries(lazy.export_since(EVENT, {}))
            assert (result.rejected, result.refused) == ([], [])
            assert gate.version_vector(EVENT) == lazy.version_vector(EVENT)
            assert world.view(gate) == world.view(lazy)
        finally:
            for r in relays:
                r.close()
            world.close()


def test_undecodable_entries_are_refused_at_once(make_replica):
    admin = make_replica("admin", Role.ADMIN)
    admin.create_event(EVENT, "x")
    good = admin.export_since(EVENT, {})
    r = make_replica("relay", Role.RELAY)
    introduce(admin, r)
    r.lazy_apply = True
    bad = good[0].__class__(
        good[0].event, "dev-evil", 1, good[0].hlc, b"\xff\xff\xff\xff\xff\xff\xff\xff", b"\0" * 32
    )
    result = r.apply_entries([bad, *good])
    assert result.rejected == []
    assert [(v.device, v.reason) for v in result.refused] == [("dev-evil", "undecodable")]
    assert r.store.quarantined(EVENT) == {"dev-evil"}
    assert r.version_vector(EVENT) == admin.version_vector(EVENT)
    assert r.event(EVENT).name == admin.event(EVENT).name


def test_catching_up_in_slices_keeps_order_and_ends_current(make_replica):
    admin = make_replica("admin", Role.ADMIN)
    admin.create_event(EVENT, "x")
    admin.import_participants(EVENT, [{"id": f"p{i}", "name": "n"} for i in range(5)])
    r = make_replica("relay", Role.RELAY)
    introduce(admin, r)
    r.lazy_apply = True
    r.apply_entries(admin.export_since(EVENT, {}))
    assert r.event(EVENT).counts()["participants"] == 5  # loaded from the log
    for i in range(5):
        admin.check_in(EVENT, f"p{i}")
    r.apply_entries(admin.export_since(EVENT, r.version_vector(EVENT)))
    assert not r.is_current(EVENT)
    assert [r.catch_up_some(2) for _ in range(4)] == [2, 2, 1, 0]
    assert r.is_current(EVENT)
    assert sorted(r.event(EVENT).doc.scans) == sorted(admin.event(EVENT).doc.scans)
