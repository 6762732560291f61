"""The sending side of a session (:class:`Sender`): the batches a flow's peer
lacks, within the window; snapshots for a peer behind the horizon; lost
batches again; acknowledgements; certificates ahead of the entries they
vouch for.

This is where a new entry becomes frames: :meth:`Sender.pump` asks the log
for segments after what the peer holds (``EventFlow.sent``), groups them
into ``Segments`` messages that fit a frame, and hands them to the
session's ``send``, which encodes them.
"""

from __future__ import annotations

from collections.abc import Callable

from headcount.core.errors import BehindHorizonError

from .config import SessionConfig
from .effects import Effect
from .flow import EventFlow, Flows, frames
from .logview import LogView
from .snapshot import snapshot_parts
from .status import PeerStatus
from .wire import Ack, Directory, Message, Segments

SendFn = Callable[[list[Message], float], list[Effect]]
"""Encode messages into one ``Send`` effect each, in order."""
FailFn = Callable[[str, str, float], list[Effect]]
"""End the session with a ``Goodbye`` of this code and message."""


class Sender:
    """What a session sends on its own initiative, flow by flow.

    Args:
        log: the local log.
        config: the session's limits.
        status: the session's status (counters of what was sent).
        flows: the session's flows.
        send: the session's encoder: every frame of the session goes
            through it (the simulator's fast wire intercepts it there).
        fail: the session's way to end in error.
    """

    def __init__(
        self,
        log: LogView,
        config: SessionConfig,
        status: PeerStatus,
        flows: Flows,
        send: SendFn,
        fail: FailFn,
    ) -> None:
        self.log = log
        self.config = config
        self.status = status
        self.flows = flows
        self._send = send
        self._fail = fail
        self._certs_sent: set[str] = set()  # devices whose certificate the peer was sent

    def pump(self, flow: EventFlow, now: float) -> list[Effect]:
        """Send batches the peer lacks, up to the window (a snapshot instead
        if it is behind the compaction horizon)."""
        effects: list[Effect] = []
        while flow.in_flight < self.config.window:
            try:
                segments = self.log.segments_since(flow.event, flow.sent, self._budget())
            except BehindHorizonError:
                effects += self._snapshot(flow, now)
                break
            if not segments:
                break
            flow.sent_through(seg.head for seg in segments)
            self.status.entries_sent += sum(len(seg.entries) for seg in segments)
            certs = self.certificates({seg.head.device for seg in segments})
            if certs:  # a device the peer may never have met: vouch for it first
                effects += self._send([Directory(tuple(certs))], now)
            for group in frames(segments, self.config.max_frame):
                if group is None:
                    return effects + self._fail(
                        "too_big", "an entry is larger than the frame limit", now
                    )
                self.flows.dispatched(flow, now)
                effects += self._send([Segments(flow.event, tuple(group))], now)
        return effects

    def retransmit(self, now: float) -> list[Effect]:
        """Batches unacknowledged for ``ack_timeout`` were lost (only an
        unreliable transport loses them): resend from what the peer has."""
        effects: list[Effect] = []
        for flow in self.flows.timed_out(now, self.config.ack_timeout):
            self.status.retries += flow.lost(now)
            effects += self.pump(flow, now)
        return effects

    def ack(self, flow: EventFlow, now: float) -> list[Effect]:
        """Acknowledge every ``Segments`` message of ``flow`` received so far."""
        count, flow.unacked, flow.ack_due = flow.unacked, 0, None
        if not count:
            return []
        return self._send([Ack(flow.event, self.log.version_vector(flow.event), count)], now)

    def acks_due(self, now: float) -> list[Effect]:
        """The delayed acknowledgements due by ``now``."""
        effects: list[Effect] = []
        for flow in self.flows.acks_due(now):
            effects += self.ack(flow, now)
        return effects

    def certificates(self, devices: set[str]) -> list[bytes]:
        """Certificates of ``devices`` not yet sent to this peer (each goes
        once; the caller sends them)."""
        new = devices - self._certs_sent - {self.status.peer, self.log.device_id}
        if not new:
            return []
        found = self.log.certificates(new)
        self._certs_sent |= found.keys()  # the others may be learnt later
        return [found[d] for d in sorted(found)]

    def _snapshot(self, flow: EventFlow, now: float) -> list[Effect]:
        """The peer lacks folded entries: send the snapshot, then carry on
        from the horizon once it acknowledges."""
        state, heads = self.log.snapshot_for(flow.event)
        parts: list[Message] = [*snapshot_parts(flow.event, state, heads, self._budget())]
        flow.sent_through(heads)
        self.flows.dispatched(flow, now)
        return self._send(parts, now)

    def _budget(self) -> int:
        return min(self.config.batch_bytes, self.config.max_frame // 2)


__all__ = ["FailFn", "SendFn", "Sender"]
