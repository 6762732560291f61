"""What keeps a relay's fan-out cheap: delayed, cumulative acknowledgements;
never echoing entries back to the peer that sent them; certificates sent
lazily, once per device; signatures checked off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import pytest

from headcount.core.chain import ed25519_verify, head_message
from headcount.core.errors import RemoteProtocolError
from headcount.net.preverify import PreVerifier
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import Send, SessionConfig
from headcount.protocol.wire import Ack, Directory, FrameDecoder, Segments, decode_body, encode

from .support.protocol import ConnectionPair, make_devices

EV = "ev"


def messages(effects: list) -> list:
    decoder = FrameDecoder()
    for effect in effects:
        if isinstance(effect, Send):
            decoder.receive_data(effect.data)
    out = []
    while (m := decoder.next_message()) is not None:
        out.append(m)
    return out


# -- delayed, cumulative acknowledgements ----------------------------------------------


def test_acknowledgements_wait_then_cover_every_message():
    a, b = make_devices(2)
    pair = ConnectionPair(a, b, SessionConfig(ack_delay=0.5, ack_every=4))
    pair.run()
    sender, receiver = pair.sides[0].session, pair.sides[1].session
    a.append(EV, b"u1", 1 << 16)
    pair.push(0, EV)
    assert b.version_vector(EV) == {a.device_id: 1}  # delivered at once
    assert sender.in_flight[EV] == 1  # ... not yet acknowledged
    assert receiver.next_deadline() <= 0.5
    a.append(EV, b"u2", 2 << 16)
    pair.push(0, EV)
    assert sender.in_flight[EV] == 2
    pair.now = 0.5
    acks = [m for m in messages(receiver.tick(pair.now)) if isinstance(m, Ack)]
    assert [(ack.count, dict(ack.vv)) for ack in acks] == [(2, {a.device_id: 2})]
    sender.receive_data(encode(acks[0]), pair.now)
    assert sender.in_flight[EV] == 0  # one acknowledgement released both


def test_a_full_window_is_acknowledged_at_once():
    a, b = make_devices(2)
    config = SessionConfig(ack_delay=10.0, ack_every=3, window=4)
    pair = ConnectionPair(a, b, config)
    pair.run()
    for i in range(3):
        a.append(EV, b"u%d" % i, (i + 1) << 16)
        pair.push(0, EV)
    # the third message reached ack_every: acknowledged without waiting 10 s
    assert pair.sides[0].session.in_flight[EV] == 0
    assert pair.sides[0].session.status.retries == 0


def test_immediate_acknowledgements_by_default():
    a, b = make_devices(2)
    pair = ConnectionPair(a, b)
    pair.run()
    a.append(EV, b"u1", 1 << 16)
    pair.push(0, EV)
    assert pair.sides[0].session.in_flight[EV] == 0


def test_cumulative_ack_round_trips_and_old_acks_decode_body():
    ack = Ack(EV, {"d": 3}, 7)
    assert decode_body(encode(ack)[4:]) == ack
    one = encode(Ack(EV, {"d": 3}))  # count 1 is the two-field encoding of version 1
    assert decode_body(one[4:]) == Ack(EV, {"d": 3}, 1)
    with pytest.raises(RemoteProtocolError):
        decode_body(encode(Ack(EV, {"d": 3}, 0))[4:])


# -- no echo -------------------------------------------------------------------------------


def test_entries_received_from_a_peer_are_not_sent_back_to_it():
    a, b = make_devices(2)
    pair = ConnectionPair(a, b)
    pair.run()
    for i in range(3):
        a.append(EV, b"a%d" % i, (i + 1) << 16)
    pair.push(0, EV)
    assert b.version_vector(EV)[a.device_id] == 3
    before = pair.sides[1].session.status.entries_sent
    b.append(EV, b"b0", 9 << 16)
    pair.push(1, EV)
    # b sent its own entry only: a's three were not echoed back
    assert pair.sides[1].session.status.entries_sent - before == 1
    assert a.version_vector(EV) == {a.device_id: 3, b.device_id: 1}


# -- certificates: lazily, once per device ------------------------------------------------


class CertLog(MemLog):
    """A MemLog that shares a fake certificate per known device and records
    the certificates it is sent."""

    learnt: list[bytes]

    def certificates(self, devices: Collection[str]) -> dict[str, bytes]:
        return {d: b"cert:" + d.encode() for d in devices if d in self.directory}

    def learn_certificates(self, certs: Sequence[bytes]) -> int:
        self.learnt.extend(certs)
        return len(certs)


def cert_devices(n: int) -> list[CertLog]:
    logs = make_devices(n)
    out = []
    for log in logs:
        c = CertLog(log.device_id, log.key, log.directory)
        c.learnt = []
        out.append(c)
    return out


def test_certificates_go_once_and_only_for_devices_whose_entries_travel():
    relay, gate, c, d = cert_devices(4)
    # the relay already holds an entry of c; d writes nothing
    c_entry = c.append(EV, b"c1", 1 << 16)
    relay_pair = ConnectionPair(c, relay)
    relay_pair.run()
    assert relay.version_vector(EV) == {c.device_id: 1}
    pair = ConnectionPair(relay, gate)
    pair.run()
    assert gate.version_vector(EV) == {c.device_id: 1}
    assert gate.learnt == [b"cert:" + c.device_id.encode()]  # c only: d never wrote
    # more of c's entries: no second copy of its certificate
    c.append(EV, b"c2", 2 << 16)
    relay_pair.push(0, EV)
    pair.push(0, EV)
    assert gate.version_vector(EV) == {c.device_id: 2}
    assert gate.learnt == [b"cert:" + c.device_id.encode()]
    # d writes: its certificate precedes its first segment
    d.append(EV, b"d1", 3 << 16)
    ConnectionPair(d, relay).run()
    effects = pair.sides[0].session.local_entries(EV, pair.now)
    sent = messages(effects)
    kinds = [type(m) for m in sent]
    assert kinds.index(Directory) < kinds.index(Segments)
    assert sent[kinds.index(Directory)].certs == (b"cert:" + d.device_id.encode(),)
    assert c_entry.seq == 1


# -- signatures checked in a worker thread -------------------------------------------------


def segments_frame(log: MemLog, entries: int = 2) -> bytes:
    for i in range(entries):
        log.append(EV, b"x%d" % i, (i + 1) << 16)
    segs = log.segments_since(EV, {}, 1 << 20)
    return encode(Segments(EV, tuple(segs)))


def test_prepared_signatures_are_used_once():
    (a,) = make_devices(1)
    frame = segments_frame(a)
    prev = PreVerifier(a.directory.get)
    asyncio.run(prev.prepare(frame))
    seg = decode_body(frame[4:]).segments[0]
    msg = head_message(EV, a.device_id, seg.head.seq, seg.head.hash)
    key = a.directory[a.device_id]
    assert prev.prepared == 1
    assert prev.verify(key, msg, seg.head.sig) and prev.hits == 1
    assert prev.prepared == 0
    assert prev.verify(key, msg, seg.head.sig) and prev.hits == 1  # verified for real
    assert not prev.verify(key, msg, bytes(64))  # a forgery is never a hit
    prev.close()


def test_a_forged_frame_prepares_nothing():
    (a,) = make_devices(1)
    frame = bytearray(segments_frame(a))
    seg = decode_body(bytes(frame[4:])).segments[0]
    at = bytes(frame).find(seg.head.sig)
    frame[at] ^= 1  # flip a bit of the signature
    prev = PreVerifier(a.directory.get)
    asyncio.run(prev.prepare(bytes(frame)))
    assert prev.prepared == 0
    forged = decode_body(bytes(frame[4:])).segments[0]
    msg = head_message(EV, a.device_id, forged.head.seq, forged.head.hash)
    assert not prev.verify(a.directory[a.device_id], msg, forged.head.sig)
    assert not ed25519_verify(a.directory[a.device_id], msg, forged.head.sig)
    prev.close()


@pytest.mark.parametrize(
    "frame",
    [b"", b"\x00\x00\x00\x03abc", b"\x00\x00\x00\x01\xc1", encode(Ack(EV, {}))],
    ids=["empty", "garbage", "bad-msgpack", "not-segments"],
)
def test_malformed_frames_are_left_to_the_session(frame: bytes):
    (a,) = make_devices(1)
    prev = PreVerifier(a.directory.get)
    asyncio.run(prev.prepare(frame))  # never raises
    assert prev.prepared == 0
    prev.close()
