"""A hostile peer against the sans-IO session over a verifying MemLog.

For every rejection we check three things: the victim's log is exactly as it
was (a deep snapshot, not just the version vector), the session either closed
with a stable error code (and told the peer in a ``Goodbye``) or reported the
event, and honest synchronisation still works afterwards: on the same session
where it survives, on a new one where it closed.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from headcount.core.chain import ZERO_HASH, Segment, entry_hash, sign_head
from headcount.core.errors import RemoteProtocolError
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import (
    Applied,
    Close,
    EquivocationFound,
    PeerIdentified,
    Send,
    Session,
    SessionConfig,
    State,
    SyncStatus,
)
from headcount.protocol.wire import (
    Ack,
    FrameDecoder,
    Goodbye,
    Hello,
    Ping,
    Pong,
    Segments,
    Summary,
    encode,
)

from .support.protocol import ConnectionPair, make_devices

EV = "ev"
BIG = 10**9
# The code a session closes with when a segment's signature, head or chain is
# wrong (the RemoteProtocolError default raised by headcount.core.chain).
FORGED = "remote_protocol_error"


# -- helpers ----------------------------------------------------------------------


def snapshot(log: MemLog) -> dict:
    """Everything a peer's data could change in ``log``, deeply copied.

    The log's own heads are left out: the log signs a head of its own chain
    whenever it *sends* a batch, which is not a change a peer made.
    """
    chains = {}
    for event, devices in log.chains.items():
        for device, chain in devices.items():
            own = device == log.device_id
            chains[event, device] = (
                tuple(chain.entries),
                tuple(chain.hashes),
                None if own else tuple(chain.head_seqs),
                None if own else dict(chain.heads),
            )
    return {
        "events": tuple(log.events()),
        "vv": {e: log.version_vector(e) for e in log.events()},
        "chains": chains,
        "equivocators": frozenset(log.equivocators),
    }


def fill(log: MemLog, n: int, event: str = EV, tag: str = "") -> None:
    chain = log.chains.get(event, {}).get(log.device_id)
    start = len(chain.entries) if chain else 0
    for i in range(start, start + n):
        log.append(event, f"{tag}{log.device_id}-{i}".encode() * 2, hlc=i + 1)


def clone(log: MemLog) -> MemLog:
    """Another log with the same device id and key: a device that forks."""
    return MemLog(log.device_id, log.key, log.directory)


def open_session(victim: MemLog, peer: str, **kw) -> Session:
    session = Session(victim, 0.0, **kw)
    session.start(0.0)
    effects = session.receive_data(encode(Hello(peer, (EV,))), 0.0)
    assert PeerIdentified(peer) in effects and session.state is State.OPEN
    return session


def sent(effects) -> list:
    out = []
    for effect in effects:
        if isinstance(effect, Send):
            decoder = FrameDecoder()
            decoder.receive_data(effect.data)
            out.append(decoder.next_message())
    return out


def assert_closed_with(session: Session, effects, code: str) -> None:
    assert effects, "no effect at all"
    assert effects[-1] == Close(code), effects
    goodbyes = [m for m in sent(effects) if isinstance(m, Goodbye)]
    assert [g.code for g in goodbyes] == [code]
    assert session.state is State.CLOSED
    assert session.status.status is SyncStatus.FAILED
    assert not any(isinstance(e, Applied) for e in effects)


def assert_honest_sync_works(victim: MemLog, peer: MemLog) -> None:
    """A fresh honest session between the two still converges."""
    fill(peer, 2, tag="later")
    pair = ConnectionPair(victim, peer)
    pair.run()
    want = peer.version_vector(EV)[peer.device_id]
    assert victim.version_vector(EV)[peer.device_id] == want
    assert pair.sides[0].closed is None and pair.sides[1].closed is None


def genuine(peer: MemLog, since: int = 0, budget: int = BIG, event: str = EV) -> list[Segment]:
    """``peer``'s own entries after ``since``, as it signs them for sending."""
    vv = {d: n for d, n in peer.version_vector(event).items() if d != peer.device_id}
    vv[peer.device_id] = since
    out: list[Segment] = []
    while segs := [
        s for s in peer.segments_since(event, vv, budget) if s.head.device == peer.device_id
    ]:
        out += segs
        vv[peer.device_id] = segs[-1].head.seq
    return out


