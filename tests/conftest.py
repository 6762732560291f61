"""Shared fixtures: replicas in temporary directories on a controllable clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from headcount import Replica, Role

T0 = 1_780_000_000_000  # a fixed wall time (ms) so tests are reproducible


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


ReplicaFactory = Callable[..., Replica]


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
