"""``headcount demo``: three replicas, offline periods, conflicts, convergence.

Runs entirely in this process on temporary data directories (gate-to-gate
networking arrives with the gate daemon). Every replica is a real one, with
its own SQLite store, key and hybrid clock; entries travel between them
through the same export/apply API that the sync protocol uses.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from headcount.core.identity import Role
from headcount.replica.replica import Replica

EVENT = "demo-2026"
Say = Callable[[str], None]


def _exchange(a: Replica, b: Replica) -> int:
    moved = 0
    for src, dst in ((a, b), (b, a)):
        for event in src.events():
            have = dst.version_vector(event) if event in dst.events() else {}
            moved += dst.apply_entries(src.export_since(event, have)).applied
    return moved


def _table(replicas: list[Replica], say: Say) -> None:
    say(
        f"  {'device':<8} {'participants':>12} {'checked in':>10} {'scans':>6} "
        f"{'conflicts':>9}  entries"
    )
    for r in replicas:
        s = r.status(EVENT)
        say(
            f"  {r.identity.name:<8} {s.participants:>12} {s.checked_in:>10} {s.scans:>6} "
            f"{s.open_conflicts:>9}  {sum(s.version_vector.values())}"
        )


def run_demo(
    participants: int = 200, seed: int = 7, say: Say = print, workdir: Path | None = None
) -> bool:
    """Run the demo; returns True if every replica converged with no lost or
    doubled scan."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="headcount-demo-") as tmp:
        base = workdir or Path(tmp)
        roles = [("admin", Role.ADMIN), ("north", Role.GATE), ("south", Role.GATE)]
        for name, role in roles:
            Replica.init(base / name, role=role, name=name)
        admin, north, south = (Replica.open(base / n) for n, _ in roles)
        replicas = [admin, north, south]
        # What enrolment does: each device knows the others' keys and
        # certified roles (an entry counts with its author's role only).
        for r in replicas:
            for other in replicas:
                if other is not r:
                    r.trust(other.device_id, other.identity.public_key_raw, other.role)
        try:
            say(f"1. admin creates event {EVENT!r} and imports {participants} participants")
            admin.create_event(EVENT, "headcount demo")
            admin.import_participants(
                EVENT,
                [
                    {"id": f"P{i:04d}", "name": f"Guest {i}", "qr_token": f"QR-{i:04d}"}
                    for i in range(participants)
                ],
            )
            _exchange(admin, north), _exchange(admin, south)
            say("2. the gates go offline and keep scanning (some guests at both gates)")
            issued = set()
            for gate in (north, south):
                for _ in range(participants // 2):
                    res = gate.check_in(EVENT, f"QR-{rng.randrange(participants):04d}")
                    issued.add(res.scan.id)
                    if rng.random() < 0.1:  # an operator scans the same ticket twice
                        again = gate.check_in(EVENT, res.scan.participant, scan_id=res.scan.id)
                        assert not again.recorded
            say("3. both gates edit the same guest's allergies while offline")
            north.upsert_participant(EVENT, "P0001", {"allergies": "peanuts"})
            south.upsert_participant(EVENT, "P0001", {"allergies": "shellfish"})
            _table(replicas, say)
            say("4. the network comes back: gates and admin exchange entries")
            for a, b in ((north, south), (north, admin), (south, admin), (north, south)):
                _exchange(a, b)
            _table(replicas, say)
            conflict = admin.conflicts(EVENT)[0]
            say(
                f"5. admin resolves conflict {conflict.id} "
                f"({' vs '.join(repr(c.value) for c in conflict.candidates)})"
                " -> 'peanuts, shellfish'"
            )
            admin.resolve_conflict(EVENT, conflict.id, value="peanuts, shellfish", use_value=True)
            for a, b in ((admin, north), (admin, south)):
                _exchange(a, b)
            _table(replicas, say)
            return _verify(replicas, issued, say)
        finally:
            for r in replicas:
                r.close()


def _verify(replicas: list[Replica], issued: set[str], say: Say) -> bool:
    views = []
    for r in replicas:
        ev = r.event(EVENT)
        views.append(
            (
                sorted(ev.doc.scans),
                [a.to_dict() for a in ev.attendance_list()],
                [p.to_dict() for p in ev.participants()],
                [c.id for c in ev.conflicts()],
            )
        )
    same = all(v == views[0] for v in views)
    scans = set(views[0][0])
    lost = issued - scans
    extra = scans - issued
    records = [a["participant"] for a in views[0][1]]
    doubled = len(records) - len(set(records))
    ok = same and not lost and not extra and not doubled
    say(
        f"6. verify: identical state on all devices: {same}; scans issued {len(issued)}, "
        f"lost {len(lost)}, unexpected {len(extra)}; attendance records counted twice: {doubled}"
    )
    say("OK: every device converged" if ok else "FAILED: devices disagree")
    return ok
