"""Replicas that trust each other (what enrolment does), and what they read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from headcount import Replica

EV = "ev"

ReplicaFactory = Callable[..., Replica]
"""The ``make_replica`` fixture: ``make_replica(name, role=Role.GATE, **open_kw)``."""


def introduce(*replicas: Replica) -> None:
    """Make every one of ``replicas`` trust every other."""
    for a in replicas:
        for b in replicas:
            if a is not b:
                a.trust(b.device_id, b.identity.public_key_raw, b.role)


def view(r: Replica, event: str = EV) -> tuple[Any, ...]:
    """What a user reads of ``event`` (scans, participants, conflicts) and its
    version vector, to compare replicas."""
    ev = r.event(event)
    return (
        sorted(ev.doc.scans),
        [p.to_dict() for p in ev.participants(True)],
        [c.to_dict() for c in ev.conflicts()],
        r.version_vector(event),
    )
