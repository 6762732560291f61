"""A session's per-event state (``protocol/flow.py``) and snapshots in parts
(``protocol/snapshot.py``), unit by unit."""

from __future__ import annotations

import pytest

from headcount.core.chain import Head
from headcount.core.errors import RemoteProtocolError
from headcount.protocol.flow import EventFlow, Flows
from headcount.protocol.snapshot import add_part, snapshot_parts
from headcount.protocol.wire import SnapshotPart

from .support.protocol import make_devices

EV = "ev"


def head(device: str, seq: int) -> Head:
    return Head(EV, device, seq, bytes(32), bytes(64))


def test_what_the_peer_holds_only_ever_rises():
    flow = EventFlow(EV)
    assert not flow.peer_known
    flow.heard({"d": 5, "e": 1})
    flow.heard({"d": 3, "f": 2})  # a late or replayed summary
    assert flow.peer == flow.sent == {"d": 5, "e": 1, "f": 2}
    assert flow.peer_known


def test_segments_from_the_peer_count_as_held_by_it():
    (log,) = make_devices(1)
    for i in range(3):
        log.append(EV, b"x%d" % i, i + 1)
    segments = log.segments_since(EV, {}, 1 << 20)
    flow = EventFlow(EV)
    flow.holds(segments)
    assert flow.peer == flow.sent == {log.device_id: 3} and flow.peer_known


def test_resync_falls_back_to_the_peer_once_per_ack_timeout_and_never_in_flight():
    flow = EventFlow(EV, peer={"d": 2}, sent={"d": 9}, in_flight=1)
    flow.resync(0.0, 5.0)
    assert flow.sent == {"d": 9}  # batches in flight: wait for their acks
    flow.in_flight = 0
    flow.resync(0.0, 5.0)
    assert flow.sent == {"d": 2}
    flow.sent = {"d": 9}
    flow.resync(4.0, 5.0)
    assert flow.sent == {"d": 9}  # not again within ack_timeout
    flow.resync(5.0, 5.0)
    assert flow.sent == {"d": 2}


def test_lost_batches_restart_from_the_peer():
    flow = EventFlow(EV, peer={"d": 2}, sent={"d": 9}, in_flight=3, progress=1.0)
    assert flow.lost(7.0) == 3
    assert (flow.in_flight, flow.sent, flow.progress) == (0, {"d": 2}, 7.0)


def test_delayed_acks_fall_due_in_the_order_they_were_owed():
    flows = Flows()
    a, b = flows.of("a"), flows.of("b")
    flows.owe_ack(b, 1.0)
    flows.owe_ack(a, 1.0)
    flows.owe_ack(b, 9.0)  # already owed: the first deadline stands
    assert b.ack_due == 1.0
    assert flows.acks_due(0.5) == []
    assert [f.event for f in flows.acks_due(1.0)] == ["b", "a"]
    assert sorted(flows.deadlines(5.0)) == [1.0, 1.0]


def test_lost_batches_are_resent_in_the_order_the_flows_started():
    flows = Flows()
    a, b = flows.of("a"), flows.of("b")
    flows.dispatched(b, 0.0)
    flows.acknowledged(a, 1, 0.0)  # an ack starts a flow too
    flows.dispatched(a, 0.0)
    assert flows.in_flight() == {"b": 1, "a": 1}
    assert flows.sending()
    assert flows.timed_out(4.0, 5.0) == []
    assert [f.event for f in flows.timed_out(5.0, 5.0)] == ["b", "a"]
    assert sorted(flows.deadlines(5.0)) == [5.0, 5.0]


def test_a_snapshot_goes_in_parts_and_comes_back_whole():
    heads = (head("d", 4),)
    parts = snapshot_parts(EV, b"0123456789", heads, 4)
    assert [(p.offset, p.data, p.heads) for p in parts] == [
        (0, b"0123", heads),
        (4, b"4567", ()),
        (8, b"89", ()),
    ]
    incoming = None
    for part in parts:
        incoming = add_part(incoming, part, limit=100)
        assert incoming.complete == (part is parts[-1])
    assert incoming is not None and bytes(incoming.data) == b"0123456789"
    assert incoming.heads == heads
    assert [p.data for p in snapshot_parts(EV, b"", heads, 4)] == [b""]  # one part at least


def test_snapshot_parts_out_of_order_or_too_big_are_refused():
    parts = snapshot_parts(EV, b"0123456789", (), 4)
    with pytest.raises(RemoteProtocolError) as info:
        add_part(None, parts[1], limit=100)
    assert info.value.code == "malformed"
    started = add_part(None, parts[0], limit=100)
    with pytest.raises(RemoteProtocolError):
        add_part(started, parts[2], limit=100)
    assert bytes(started.data) == b"0123"  # unchanged
    with pytest.raises(RemoteProtocolError) as info:
        add_part(None, SnapshotPart(EV, 0, 101, b"", ()), limit=100)
    assert info.value.code == "too_big"


def test_the_first_message_in_flight_starts_the_retransmission_clock():
    """A snapshot sent with nothing else in flight must time out
    ``ack_timeout`` after it left, not at once (a deadline in the past makes
    a driver wake in a loop until the Ack arrives)."""
    flows = Flows()
    flow = flows.of(EV)
    flows.dispatched(flow, 100.0)
    flows.dispatched(flow, 101.0)  # a second message does not restart it
    assert flow.progress == 100.0
    assert flows.deadlines(5.0) == [105.0]
    assert flows.timed_out(104.9, 5.0) == []
    assert flows.timed_out(105.0, 5.0) == [flow]