def replace_entry(seg: Segment, i: int, **changes) -> Segment:
    entries = list(seg.entries)
    entries[i] = dataclasses.replace(entries[i], **changes)
    return dataclasses.replace(seg, entries=tuple(entries))


def replace_head(seg: Segment, **changes) -> Segment:
    return dataclasses.replace(seg, head=dataclasses.replace(seg.head, **changes))


def rechain(seg: Segment, entries) -> Segment:
    """``entries`` renumbered and re-linked the way the wire decoder sees them."""
    out, prev = [], entries[0].prev
    first = seg.head.seq - len(entries) + 1
    for i, e in enumerate(entries):
        entry = dataclasses.replace(e, seq=first + i, prev=prev)
        out.append(entry)
        prev = entry_hash(entry)
    return Segment(tuple(out), seg.head)


@pytest.fixture
def world():
    """victim V holds P's entries 1..2 and its own; P has 3..6 more to give.
    Q is a known third device; U is unknown to everybody."""
    p, v, q = make_devices(3)
    (u,) = make_devices(1, directory={})
    fill(v, 3)
    fill(p, 2)
    fill(q, 2)
    ConnectionPair(p, v).run()
    fill(p, 4)
    assert v.version_vector(EV) == {v.device_id: 3, p.device_id: 2}
    return p, v, q, u


# -- tampered entries and forged signatures ------------------------------------------


def _tampers(p: MemLog, q: MemLog):
    """(name, forged segment) built from P's genuine segment of entries 3..6."""
    (seg,) = genuine(p, since=2)
    assert [e.seq for e in seg.entries] == [3, 4, 5, 6]
    other_head = genuine(p, budget=1)[0].head  # a real P signature, over seq 1
    wrong_hash = os.urandom(32)
    yield "first update changed", replace_entry(seg, 0, update=b"evil")
    yield "last update changed", replace_entry(seg, 3, update=seg.entries[3].update + b"!")
    yield (
        "middle update emptied",
        rechain(
            seg, [*seg.entries[:2], dataclasses.replace(seg.entries[2], update=b""), seg.entries[3]]
        ),
    )
    yield "hlc changed", replace_entry(seg, 1, hlc=seg.entries[1].hlc + 1)
    yield "first prev changed", replace_entry(seg, 0, prev=ZERO_HASH)
    yield "entry dropped", rechain(seg, [seg.entries[0], *seg.entries[2:]])
    yield "entry inserted", rechain(seg, [*seg.entries[:2], seg.entries[1], *seg.entries[2:]])
    yield "entries swapped", rechain(seg, [seg.entries[1], seg.entries[0], *seg.entries[2:]])
    yield "head seq moved", rechain(replace_head(seg, seq=7), list(seg.entries))
    yield "head hash random", replace_head(seg, hash=wrong_hash)
    yield "head claims Q", replace_head(seg, device=q.device_id)
    yield "random signature", replace_head(seg, sig=os.urandom(64))
    yield "zero signature", replace_head(seg, sig=bytes(64))
    yield "P's signature of another head", replace_head(seg, sig=other_head.sig)
    yield (
        "signed by Q's key as P",
        replace_head(seg, sig=sign_head(q.key, EV, p.device_id, 6, seg.head.hash).sig),
    )
    yield (
        "validly signed head not matching the entries",
        replace_head(
            seg, hash=wrong_hash, sig=sign_head(p.key, EV, p.device_id, 6, wrong_hash).sig
        ),
    )


TAMPER_NAMES = [
    "first update changed",
    "last update changed",
    "middle update emptied",
    "hlc changed",
    "first prev changed",
    "entry dropped",
    "entry inserted",
    "entries swapped",
    "head seq moved",
    "head hash random",
    "head claims Q",
    "random signature",
    "zero signature",
    "P's signature of another head",
    "signed by Q's key as P",
    "validly signed head not matching the entries",
]


