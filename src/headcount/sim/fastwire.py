"""The "fast wire": the real session, with decoding skipped on in-process links.

Every ``Send`` a session returns carries the message object next to the
encoded frame (``Send.message``); the frame is still produced by the real
encoder, so byte counts are exact. On the fast wire the receiver gets the
message object through :meth:`~headcount.protocol.session.Session.receive_message`,
which does what ``receive_data`` does for one frame (liveness, byte count,
dispatch, a protocol error closes the session) minus the decoding.

Decoding is where the time goes (it rebuilds and re-hashes every entry: ~3 us
per entry, i.e. 30 s for the ten million entry deliveries of a 1000-node,
10,000-update run); on the fast wire the receiver gets the sender's entry
objects, so the memoised hasher hashes each entry once. The simulator's
"bytes" wire drives ``receive_data`` instead; a test checks that both wires
give identical metrics and traces for the same seed.

This module names frames for traces and metrics (:func:`frame_type`).
"""

from __future__ import annotations

import re

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
