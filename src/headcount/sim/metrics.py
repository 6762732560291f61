"""What a run reports. Definitions (also in docs/simulator.md):

converged            every node (including nodes that joined) holds every
                     entry of the workload, once, at the end of the run.
time_to_converge     simulated seconds from the last write to the moment the
                     last node received its last missing entry.
healed_at            when the fault plan ends (0 without faults): after it,
                     no loss, no partition, every node up.
time_after_heal      simulated seconds from ``healed_at`` to convergence (0 if
                     the run converged before the faults ended).
rounds               gossip rounds from the last write to that moment: round k
                     starts at k * round_period; writes at t = 0 and full
                     dissemination during round k give ``rounds = k``.
messages, bytes      every frame the sessions sent up to the end of the round
                     in which the run converged (frames later lost included),
                     and per message type.
useful               entries applied by a receiver that did not have them:
                     (n - 1) * entries for a full dissemination without churn.
redundant            entries received but not applied: ``duplicates`` (the
                     receiver already had them) plus entries discarded because
                     an earlier entry of their chain was missing (a gap).
bytes_per_useful     bytes / useful: everything on the wire (summaries, acks,
                     handshakes, redundant copies) charged to the useful
                     entries.
payload_per_entry    the mean size of one entry's Y update.
payload_bytes        update bytes inside every Segments frame sent (redundant
                     copies included).
framing_per_entry    (bytes of Segments frames - update bytes inside them) /
                     entries sent: the signature, hashes, device, sequence
                     numbers, timestamp and msgpack/frame headers of one
                     entry on the wire.
idle_bytes_per_node_round  after convergence, bytes per node per gossip round
                     (anti-entropy summaries, keepalives) over ``idle_rounds``
                     rounds.
conflicts            (materialising mode) open manual-merge conflicts, which
                     must be the same on every node and in the oracle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class Metrics:
    # the run
    seed: int
    n: int
    topology: str
    fanout: int
    workload: str
    entries: int
    writers: int
    mode: str
    wire: str
    eager_push: bool
    transport: str
    # convergence
    converged: bool = False
    converged_at: float | None = None
    time_to_converge: float | None = None
    time_after_heal: float | None = None
    rounds: int | None = None
    sim_time: float = 0.0
    healed_at: float = 0.0
    nodes_final: int = 0
    # traffic up to convergence
    messages: int = 0
    bytes: int = 0
    by_type: dict[str, list[int]] = field(default_factory=dict)
    useful: int = 0
    received: int = 0
    redundant: int = 0
    duplicates: int = 0
    entries_sent: int = 0
    payload_bytes: int = 0
    bytes_per_useful: float | None = None
    payload_per_entry: float = 0.0
    framing_per_entry: float | None = None
    # idle traffic after convergence
    idle_rounds: int = 0
    idle_bytes: int = 0
    idle_bytes_per_node_round: float | None = None
    # faults and connections
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    dropped_partition: int = 0
    cuts: int = 0
    dropped_cut: int = 0
    dropped_closed: int = 0
    connections: int = 0
    connect_failures: int = 0
    closes: dict[str, int] = field(default_factory=dict)
    crashes: int = 0
    restarts: int = 0
    leaves: int = 0
    joins: int = 0
    equivocations: int = 0
    # materialising mode
    semantic_converged: bool | None = None
    conflicts: int | None = None
    # cost of the run (work done once thanks to the memos)
    verifications: int = 0
    verifications_real: int = 0
    hashes_real: int = 0
    events: int = 0
    trace_digest: str = ""
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def deterministic(self) -> dict[str, Any]:
        """Everything but the wall time: equal for equal seeds."""
        out = self.to_dict()
        out.pop("wall_seconds")
        return out

    def summary(self) -> str:
        """A few human-readable lines."""
        conv = (
            f"converged in {self.rounds} rounds ({self.time_to_converge:.3f} s simulated)"
            if self.converged and self.time_to_converge is not None
            else "DID NOT CONVERGE"
        )
        lines = [
            f"{self.n} nodes, {self.topology}, fanout {self.fanout}, seed {self.seed}: "
            f"{self.entries} entries ({self.workload}, {self.writers} writers, {self.mode}, "
            f"{self.wire} wire, {self.transport}{', eager push' if self.eager_push else ''})",
            conv,
            f"messages {self.messages:,}  bytes {self.bytes:,}  useful deliveries {self.useful:,}"
            f"  redundant {self.redundant:,} (duplicates {self.duplicates:,})",
        ]
        if self.bytes_per_useful is not None:
            lines.append(
                f"bytes per useful entry {self.bytes_per_useful:.1f} (update "
                f"{self.payload_per_entry:.1f} + framing/signature "
                f"{self.framing_per_entry or 0:.1f} per entry sent)"
            )
        if self.idle_bytes_per_node_round is not None:
            lines.append(
                f"idle traffic {self.idle_bytes_per_node_round:.1f} bytes per node per round"
                f" ({self.idle_rounds} rounds)"
            )
        faults = (self.lost, self.duplicated, self.reordered, self.dropped_partition, self.cuts)
        if any(faults) or self.crashes or self.leaves or self.joins:
            lines.append(
                f"faults ({self.transport}): lost {faults[0]}, duplicated {faults[1]}, "
                f"reordered {faults[2]}, dropped by partitions {faults[3]}, connections "
                f"broken {faults[4]}, crashes {self.crashes}, leaves {self.leaves}, "
                f"joins {self.joins}"
            )
        lines.append(
            f"connections {self.connections} (failed {self.connect_failures}), closes {self.closes}"
        )
        if self.semantic_converged is not None:
            lines.append(
                f"semantic convergence: {'yes' if self.semantic_converged else 'NO'}, "
                f"conflicts {self.conflicts}"
            )
        lines.append(
            f"signatures verified {self.verifications_real:,} for real of {self.verifications:,}"
            f"; {self.events:,} simulator events; trace {self.trace_digest[:16]}"
            f"; wall {self.wall_seconds:.2f} s"
        )
        return "\n".join(lines)