@pytest.mark.parametrize("which", TAMPER_NAMES)
def test_forged_or_tampered_segment_is_rejected(world, which):
    p, v, q, _ = world
    tampers = dict(_tampers(p, q))
    assert list(tampers) == TAMPER_NAMES
    forged = tampers[which]
    session = open_session(v, p.device_id)
    before = snapshot(v)
    honest_after = encode(Segments(EV, tuple(genuine(p, since=2))))
    effects = session.receive_data(encode(Segments(EV, (forged,))) + honest_after, 1.0)
    assert_closed_with(session, effects, FORGED)
    assert snapshot(v) == before  # and the honest frame behind it was not read
    assert_honest_sync_works(v, p)


@pytest.mark.parametrize("which", ["first update changed", "random signature"])
def test_one_forged_segment_spoils_the_whole_message(world, which):
    p, v, q, _ = world
    forged = dict(_tampers(p, q))[which]
    good_q = genuine(q)
    session = open_session(v, p.device_id)
    before = snapshot(v)
    effects = session.receive_data(encode(Segments(EV, (*good_q, forged))), 1.0)
    assert_closed_with(session, effects, FORGED)
    assert snapshot(v) == before  # Q's valid segment was not applied either
    assert_honest_sync_works(v, p)


def test_middle_prev_changed_breaks_the_chain():
    """The wire implies every ``prev`` but the first; a LogView gets them all."""
    p, v = make_devices(2)
    fill(p, 4)
    (seg,) = genuine(p)
    forged = replace_entry(seg, 2, prev=entry_hash(seg.entries[0]))
    before = snapshot(v)
    with pytest.raises(RemoteProtocolError, match="broken hash chain"):
        v.ingest(EV, [forged])
    assert snapshot(v) == before


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: replace_entry(s, 1, seq=9),
        lambda s: replace_entry(s, 1, device="someone-else"),
        lambda s: replace_entry(s, 1, event="other"),
        lambda s: dataclasses.replace(s, entries=()),
        lambda s: replace_head(s, hash=b"short"),
        lambda s: replace_head(s, sig=b"short"),
        lambda s: replace_entry(s, 0, prev=b"short"),
    ],
    ids=["seq", "device", "event", "no entries", "hash size", "sig size", "prev size"],
)
def test_misshapen_segments_are_refused_by_the_log(mangle):
    p, v = make_devices(2)
    fill(p, 3)
    (seg,) = genuine(p)
    before = snapshot(v)
    with pytest.raises(RemoteProtocolError):
        v.ingest(EV, [mangle(seg)])
    assert snapshot(v) == before


def test_segment_of_another_event_is_refused_by_the_log():
    p, v = make_devices(2)
    fill(p, 2, event="other")
    before = snapshot(v)
    with pytest.raises(RemoteProtocolError) as info:
        v.ingest(EV, genuine(p, event="other"))
    assert info.value.code == "malformed"
    assert snapshot(v) == before


def test_a_genuine_suffix_of_a_segment_is_accepted(world):
    """Not an attack: any run of entries ending at a signed head verifies."""
    p, v, _, _ = world
    (seg,) = genuine(p, since=2)  # 3..6
    suffix = Segment(seg.entries[2:], seg.head)  # 5..6: a gap for V
    session = open_session(v, p.device_id)
    before = snapshot(v)
    effects = session.receive_data(encode(Segments(EV, (suffix,))), 1.0)
    assert session.state is State.OPEN and not any(isinstance(e, Applied) for e in effects)
    assert snapshot(v) == before
    effects = session.receive_data(encode(Segments(EV, (seg,))), 1.0)
    assert Applied(EV, 4) in effects
    assert v.version_vector(EV)[p.device_id] == 6


# -- unknown devices ----------------------------------------------------------------


