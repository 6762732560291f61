"""Shared fixtures: replicas in temporary directories on a controllable clock.

Shared code (helpers, harnesses, conformance suites) lives in ``tests/support``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headcount import Replica, Role

from .support.clock import FakeClock
from .support.replicas import ReplicaFactory


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_replica(tmp_path: Path, clock: FakeClock) -> Iterator[ReplicaFactory]:
    """``make_replica(name, role=Role.GATE)`` -> an open replica; closed at teardown."""
    opened: list[Replica] = []

    def factory(name: str, role: Role = Role.GATE, **kw: object) -> Replica:
        path = tmp_path / name
        if not (path / "device.key").exists():
            Replica.init(path, role=role, name=name)
        replica = Replica.open(path, wall_clock=clock, **kw)
        opened.append(replica)
        return replica

    yield factory
    for replica in opened:
        replica.close()
