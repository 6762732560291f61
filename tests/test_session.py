"""The sans-IO session, driven through a perfect in-memory link."""

from __future__ import annotations

from headcount.protocol.session import SessionConfig, State, SyncStatus

from .support.protocol import ConnectionPair, make_devices

EV = "ev"


def _fill(log, n, start=0):
    for i in range(n):
        log.append(EV, f"update-{log.device_id}-{start + i}".encode() * 3, hlc=start + i + 1)


def test_two_sessions_exchange_everything_both_ways():
    a, b = make_devices(2)
    _fill(a, 30)
    _fill(b, 7)
    pair = ConnectionPair(a, b)
    pair.run()
    assert a.version_vector(EV) == b.version_vector(EV) == {a.device_id: 30, b.device_id: 7}
    for side in pair.sides:
        assert side.session.state is State.OPEN
        assert side.session.status.status is SyncStatus.SYNCED
        assert side.session.status.pending_entries == 0
    assert pair.sides[0].applied == 7 and pair.sides[1].applied == 30


def test_new_entries_are_pushed_eagerly():
    a, b = make_devices(2)
    pair = ConnectionPair(a, b)
    pair.run()
    _fill(a, 3)
    pair.push(0, EV)
    assert b.version_vector(EV) == {a.device_id: 3}


def test_catch_up_goes_in_bounded_batches():
    a, b = make_devices(2)
    _fill(a, 500)
    config = SessionConfig(batch_bytes=2_000, window=2)
    pair = ConnectionPair(a, b, config)
    sizes: list[int] = []
    original = pair.sides[0].session.log.segments_since

    def spy(event, vv, max_bytes):
        segs = original(event, vv, max_bytes)
        sizes.append(sum(s.size for s in segs))
        return segs

    pair.sides[0].session.log.segments_since = spy  # type: ignore[method-assign]
    pair.run()
    assert b.version_vector(EV) == {a.device_id: 500}
    assert max(sizes) <= 2_000 + 200  # one entry may straddle the budget
    assert len([s for s in sizes if s]) > 10


def test_relay_forwards_segments_unchanged_and_a_third_device_verifies_them():
    a, relay, c = make_devices(3)
    _fill(a, 40)
    ConnectionPair(a, relay).run()
    ConnectionPair(relay, c).run()  # a never talks to c
    assert c.version_vector(EV) == {a.device_id: 40}
    assert c.chains[EV][a.device_id].hashes == a.chains[EV][a.device_id].hashes


def test_idle_peer_times_out_and_keepalive_pings():
    a, b = make_devices(2)
    pair = ConnectionPair(a, b, SessionConfig(keepalive_interval=5, idle_timeout=12))
    pair.run()
    s = pair.sides[0].session
    assert s.next_deadline() == 5
    effects = s.tick(5.0)  # a ping goes out
    assert effects and s.state is State.OPEN
    effects = s.tick(12.0)  # nothing heard for 12 s
    assert s.state is State.CLOSED and s.status.status is SyncStatus.FAILED


def test_lost_batches_are_resent_after_the_ack_timeout():
    a, b = make_devices(2)
    _fill(a, 20)
    config = SessionConfig(batch_bytes=500, window=1, ack_timeout=3.0)
    pair = ConnectionPair(a, b, config)
    # Drop everything a sends after the handshake settles once: simulate a lost batch.
    pair.run()
    _fill(a, 5, start=100)
    sender = pair.sides[0].session
    lost = sender.local_entries(EV, 0.0)
    assert lost and sender.in_flight[EV] == 1  # never delivered
    assert b.version_vector(EV)[a.device_id] == 20
    assert sender.next_deadline() <= 3.0
    pair.carry_out(0, sender.tick(3.0))  # the retransmission timer fires
    pair.run()
    assert b.version_vector(EV)[a.device_id] == 25
    assert sender.status.retries == 1