def test_segment_from_an_unknown_device_closes_and_applies_nothing(world):
    p, v, _, u = world
    fill(u, 3)
    session = open_session(v, p.device_id)
    before = snapshot(v)
    message = Segments(EV, (*genuine(p, since=2), *genuine(u)))  # a valid one first
    effects = session.receive_data(encode(message), 1.0)
    assert_closed_with(session, effects, "unknown_device")
    assert snapshot(v) == before
    assert u.device_id not in v.version_vector(EV)
    assert_honest_sync_works(v, p)


def test_unknown_device_in_an_event_the_victim_lacks(world):
    p, v, _, u = world
    fill(u, 2, event="another-event")
    session = open_session(v, p.device_id)
    before = snapshot(v)
    message = Segments("another-event", tuple(genuine(u, event="another-event")))
    effects = session.receive_data(encode(message), 1.0)
    assert_closed_with(session, effects, "unknown_device")
    assert snapshot(v) == before
    assert_honest_sync_works(v, p)


# -- equivocation ------------------------------------------------------------------


def _forked_world():
    """A signs two histories (a1 and a2 share its key and id); r1 has learnt
    the first, r2 the second; v has heard from r1 only."""
    a, r1, r2, v = make_devices(4)
    a2 = clone(a)
    fill(a, 2, tag="first history ")
    fill(a2, 3, tag="second history ")
    fill(r1, 1)
    fill(r2, 1)
    ConnectionPair(a, r1).run()
    ConnectionPair(a2, r2).run()
    pair1 = ConnectionPair(r1, v)
    pair1.run()
    assert v.version_vector(EV)[a.device_id] == 2
    return a, a2, r1, r2, v, pair1


def test_equivocation_via_two_peers_is_detected_reported_and_not_applied():
    a, _, r1, r2, v, pair1 = _forked_world()
    before = snapshot(v)
    pair2 = ConnectionPair(r2, v)
    pair2.run()
    side = pair2.sides[1]
    # v asked for a's entries after 2, so the fork shows at the link to seq 2
    assert side.equivocations == [EquivocationFound(EV, a.device_id, 2)]
    assert side.closed is None and side.session.state is State.OPEN
    after = snapshot(v)
    assert after["equivocators"] == before["equivocators"] | {(EV, a.device_id)}
    # a's entries are still the first history, untouched
    assert after["chains"][EV, a.device_id] == before["chains"][EV, a.device_id]
    assert v.chains[EV][a.device_id].hashes == a.chains[EV][a.device_id].hashes
    # r2's own honest entries did arrive over the same session
    assert v.version_vector(EV)[r2.device_id] == 1

    # The session survives: later honest entries still flow both ways.
    fill(r2, 2)
    pair2.push(0, EV)
    assert v.version_vector(EV)[r2.device_id] == 3
    fill(v, 1)
    pair2.push(1, EV)
    assert r2.version_vector(EV)[v.device_id] == 1

    # Quarantine: even a's genuine continuation of the first history is refused.
    fill(a, 1, tag="first history ")
    ConnectionPair(a, r1).run()
    pair1.push(0, EV)
    assert v.version_vector(EV)[a.device_id] == 2
    assert pair1.sides[1].equivocations == []  # reported once, not on every delivery


def test_two_histories_in_one_message_neither_is_applied():
    a, v, p = make_devices(3)
    a2 = clone(a)
    fill(a, 2, tag="x")
    fill(a2, 2, tag="y")
    session = open_session(v, p.device_id)
    before = snapshot(v)
    message = Segments(EV, (*genuine(a), *genuine(a2)))
    effects = session.receive_data(encode(message), 1.0)
    assert [e for e in effects if isinstance(e, EquivocationFound)] == [
        EquivocationFound(EV, a.device_id, 1)
    ]
    assert not any(isinstance(e, Applied) for e in effects)
    assert session.state is State.OPEN
    acks = [m for m in sent(effects) if isinstance(m, Ack)]
    assert acks and a.device_id not in acks[-1].vv
    after = snapshot(v)
    assert after["chains"] == before["chains"] and after["vv"] == before["vv"]
    assert after["equivocators"] == {(EV, a.device_id)}
    # quarantined: the first history alone is now refused as well
    session.receive_data(encode(Segments(EV, tuple(genuine(a)))), 2.0)
    assert a.device_id not in v.version_vector(EV)
    # and the session still carries honest data
    fill(p, 2)
    effects = session.receive_data(encode(Segments(EV, tuple(genuine(p)))), 3.0)
    assert Applied(EV, 2) in effects


