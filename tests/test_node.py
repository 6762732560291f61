"""Nodes over mutual TLS on 127.0.0.1: enrolment, forwarding, rejection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator

from headcount import Replica, Role
from headcount.net.node import Link
from headcount.pki.org import init_org

from .support.devices import enrolled_replica
from .support.nodes import BACKOFF_BASE_S, BACKOFF_MAX_S, effect_pulse, tls_node
from .support.wait import Pulse, await_until

EV = "ev"


def _has_event(replica: Replica, participants: int) -> Callable[[], bool]:
    return lambda: EV in replica.events() and replica.status(EV).participants == participants


def test_a_check_in_crosses_a_line_of_three_nodes_over_tls(tmp_path, clock):
    org = init_org(tmp_path / "org", "Example Events")
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    north = enrolled_replica(tmp_path, org, "north", Role.GATE, clock)
    south = enrolled_replica(tmp_path, org, "south", Role.GATE, clock)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(10)])

    async def main():
        a = tls_node(admin, [])
        at_admin = effect_pulse(a)
        await a.start()
        n = tls_node(north, [("127.0.0.1", a.port)])
        await n.start()
        s = tls_node(south, [("127.0.0.1", n.port)])  # south only knows north
        at_south = effect_pulse(s)
        await s.start()
        await await_until(
            _has_event(south, 10),
            10,
            "the event reached south (from admin through north)",
            pulse=at_south,
        )
        south.check_in(EV, "p3")
        s.local_write(EV)
        await await_until(
            lambda: south.device_id in admin.version_vector(EV),
            10,
            "south's check-in reached the admin",
            pulse=at_admin,
        )
        for node in (s, n, a):
            await node.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert admin.event(EV).attendance("p3").check_in is not None
    assert admin.version_vector(EV) == south.version_vector(EV)
    for r in (admin, north, south):
        r.close()


def test_a_device_of_another_organisation_is_refused(tmp_path, clock):
    org = init_org(tmp_path / "org", "Example Events")
    other = init_org(tmp_path / "other", "Example Events")  # same name, different key
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    intruder = enrolled_replica(tmp_path, other, "intruder", Role.GATE, clock)
    admin.create_event(EV, "Conf")

    async def main():
        a = tls_node(admin, [])
        await a.start()
        i = tls_node(intruder, [("127.0.0.1", a.port)])
        await i.start()
        dialer = i.dialers[("127.0.0.1", a.port)]
        # (nothing reports a failed dial: polled)
        await await_until(lambda: dialer.failures >= 2, 10, "the intruder failed to dial twice")
        await i.stop()
        await a.stop()
        return dialer

    dialer = asyncio.run(asyncio.wait_for(main(), 30))
    assert dialer.failures >= 2 and "SSL" in (dialer.last_error or "")
    assert EV not in intruder.events()
    assert intruder.device_id not in admin.store.devices()
    admin.close()
    intruder.close()


def _least_backoff(failures: int) -> float:
    """The shortest a dialer that failed ``failures`` times in a row waits in
    all (each wait at least half its backoff: the jitter)."""
    return sum(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**f) * 0.5 for f in range(1, failures))


# The metronome: a dialer of a closed port, whose failures count the node's
# own backoff periods. Once it failed this often, longer has passed than the
# longest a losing dialer would wait before redialling (its backoff, jitter
# included, or the recheck of its kept link, both at most 1.5 * BACKOFF_MAX_S).
METRONOME_FAILURES = 7


@contextlib.contextmanager
def _refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening:
    no one else takes it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_two_nodes_dialling_each_other_keep_one_link_and_do_not_redial(tmp_path, clock):
    assert _least_backoff(METRONOME_FAILURES) > 1.5 * BACKOFF_MAX_S
    org = init_org(tmp_path / "org", "Example Events")
    one = enrolled_replica(tmp_path, org, "one", Role.GATE, clock)
    two = enrolled_replica(tmp_path, org, "two", Role.GATE, clock)

    async def main():
        a, b = tls_node(one, []), tls_node(two, [])
        accepted = {"a": 0, "b": 0}  # inbound links (connections accepted and admitted)
        for name, node in (("a", a), ("b", b)):

            def count(link: Link, name: str = name) -> None:
                accepted[name] += not link.outbound

            node.link_observers.append(count)
        await a.start()
        await b.start()
        a.add_peer("127.0.0.1", b.port)
        b.add_peer("127.0.0.1", a.port)
        # (a link that ends reports nothing: polled)
        await await_until(
            lambda: len(a.links) == len(b.links) == 1 and sum(accepted.values()) >= 2,
            10,
            "both dialled and one link was kept",
        )
        settled = dict(accepted)
        with _refusing_port() as dead:
            metronome = ("127.0.0.1", dead)
            a.add_peer(*metronome)
            await await_until(
                lambda: a.dialers[metronome].failures >= METRONOME_FAILURES,
                10,
                f"{METRONOME_FAILURES} failed dials of a closed port",
            )
        dialers = [d for d in (*a.dialers.values(), *b.dialers.values()) if d.address != metronome]
        result = (
            len(a.links),
            len(b.links),
            dict(accepted),
            settled,
            [d.failures for d in dialers],
        )
        await a.stop()
        await b.stop()
        return result

    links_a, links_b, accepted, settled, failures = asyncio.run(asyncio.wait_for(main(), 30))
    assert (links_a, links_b) == (1, 1)
    assert accepted == settled, "the losing dialer kept redialling"
    assert failures == [0, 0]
    one.close()
    two.close()


def test_a_revocation_signed_by_the_organisation_cuts_the_device_off(tmp_path, clock):
    from headcount.pki.org import revoke_as_ca

    org = init_org(tmp_path / "org", "Example Events")
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    gate = enrolled_replica(tmp_path, org, "gate", Role.GATE, clock)
    admin.create_event(EV, "Conf")

    async def main():
        a = tls_node(admin, [])
        linked = Pulse()
        a.link_observers.append(linked.beat)
        await a.start()
        g = tls_node(gate, [("127.0.0.1", a.port)])
        await g.start()
        await await_until(lambda: a.links, 10, "the gate connected", pulse=linked)
        record = revoke_as_ca(org, gate.device_id, at_ms=clock.now)
        assert a.learn_revocations([record]).added == 1  # verified, kept, enforced at once
        # (refusals and links that end report nothing: polled)
        await await_until(
            lambda: [code for _, code in a.rejected].count("revoked") >= 2 and not a.links,
            10,
            "the gate was cut off and refused again",
        )
        result = (len(a.links), [code for _, code in a.rejected])
        await g.stop()
        await a.stop()
        return result

    links, codes = asyncio.run(asyncio.wait_for(main(), 30))
    assert links == 0
    assert codes.count("revoked") >= 2  # cut off, then every reconnection refused
    assert len(admin.store.revocations()) == 1  # kept: a restarted node still refuses it
    admin.close()
    gate.close()


def test_nodes_sync_over_websocket_with_mutual_tls(tmp_path, clock):
    """A gate reaching the admin only through wss:// (networks where only
    HTTP passes), certificates checked on both sides."""
    org = init_org(tmp_path / "org", "Example Events")
    other = init_org(tmp_path / "other", "Example Events")
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    gate = enrolled_replica(tmp_path, org, "gate", Role.GATE, clock)
    intruder = enrolled_replica(tmp_path, other, "intruder", Role.GATE, clock)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(20)])

    async def main():
        a = tls_node(admin, [])
        a.config.ws_port = 0
        await a.start()
        url = f"wss://127.0.0.1:{a.ws_port}/sync"
        g = tls_node(gate, [])
        g.config.ws_peers = [url]
        at_gate, at_admin = effect_pulse(g), effect_pulse(a)
        await g.start()
        bad = tls_node(intruder, [])
        bad.config.ws_peers = [url]
        await bad.start()
        await await_until(
            _has_event(gate, 20), 15, "the event reached the gate over wss", pulse=at_gate
        )
        gate.check_in(EV, "p4")
        g.local_write(EV)
        await await_until(
            lambda: admin.version_vector(EV) == gate.version_vector(EV),
            15,
            "the scan reached the admin over wss",
            pulse=at_admin,
        )
        for node in (bad, g, a):
            await node.stop()
        return [link for link in a.links]

    asyncio.run(asyncio.wait_for(main(), 30))
    assert admin.event(EV).attendance("p4").check_in is not None
    assert EV not in intruder.events()  # the other organisation's device got nothing
    for r in (admin, gate, intruder):
        r.close()


def test_a_gate_receives_only_the_events_it_is_enrolled_for(tmp_path, clock):
    """The admin holds an event the gate is not enrolled for: it never
    reaches the gate, neither at the handshake nor in anti-entropy rounds.

    Witness that it would have arrived by the end, three check-ins on the
    allowed event, each sent after the previous one was seen, over links
    that deliver in order:

    1. ``c1`` (the admin's) follows the admin's anti-entropy round: once the
       gate holds it, the gate has answered that round (and the handshake).
    2. ``g2`` (the gate's) follows those answers: once the admin holds it,
       the admin has acted on them, and sent whatever they asked for.
    3. ``c3`` (the admin's) follows that: once the gate holds it, the gate
       has received everything the admin sent about any event.
    """
    org = init_org(tmp_path / "org", "Example Events")
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    gate = enrolled_replica(tmp_path, org, "gate", Role.GATE, clock, events=[EV])
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(3)])
    admin.create_event("secret", "Board meeting")
    admin.import_participants("secret", [{"id": "ceo", "name": "C"}])

    def holds(replica: Replica, scan: str) -> Callable[[], bool]:
        return lambda: EV in replica.events() and scan in replica.event(EV).doc.scans

    async def main():
        a = tls_node(admin, [])
        at_admin = effect_pulse(a)
        await a.start()
        g = tls_node(gate, [("127.0.0.1", a.port)])
        at_gate = effect_pulse(g)
        await g.start()
        await await_until(
            lambda: EV in gate.events(), 10, "the allowed event reached the gate", pulse=at_gate
        )
        for link in a.links:  # a few anti-entropy rounds that would carry it
            await link.peer.anti_entropy()
        c1 = admin.check_in(EV, "p0").scan.id
        a.local_write(EV)
        await await_until(holds(gate, c1), 10, "the admin's c1 reached the gate", pulse=at_gate)
        g2 = gate.check_in(EV, "p1").scan.id
        g.local_write(EV)
        await await_until(holds(admin, g2), 10, "the gate's g2 reached the admin", pulse=at_admin)
        c3 = admin.check_in(EV, "p2").scan.id
        a.local_write(EV)
        await await_until(holds(gate, c3), 10, "the admin's c3 reached the gate", pulse=at_gate)
        for node in (g, a):
            await node.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert gate.events() == [EV]
    admin.close()
    gate.close()
