"""Every state transition of a session, as data (h11's ``_state.py``).

A session is in one of four :class:`State` s. Two kinds of trigger move it:
the driver's calls (:class:`Input`) and the peer's messages (their types).
:data:`TRANSITIONS` gives, for every state, each trigger it accepts and the
state that trigger leads to; :func:`next_state` is the one place that reads
it. A trigger absent from its state's row is an error, and the error says
whose fault it is:

* a driver's call: :class:`LocalProtocolError` (a bug in the driver);
* a peer's message: :class:`RemoteProtocolError` with code ``unexpected``,
  which the session turns into a ``Goodbye`` and a close.

:data:`IGNORED` marks calls that are legal but do nothing in that state: a
driver broadcasts news to all its sessions, some still connecting or just
closed.

The table knows nothing of what a transition does (sending, applying): that
is the session's business. Both peers run the same table: the protocol is
symmetric, there are no client and server roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from headcount.core.errors import LocalProtocolError, RemoteProtocolError

from .wire import (
    Ack,
    Directory,
    Goodbye,
    Hello,
    Message,
    Ping,
    Pong,
    Revocations,
    Segments,
    SnapshotPart,
    Summary,
)


class State(StrEnum):
    """A session's state. ``IDLE``: created, ``start`` not called yet;
    ``HANDSHAKE``: our ``Hello`` sent, the peer's awaited; ``OPEN``: both
    ``Hello`` s exchanged, data flows; ``CLOSED``: for good."""

    IDLE = "idle"
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class Input(StrEnum):
    """A call into the session: the driver's methods, and ``FAIL``, the
    session's own verdict that the connection must end (bad peer data, a
    silent peer, an entry no frame can hold)."""

    START = "start"
    DATA = "receive_data"
    LOCAL_ENTRIES = "local_entries"
    ANTI_ENTROPY = "anti_entropy"
    TICK = "tick"
    CLOSE = "close"
    CONNECTION_LOST = "connection_lost"
    FAIL = "fail"


Trigger = Input | type[Message]

IGNORED: Final = None
"""The trigger is legal in this state and does nothing."""

_IDLE, _HANDSHAKE, _OPEN, _CLOSED = State.IDLE, State.HANDSHAKE, State.OPEN, State.CLOSED

TRANSITIONS: Final[Mapping[State, Mapping[Trigger, State | None]]] = MappingProxyType(
    {
        _IDLE: {
            Input.START: _HANDSHAKE,
            Input.DATA: _IDLE,  # buffered until start(): the peer may speak first
            Input.LOCAL_ENTRIES: IGNORED,
            Input.ANTI_ENTROPY: IGNORED,
            Input.TICK: IGNORED,  # no timers run yet
            Input.CLOSE: _CLOSED,
            Input.CONNECTION_LOST: _CLOSED,
            Input.FAIL: _CLOSED,
        },
        _HANDSHAKE: {
            Hello: _OPEN,
            Goodbye: _CLOSED,
            Input.DATA: _HANDSHAKE,
            Input.LOCAL_ENTRIES: IGNORED,  # the Hello exchange offers everything anyway
            Input.ANTI_ENTROPY: IGNORED,
            Input.TICK: _HANDSHAKE,  # idle timeout and keepalive
            Input.CLOSE: _CLOSED,
            Input.CONNECTION_LOST: _CLOSED,
            Input.FAIL: _CLOSED,
        },
        _OPEN: {
            Summary: _OPEN,
            Segments: _OPEN,
            Ack: _OPEN,
            SnapshotPart: _OPEN,
            Directory: _OPEN,
            Revocations: _OPEN,
            Ping: _OPEN,
            Pong: _OPEN,
            Goodbye: _CLOSED,
            Input.DATA: _OPEN,
            Input.LOCAL_ENTRIES: _OPEN,
            Input.ANTI_ENTROPY: _OPEN,
            Input.TICK: _OPEN,  # also delayed acks, retransmission, anti-entropy
            Input.CLOSE: _CLOSED,
            Input.CONNECTION_LOST: _CLOSED,
            Input.FAIL: _CLOSED,
        },
        _CLOSED: {
            Input.DATA: IGNORED,
            Input.LOCAL_ENTRIES: IGNORED,
            Input.ANTI_ENTROPY: IGNORED,
            Input.TICK: IGNORED,
            Input.CLOSE: IGNORED,
            Input.CONNECTION_LOST: IGNORED,
            # A second failure within the call that closed the session (two
            # events whose entries no frame can hold): it says Goodbye again.
            Input.FAIL: _CLOSED,
        },
    }
)


def next_state(state: State, trigger: Trigger) -> State | None:
    """The state ``trigger`` leads to from ``state``.

    Returns:
        The next state (possibly ``state`` itself), or :data:`IGNORED` (None)
        if the trigger is legal in ``state`` but does nothing.

    Raises:
        LocalProtocolError: ``trigger`` is an :class:`Input` that is illegal in
            ``state`` (such as ``start`` twice).
        RemoteProtocolError: ``trigger`` is a message type the peer may not
            send in ``state`` (code ``unexpected``).
    """
    row = TRANSITIONS[state]
    if trigger in row:
        return row[trigger]
    if isinstance(trigger, Input):
        raise LocalProtocolError(f"{trigger}() in state {state}")
    raise RemoteProtocolError(
        f"{trigger.__name__} is not allowed in state {state}", code="unexpected"
    )


def accepts(state: State, trigger: Trigger) -> bool:
    """Whether ``trigger`` does something in ``state`` (legal and not ignored)."""
    return TRANSITIONS[state].get(trigger) is not None


__all__ = ["IGNORED", "TRANSITIONS", "Input", "State", "Trigger", "accepts", "next_state"]