def test_equivocation_against_stored_entries_is_found_from_the_prev_link():
    """A segment starting after what v holds, whose ``prev`` contradicts it."""
    a, a2, _, r2, v, _ = _forked_world()
    (tail,) = genuine(a2, since=2)  # a2's entry 3, linked to a2's entry 2
    session = open_session(v, r2.device_id)
    before = snapshot(v)
    effects = session.receive_data(encode(Segments(EV, (tail,))), 1.0)
    assert EquivocationFound(EV, a.device_id, 2) in effects
    assert snapshot(v)["chains"] == before["chains"]
    assert (EV, a.device_id) in v.equivocators


def test_equivocation_in_a_message_that_is_then_rejected():
    """A rejected message must not leave a silent quarantine behind: either
    nothing changes, or the application hears of the equivocation."""
    _, a2, _, r2, v, _ = _forked_world()
    (fork,) = genuine(a2)
    (bad,) = genuine(r2)
    bad = replace_head(bad, sig=bytes(64))
    session = open_session(v, r2.device_id)
    before = snapshot(v)
    effects = session.receive_data(encode(Segments(EV, (fork, bad))), 1.0)
    assert_closed_with(session, effects, FORGED)
    after = snapshot(v)
    assert after["chains"] == before["chains"]
    reported = any(isinstance(e, EquivocationFound) for e in effects)
    assert after["equivocators"] == before["equivocators"] or reported, (
        f"device quarantined without a report: {sorted(after['equivocators'])}"
    )


# -- replays --------------------------------------------------------------------------


def test_the_same_segments_frame_twice_applies_once(world):
    p, v, _, _ = world
    frame = encode(Segments(EV, tuple(genuine(p, since=2))))
    session = open_session(v, p.device_id)
    assert Applied(EV, 4) in session.receive_data(frame, 1.0)
    after_first = snapshot(v)
    effects = session.receive_data(frame, 2.0)
    assert not any(isinstance(e, Applied) for e in effects)
    assert any(isinstance(m, Ack) for m in sent(effects))
    assert session.state is State.OPEN
    assert snapshot(v) == after_first
    # ... and again on a new connection
    again = open_session(v, p.device_id)
    assert not any(isinstance(e, Applied) for e in again.receive_data(frame, 3.0))
    assert snapshot(v) == after_first
    assert v.entry_count(EV) == sum(v.version_vector(EV).values())
    # the session that saw the replay still takes new entries
    fill(p, 1)
    effects = session.receive_data(encode(Segments(EV, tuple(genuine(p, since=6)))), 4.0)
    assert Applied(EV, 1) in effects


class RecordingPair(ConnectionPair):
    """A ConnectionPair that keeps every frame each side sent."""

    def __init__(self, a, b, config=None):
        self.sent_by: list[list[bytes]] = [[], []]
        super().__init__(a, b, config)

    def carry_out(self, i, effects):
        self.sent_by[i] += [e.data for e in effects if isinstance(e, Send)]
        super().carry_out(i, effects)


def _decode(frame: bytes):
    decoder = FrameDecoder()
    decoder.receive_data(frame)
    return decoder.next_message()


