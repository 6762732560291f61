"""The session's transition table (``protocol/state.py``) is the whole truth:
every driver call and every peer message in every state does what its row
says, an illegal call raises ``LocalProtocolError``, and a message out of
place closes with ``Goodbye("unexpected")`` and changes nothing else."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from headcount.core.errors import LocalProtocolError, RemoteProtocolError
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import Close, Effect, Send, Session, SessionConfig, State
from headcount.protocol.state import IGNORED, TRANSITIONS, Input, accepts, next_state
from headcount.protocol.wire import (
    MESSAGE_TYPES,
    Ack,
    Directory,
    FrameDecoder,
    Goodbye,
    Hello,
    Message,
    Ping,
    Pong,
    RevocationRecord,
    Revocations,
    Segments,
    SnapshotPart,
    Summary,
    encode,
)

from .support.protocol import ConnectionPair, make_devices

EV = "ev"

# One well-formed instance of every message type: whatever refuses one of
# these refuses it for the state alone.
SAMPLES: dict[type, Message] = {
    Hello: Hello("peer-device", (EV,)),
    Summary: Summary(EV, {}, False),
    Segments: Segments(EV, ()),
    Ack: Ack(EV, {}),
    Ping: Ping(7),
    Pong: Pong(7),
    Goodbye: Goodbye("bye", ""),
    SnapshotPart: SnapshotPart(EV, 0, 10, b"12345", ()),  # half a snapshot: nothing installed
    Directory: Directory(()),
    Revocations: Revocations((RevocationRecord(b"body", bytes(64)),)),  # ignored by a MemLog
}

# The driver's calls, by the Input that names them.
CALLS: dict[Input, Callable[[Session, float], list[Effect]]] = {
    Input.START: lambda s, now: s.start(now),
    Input.DATA: lambda s, now: s.receive_data(b"", now),
    Input.LOCAL_ENTRIES: lambda s, now: s.local_entries(EV, now),
    Input.ANTI_ENTROPY: lambda s, now: s.anti_entropy(now),
    Input.TICK: lambda s, now: s.tick(now),
    Input.CLOSE: lambda s, now: s.close(now),
    Input.CONNECTION_LOST: lambda s, now: s.connection_lost(now),
}


def decoded(effects: list[Effect]) -> list[Message]:
    decoder = FrameDecoder()
    for effect in effects:
        if isinstance(effect, Send):
            decoder.receive_data(effect.data)
    out = []
    while (m := decoder.next_message()) is not None:
        out.append(m)
    return out


def session_in(state: State) -> tuple[Session, MemLog]:
    """A session in ``state`` whose log holds entries, and (when open) whose
    flow of ``EV`` has data in flight and acknowledged."""
    a, b = make_devices(2)
    a.roles[b.device_id] = "relay"  # its snapshot parts are acceptable (a gate's are not)
    for i in range(6):
        a.append(EV, b"entry %d" % i, i + 1)
        b.append(EV, b"other %d" % i, i + 1)
    if state is State.IDLE:
        return Session(a, 0.0), a
    if state is State.HANDSHAKE:
        session = Session(a, 0.0)
        session.start(0.0)
        return session, a
    pair = ConnectionPair(a, b, SessionConfig(batch_bytes=20, window=2))
    pair.run()
    a.append(EV, b"not yet acknowledged", 99)
    session = pair.sides[0].session
    session.local_entries(EV, 0.0)  # sent, never delivered: one batch in flight
    assert session.in_flight == {EV: 1}
    if state is State.CLOSED:
        session.close(0.0)
    assert session.state is state
    return session, a


def observable(session: Session, log: MemLog) -> dict:
    """Everything a peer's message could change, but the state itself."""
    status = session.status
    return {
        "vv": {e: log.version_vector(e) for e in log.events()},
        "in_flight": session.in_flight,
        "peer_holds": session.peer_holds(EV),
        "received": (status.entries_received, status.peer),
        "sent": (status.entries_sent, status.retries, status.pending_entries),
    }


# -- the table itself ---------------------------------------------------------------


def test_every_state_has_a_row_and_only_a_second_start_is_illegal():
    assert set(TRANSITIONS) == set(State)
    illegal = {(s, i) for s in State for i in Input if i not in TRANSITIONS[s]}
    assert illegal == {(s, Input.START) for s in (State.HANDSHAKE, State.OPEN, State.CLOSED)}


