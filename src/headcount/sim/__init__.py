"""A deterministic network simulator that drives the real sync protocol.

See docs/simulator.md. Entry points: :class:`SimConfig` and :func:`run` (or
:class:`Simulation` for access to the nodes after a run), and the
``headcount sim`` command.
"""

from .faults import Crash, FaultPlan, Join, Leave, random_plan
from .metrics import Metrics
from .network import LAN, WAN, FaultRates, LinkParams, Partition
from .simulation import SimConfig, Simulation, run
from .workload import Workload, make_workload

__all__ = [
    "LAN",
    "WAN",
    "Crash",
    "FaultPlan",
    "FaultRates",
    "Join",
    "Leave",
    "LinkParams",
    "Metrics",
    "Partition",
    "SimConfig",
    "Simulation",
    "Workload",
    "make_workload",
    "random_plan",
    "run",
]