def test_an_old_summary_replayed_causes_no_duplicates():
    a, b = make_devices(2)
    fill(a, 5)
    fill(b, 3)
    pair = RecordingPair(a, b)
    pair.run()
    old = next(f for f in pair.sent_by[1] if isinstance(_decode(f), Summary))
    assert _decode(old).vv == {b.device_id: 3}  # b's view before it heard from a
    fill(a, 2)
    fill(b, 2)
    pair.push(0, EV)
    pair.push(1, EV)
    snaps = snapshot(a), snapshot(b)
    applied = pair.sides[0].applied, pair.sides[1].applied
    pair.inject(0, old)  # a resends everything b lacked back then
    pair.run()
    assert (snapshot(a), snapshot(b)) == snaps
    assert (pair.sides[0].applied, pair.sides[1].applied) == applied
    for log in (a, b):
        assert log.entry_count(EV) == sum(log.version_vector(EV).values()) == 12
    for side in pair.sides:
        assert side.closed is None and side.session.status.status is SyncStatus.SYNCED


def test_replayed_summaries_do_not_multiply_what_is_sent():
    """A session runs over one ordered stream: nothing it sent can be lost
    while it lives, so a repeated Summary must not make it send the same
    batches again and again (50 replays of a 12-byte frame are not worth
    50 copies of the log)."""
    v, p = make_devices(2)
    for i in range(400):
        v.append(EV, bytes(500), hlc=i + 1)  # 200 kB, inside one window

    def bytes_sent(replays: int) -> int:
        session = open_session(v, p.device_id)
        effects = session.receive_data(encode(Summary(EV, {}, False)) * replays, 1.0)
        assert session.state is State.OPEN
        return sum(len(e.data) for e in effects if isinstance(e, Send))

    once = bytes_sent(1)
    assert once > 200_000
    before = snapshot(v)
    assert bytes_sent(50) < 2 * once
    assert snapshot(v) == before


def test_an_old_ack_replayed_changes_nothing():
    a, b = make_devices(2)
    fill(a, 20)
    pair = RecordingPair(a, b, SessionConfig(batch_bytes=200, window=1))
    pair.run()
    acks = [f for f in pair.sent_by[1] if isinstance(_decode(f), Ack)]
    assert len(acks) > 3
    snaps = snapshot(a), snapshot(b)
    for ack in acks[:3]:
        pair.inject(0, ack)
    pair.run()
    assert (snapshot(a), snapshot(b)) == snaps
    assert pair.sides[0].session.peer_holds(EV) == b.version_vector(EV)  # never regresses
    assert pair.sides[0].session.status.status is SyncStatus.SYNCED


def test_a_replayed_hello_on_an_open_session_closes_it(world):
    p, v, _, _ = world
    session = open_session(v, p.device_id)
    before = snapshot(v)
    effects = session.receive_data(encode(Hello(p.device_id, (EV,))), 1.0)
    assert_closed_with(session, effects, "unexpected")
    assert snapshot(v) == before
    assert_honest_sync_works(v, p)


# -- messages out of place, identities -----------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        Segments(EV, ()),
        Summary(EV, {}, True),
        Ack(EV, {}),
        Ping(1),
        Pong(1),
    ],
    ids=lambda m: type(m).__name__,
)
def test_messages_before_hello_are_refused(world, message):
    p, v, _, _ = world
    if isinstance(message, Segments):
        message = Segments(EV, tuple(genuine(p, since=2)))  # even valid entries
    session = Session(v, 0.0)
    session.start(0.0)
    before = snapshot(v)
    effects = session.receive_data(encode(message), 1.0)
    assert_closed_with(session, effects, "unexpected")
    assert snapshot(v) == before
    assert_honest_sync_works(v, p)


def test_bytes_before_start_and_after_close_are_ignored(world):
    p, v, _, _ = world
    frames = encode(Hello(p.device_id, (EV,))) + encode(Segments(EV, tuple(genuine(p, since=2))))
    before = snapshot(v)
    idle = Session(v, 0.0)  # start() not called yet
    effects = idle.receive_data(frames, 0.0)
    assert not any(isinstance(e, Applied) for e in effects)
    closed = open_session(v, p.device_id)
    closed.close(0.0)
    assert closed.receive_data(frames[len(encode(Hello(p.device_id, (EV,)))) :], 0.0) == []
    assert snapshot(v) == before


