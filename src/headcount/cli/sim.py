"""``headcount sim``: run one deterministic simulation and print its metrics.

Registered into the main parser by :func:`register` (one line in
``headcount/cli.py``). The same flags and seed always print the same
metrics (``wall_seconds`` aside); see docs/simulator.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from headcount.core.errors import InputError
from headcount.sim.faults import FaultPlan, random_plan
from headcount.sim.network import TRANSPORTS, FaultRates
from headcount.sim.scheduler import Streams
from headcount.sim.simulation import MODES, WIRES, SimConfig, Simulation
from headcount.sim.topology import KINDS as TOPOLOGIES
from headcount.sim.workload import KINDS as WORKLOADS

from .util import Command


def register(sub: Any, cmd: Command) -> None:
    """Add the ``sim`` subcommand with the main CLI's ``cmd`` helper."""
    p = cmd(sub, "sim", _sim, "run one seeded network simulation of the sync protocol")
    g = p.add_argument_group("network")
    g.add_argument("-n", "--nodes", type=int, default=100, help="nodes (default 100)")
    g.add_argument("--topology", choices=TOPOLOGIES, default="mesh", help="default mesh")
    g.add_argument("--clusters", type=int, default=4, help="LAN clusters behind the relay")
    g.add_argument("--degree", type=int, default=6, help="mean degree of the random graph")
    g.add_argument("--fanout", type=int, default=1, help="peers per gossip round (default 1)")
    g.add_argument("--period", type=float, default=1.0, help="gossip round length, s")
    g.add_argument("--phase-jitter", type=float, default=0.0, help="round offsets (0..1)")
    g.add_argument("--max-connections", type=int, default=8, help="per node (default 8)")
    g.add_argument("--eager-push", action="store_true", help="also push new entries at once")
    g = p.add_argument_group("workload")
    g.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    g.add_argument("--workload", choices=WORKLOADS, default="checkins", help="default checkins")
    g.add_argument("--updates", type=int, default=1000, help="log entries (default 1000)")
    g.add_argument("--writers", type=int, default=10, help="writing nodes (default 10)")
    g.add_argument("--window", type=float, default=0.0, help="writes spread over [0, W] s")
    g.add_argument("--burst", type=int, default=20, help="scans per burst at a gate")
    g.add_argument("--participants", type=int, help="participant pool size")
    g = p.add_argument_group("faults (active over [0, --fault-time])")
    g.add_argument("--loss", type=float, default=0.0, help="message loss probability")
    g.add_argument("--duplicate", type=float, default=0.0, help="duplication probability")
    g.add_argument("--reorder", type=float, default=0.0, help="reordering probability")
    g.add_argument("--partitions", type=int, default=0, help="random partitions")
    g.add_argument("--crashes", type=int, default=0, help="crash-and-restart events")
    g.add_argument("--churn", type=int, default=0, help="leave-and-rejoin events")
    g.add_argument("--joins", type=int, default=0, help="fresh nodes joining")
    g.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="stream",
        help="how faults show: stream (TCP-like, the default) or datagram",
    )
    g.add_argument("--fault-time", type=float, default=30.0, help="faulty period, s")
    g = p.add_argument_group("run")
    g.add_argument("--mode", choices=MODES, default="tracking", help="default tracking")
    g.add_argument("--wire", choices=WIRES, default="fast", help="default fast")
    g.add_argument("--idle-rounds", type=int, default=0, help="rounds measured after convergence")
    g.add_argument("--max-time", type=float, default=3600.0, help="simulated time limit, s")
    g.add_argument("--trace", type=Path, help="write the trace records to this file")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The :class:`SimConfig` the flags describe (faults drawn from the seed)."""
    rates = FaultRates(args.loss, args.duplicate, args.reorder)
    plan = FaultPlan()
    if rates.any or args.partitions or args.crashes or args.churn or args.joins:
        plan = random_plan(
            Streams(args.seed)("faults"), args.nodes, args.fault_time, rates=rates,
            partitions=args.partitions, crashes=args.crashes, churn=args.churn, joins=args.joins,
        )  # fmt: skip
    return SimConfig(
        n=args.nodes, seed=args.seed, topology=args.topology, clusters=args.clusters,
        degree=args.degree, fanout=args.fanout, round_period=args.period,
        phase_jitter=args.phase_jitter, workload=args.workload, updates=args.updates,
        writers=args.writers, window=args.window, burst=args.burst,
        participants=args.participants, mode=args.mode, wire=args.wire,
        eager_push=args.eager_push, transport=args.transport,
        max_connections=args.max_connections, faults=plan,
        idle_rounds=args.idle_rounds, max_time=args.max_time, keep_trace=bool(args.trace),
    )  # fmt: skip


def _sim(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    try:
        config = config_from_args(args)
        sim = Simulation(config)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    metrics = sim.run()
    if args.trace:
        args.trace.write_text("\n".join(sim.trace.records) + "\n", "utf-8")
    return metrics.to_dict(), metrics.summary()