def test_every_message_type_is_accepted_somewhere_and_hello_only_in_the_handshake():
    for cls in MESSAGE_TYPES.values():
        assert any(cls in row for row in TRANSITIONS.values()), cls
    assert [s for s in State if Hello in TRANSITIONS[s]] == [State.HANDSHAKE]
    assert not any(cls in TRANSITIONS[State.IDLE] for cls in MESSAGE_TYPES.values())
    assert not any(cls in TRANSITIONS[State.CLOSED] for cls in MESSAGE_TYPES.values())


def test_next_state_says_whose_fault_an_illegal_trigger_is():
    with pytest.raises(LocalProtocolError, match=r"start\(\) in state open"):
        next_state(State.OPEN, Input.START)
    with pytest.raises(RemoteProtocolError) as info:
        next_state(State.OPEN, Hello)
    assert info.value.code == "unexpected"
    assert next_state(State.CLOSED, Input.TICK) is IGNORED
    assert next_state(State.HANDSHAKE, Hello) is State.OPEN
    assert accepts(State.OPEN, Input.TICK) and not accepts(State.IDLE, Input.TICK)


# -- driver calls --------------------------------------------------------------------


@pytest.mark.parametrize("state", list(State), ids=str)
@pytest.mark.parametrize("call", list(CALLS), ids=str)
def test_each_driver_call_in_each_state_does_what_the_table_says(state, call):
    session, log = session_in(state)
    before = observable(session, log)
    row = TRANSITIONS[state]
    if call not in row:
        with pytest.raises(LocalProtocolError):
            CALLS[call](session, 1.0)
        assert session.state is state and observable(session, log) == before
        return
    effects = CALLS[call](session, 1.0)
    if row[call] is IGNORED:
        assert effects == [] and session.state is state
        assert observable(session, log) == before
    else:
        assert session.state is row[call]


def test_a_second_start_changes_nothing():
    session, log = session_in(State.OPEN)
    before = observable(session, log)
    with pytest.raises(LocalProtocolError):
        session.start(1.0)
    assert session.state is State.OPEN and observable(session, log) == before


# -- peer messages ---------------------------------------------------------------------


def _out_of_place() -> list[tuple[State, type]]:
    return [
        (state, cls)
        for state in (State.HANDSHAKE, State.OPEN)
        for cls in MESSAGE_TYPES.values()
        if cls not in TRANSITIONS[state]
    ]


@pytest.mark.parametrize(
    ("state", "cls"), _out_of_place(), ids=lambda x: getattr(x, "__name__", str(x))
)
def test_a_message_out_of_place_closes_with_unexpected_and_changes_nothing(state, cls):
    session, log = session_in(state)
    before = observable(session, log)
    effects = session.receive_data(encode(SAMPLES[cls]), 1.0)
    assert [type(m) for m in decoded(effects)] == [Goodbye]
    assert decoded(effects)[0].code == "unexpected"
    assert effects[-1] == Close("unexpected")
    assert session.state is State.CLOSED
    assert observable(session, log) == before


@pytest.mark.parametrize(
    ("state", "cls"),
    [(s, cls) for s in (State.HANDSHAKE, State.OPEN) for cls in TRANSITIONS[s] if cls in SAMPLES],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_a_message_in_place_leads_where_the_table_says(state, cls):
    session, _ = session_in(state)
    effects = session.receive_data(encode(SAMPLES[cls]), 1.0)
    assert session.state is TRANSITIONS[state][cls]
    assert not any(isinstance(m, Goodbye) for m in decoded(effects))


def test_messages_before_start_wait_for_it():
    session, _ = session_in(State.IDLE)
    frames = encode(Ping(1)) + encode(Hello("peer-device", (EV,)))
    assert session.receive_data(frames, 0.0) == []
    assert session.state is State.IDLE
    effects = session.start(0.0)  # the Ping, read before the Hello, is out of place
    assert effects[-1] == Close("unexpected") and session.state is State.CLOSED


def test_messages_after_close_are_dropped():
    session, log = session_in(State.CLOSED)
    before = observable(session, log)
    for message in SAMPLES.values():
        assert session.receive_data(encode(message), 1.0) == []
    assert session.state is State.CLOSED and observable(session, log) == before