def test_peer_claiming_another_identity_is_refused(world):
    p, v, q, _ = world
    session = Session(v, 0.0, expect_peer=p.device_id)
    session.start(0.0)
    before = snapshot(v)
    effects = session.receive_data(encode(Hello(q.device_id, (EV,))), 1.0)
    assert_closed_with(session, effects, "identity")
    assert not any(isinstance(e, PeerIdentified) for e in effects)
    assert snapshot(v) == before
    # the authenticated identity is accepted and syncs
    session = open_session(v, p.device_id, expect_peer=p.device_id)
    effects = session.receive_data(encode(Segments(EV, tuple(genuine(p, since=2)))), 2.0)
    assert Applied(EV, 4) in effects


def test_connecting_to_oneself_is_refused(world):
    _, v, _, _ = world
    before = snapshot(v)
    session = Session(v, 0.0)
    session.start(0.0)
    effects = session.receive_data(encode(Hello(v.device_id, (EV,))), 0.0)
    assert_closed_with(session, effects, "self")
    pair = ConnectionPair(v, v)
    pair.run()
    assert [s.closed for s in pair.sides] == ["self", "self"]
    assert snapshot(v) == before
    p = make_devices(1, directory=v.directory)[0]
    assert_honest_sync_works(v, p)


@pytest.mark.parametrize(("code", "close"), [("bye", None), ("shutting_down", "shutting_down")])
def test_a_peer_goodbye_closes_without_changing_state(world, code, close):
    p, v, _, _ = world
    session = open_session(v, p.device_id)
    before = snapshot(v)
    effects = session.receive_data(encode(Goodbye(code, "\x1b[31mred\n")), 1.0)
    assert effects == [Close(close)]
    assert session.state is State.CLOSED
    assert snapshot(v) == before
    assert_honest_sync_works(v, p)


# -- gaps and big batches --------------------------------------------------------------


def test_a_gap_is_ignored_then_repaired(world):
    p, v, _, _ = world
    segs = genuine(p, since=2, budget=1)  # one entry per segment: 3, 4, 5, 6
    assert [s.head.seq for s in segs] == [3, 4, 5, 6]
    session = open_session(v, p.device_id)
    before = snapshot(v)
    effects = session.receive_data(encode(Segments(EV, tuple(segs[2:]))), 1.0)
    assert session.state is State.OPEN
    assert not any(isinstance(e, Applied) for e in effects)
    assert snapshot(v) == before
    effects = session.receive_data(encode(Segments(EV, tuple(segs))), 2.0)
    assert Applied(EV, 4) in effects


def test_a_gap_in_an_unknown_event_leaves_no_trace():
    """A segment that cannot be applied must not make the event appear."""
    p, v = make_devices(2)
    fill(p, 3, event="new-event")
    segs = genuine(p, budget=1, event="new-event")
    session = open_session(v, p.device_id)
    before = snapshot(v)
    effects = session.receive_data(encode(Segments("new-event", tuple(segs[1:]))), 1.0)
    assert session.state is State.OPEN and not any(isinstance(e, Applied) for e in effects)
    assert snapshot(v) == before, f"events now {v.events()}"


def test_a_summary_never_makes_receive_data_raise_on_big_relayed_segments():
    """Relayed segments travel whole; the batch holding them must still fit a
    frame (or be split), never make the session raise."""
    a, b, relay, c = make_devices(4)
    first, second = sorted([a, b], key=lambda log: log.device_id)
    first.append(EV, b"a" * 200_000, 1)  # under the 256 KiB batch budget ...
    second.append(EV, b"b" * 900_000, 1)  # ... then a segment alone near the frame limit
    ConnectionPair(a, relay).run()
    ConnectionPair(b, relay).run()
    assert len(relay.version_vector(EV)) == 2
    pair = ConnectionPair(relay, c)
    pair.run()
    assert c.version_vector(EV) == relay.version_vector(EV)
    assert pair.sides[0].closed is None and pair.sides[1].closed is None
