"""The "fast wire": the real session, with decoding skipped on in-process links.

:class:`MessageSession` is :class:`~headcount.session.Session` unchanged
except at its two ends:

* every ``Send`` it returns is a :class:`MessageSend`, which carries the
  message object next to the encoded frame. The frame is still produced by
  the real encoder, so the byte counts are exact;
* :meth:`MessageSession.receive_message` feeds a message object to the state
  machine, doing what :meth:`~headcount.session.Session.receive_data` does for
  one frame (liveness, byte count, dispatch, a protocol error closes the
  session) minus the decoding.

Decoding is where the time goes (it rebuilds and re-hashes every entry: ~3 us
per entry, i.e. 30 s for the ten million entry deliveries of a 1000-node,
10,000-update run); on the fast wire the receiver gets the sender's entry
objects, so the memoised hasher hashes each entry once. The simulator's
"bytes" wire drives the unmodified ``receive_data`` instead; a test checks
that both wires give identical metrics and traces for the same seed.

``receive_message`` uses two private members of ``Session`` (``_handle`` and
``_fail``): the proper home of this method is ``Session`` itself (see
docs/simulator.md, "Fast wire").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from headcount.core.errors import RemoteProtocolError
from headcount.protocol.session import Effect, Send, Session, State
from headcount.protocol.wire import MESSAGE_TYPES, Message, peek_message_type


def type_label(cls: type[Message]) -> str:
    """A message class's label in traces and metrics: its name in snake case
    (``SnapshotPart`` -> ``snapshot_part``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


_LABELS = {cls: type_label(cls) for cls in MESSAGE_TYPES.values()}


def frame_type(data: bytes) -> str:
    """The label of one whole frame's message type, or ``"unknown"``."""
    cls = peek_message_type(data)
    return "unknown" if cls is None else _LABELS[cls]


@dataclass(frozen=True, slots=True)
class MessageSend(Send):
    """A ``Send`` that also carries the message it encodes."""

    message: Message


class MessageSession(Session):
    """The real session, with a message-level input for in-process links."""

    def _send(self, messages: list[Message], now: float) -> list[Effect]:
        effects = super()._send(messages, now)
        # Session._send returns exactly one Send per message, in order.
        return [
            MessageSend(e.data, m, event=e.event) if isinstance(e, Send) else e
            for e, m in zip(effects, messages, strict=True)
        ]

    def receive_message(self, message: Message, size: int, now: float) -> list[Effect]:
        """Like ``receive_data(encode(message))`` without the decoding."""
        if self.state in (State.IDLE, State.CLOSED):
            return []
        self._last_heard = now
        self.status.bytes_received += size
        try:
            return self._handle(message, now)
        except RemoteProtocolError as exc:
            return self._fail(exc.code, exc.message, now)
