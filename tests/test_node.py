"""Nodes over mutual TLS on 127.0.0.1: enrolment, forwarding, rejection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from headcount import Replica, Role
from headcount.net.node import Link, Node, NodeConfig
from headcount.pki.device import install_certificate, load_device_certificate, ssl_context
from headcount.pki.org import enroll, init_org
from headcount.pki.verify import verify_peer_certificate
from headcount.protocol.session import Applied, Effect

EV = "ev"


def _device(tmp: Path, org, name: str, role: Role, clock, events=("*",)) -> Replica:
    Replica.init(tmp / name, role=role, name=name)
    replica = Replica.open(tmp / name, wall_clock=clock)
    cert = enroll(org, replica.identity.public_key_raw, replica.device_id, role, list(events))
    install_certificate(
        tmp / name,
        cert.public_bytes(serialization.Encoding.PEM),
        org.certificate_pem,
    )
    return replica


def _node(replica: Replica, peers: list[tuple[str, int]]) -> Node:
    cert, ca = load_device_certificate(replica.data_dir)
    own = verify_peer_certificate(cert, ca, int(time.time() * 1000))
    config = NodeConfig(peers=peers, gossip_interval=0.2, backoff_base=0.05, backoff_max=0.5)
    return Node(
        replica,
        config,
        ssl_context(replica.data_dir, server_side=True),
        ssl_context(replica.data_dir, server_side=False),
        ca,
        own_identity=own,
    )


def _once(node: Node, condition: Callable[[], bool]) -> asyncio.Event:
    """An event set as soon as ``condition()`` holds, checked now and after
    every entry applied on one of ``node``'s links."""
    ready = asyncio.Event()

    def check(_source: Any, effect: Effect) -> None:
        if isinstance(effect, Applied) and condition():
            ready.set()

    node.effect_observers.append(check)
    if condition():
        ready.set()
    return ready


def _has_event(replica: Replica, participants: int) -> Callable[[], bool]:
    return lambda: EV in replica.events() and replica.status(EV).participants == participants


def test_a_check_in_crosses_a_line_of_three_nodes_over_tls(tmp_path, clock):
    org = init_org(tmp_path / "org", "Example Events")
    admin = _device(tmp_path, org, "admin", Role.ADMIN, clock)
    north = _device(tmp_path, org, "north", Role.GATE, clock)
    south = _device(tmp_path, org, "south", Role.GATE, clock)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(10)])

    async def main():
        a = _node(admin, [])
        arrived = _once(a, lambda: south.device_id in admin.version_vector(EV))
        await a.start()
        n = _node(north, [("127.0.0.1", a.port)])
        await n.start()
        s = _node(south, [("127.0.0.1", n.port)])  # south only knows north
        has_event = _once(s, _has_event(south, 10))
        await s.start()
        # wait until south has the event (it came from admin through north)
        await asyncio.wait_for(has_event.wait(), 10)
        south.check_in(EV, "p3")
        s.local_write(EV)
        await asyncio.wait_for(arrived.wait(), 10)
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
    admin = _device(tmp_path, org, "admin", Role.ADMIN, clock)
    intruder = _device(tmp_path, other, "intruder", Role.GATE, clock)
    admin.create_event(EV, "Conf")

    async def main():
        a = _node(admin, [])
        await a.start()
        i = _node(intruder, [("127.0.0.1", a.port)])
        await i.start()
        for _ in range(100):
            if i.dialers[("127.0.0.1", a.port)].failures >= 2:
                break
            await asyncio.sleep(0.05)
        dialer = i.dialers[("127.0.0.1", a.port)]
        await i.stop()
        await a.stop()
        return dialer

    dialer = asyncio.run(asyncio.wait_for(main(), 30))
    assert dialer.failures >= 2 and "SSL" in (dialer.last_error or "")
    assert EV not in intruder.events()
    assert intruder.device_id not in admin.store.devices()
    admin.close()
    intruder.close()


def test_two_nodes_dialling_each_other_keep_one_link_and_do_not_redial(tmp_path, clock):
    org = init_org(tmp_path / "org", "Example Events")
    one = _device(tmp_path, org, "one", Role.GATE, clock)
    two = _device(tmp_path, org, "two", Role.GATE, clock)

    async def main():
        a, b = _node(one, []), _node(two, [])
        accepted = {"a": 0, "b": 0}  # inbound links (connections accepted and admitted)
        for name, node in (("a", a), ("b", b)):

            def count(link: Link, name: str = name) -> None:
                accepted[name] += not link.outbound

            node.link_observers.append(count)
        await a.start()
        await b.start()
        a.add_peer("127.0.0.1", b.port)
        b.add_peer("127.0.0.1", a.port)
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            if len(a.links) == len(b.links) == 1 and sum(accepted.values()) >= 2:
                break
            await asyncio.sleep(0.05)
        settled = dict(accepted)
        await asyncio.sleep(1.0)  # several backoff periods (base 0.05 s, max 0.5 s)
        result = (
            len(a.links),
            len(b.links),
            dict(accepted),
            settled,
            [d.failures for d in (*a.dialers.values(), *b.dialers.values())],
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


def test_a_revocation_published_by_an_admin_cuts_the_device_off(tmp_path, clock):
    from headcount.pki.revocation import RevocationList, revoke
    from headcount.service.daemon import published_revocations

    org = init_org(tmp_path / "org", "Example Events")
    admin = _device(tmp_path, org, "admin", Role.ADMIN, clock)
    gate = _device(tmp_path, org, "gate", Role.GATE, clock)
    admin.create_event(EV, "Conf")
    _, ca = load_device_certificate(admin.data_dir)

    async def main():
        a = _node(admin, [])
        a.revocations = lambda: published_revocations(admin, ca)
        await a.start()
        g = _node(gate, [("127.0.0.1", a.port)])
        await g.start()
        deadline = asyncio.get_running_loop().time() + 10
        while not a.links and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert a.links, "the gate never connected"
        listed = revoke(RevocationList(org.key_id), gate.device_id, at_ms=clock.now, by="test")
        admin.set_config(EV, "revocations", listed.to_dict())  # authority-written config
        assert a.enforce_revocations() == 1
        while asyncio.get_running_loop().time() < deadline:
            if [code for _, code in a.rejected].count("revoked") >= 2 and not a.links:
                break
            await asyncio.sleep(0.05)
        result = (len(a.links), [code for _, code in a.rejected])
        await g.stop()
        await a.stop()
        return result

    links, codes = asyncio.run(asyncio.wait_for(main(), 30))
    assert links == 0
    assert codes.count("revoked") >= 2  # cut off, then every reconnection refused
    admin.close()
    gate.close()


def test_nodes_sync_over_websocket_with_mutual_tls(tmp_path, clock):
    """A gate reaching the admin only through wss:// (networks where only
    HTTP passes), certificates checked on both sides."""
    org = init_org(tmp_path / "org", "Example Events")
    other = init_org(tmp_path / "other", "Example Events")
    admin = _device(tmp_path, org, "admin", Role.ADMIN, clock)
    gate = _device(tmp_path, org, "gate", Role.GATE, clock)
    intruder = _device(tmp_path, other, "intruder", Role.GATE, clock)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(20)])

    async def main():
        a = _node(admin, [])
        a.config.ws_port = 0
        await a.start()
        url = f"wss://127.0.0.1:{a.ws_port}/sync"
        g = _node(gate, [])
        g.config.ws_peers = [url]
        has_event = _once(g, _has_event(gate, 20))
        await g.start()
        bad = _node(intruder, [])
        bad.config.ws_peers = [url]
        await bad.start()
        await asyncio.wait_for(has_event.wait(), 15)  # the event reached the gate over wss
        gate.check_in(EV, "p4")
        has_scan = _once(a, lambda: admin.version_vector(EV) == gate.version_vector(EV))
        g.local_write(EV)
        await asyncio.wait_for(has_scan.wait(), 15)  # the scan reached the admin over wss
        for node in (bad, g, a):
            await node.stop()
        return [link for link in a.links]

    asyncio.run(asyncio.wait_for(main(), 30))
    assert admin.event(EV).attendance("p4").check_in is not None
    assert EV not in intruder.events()  # the other organisation's device got nothing
    for r in (admin, gate, intruder):
        r.close()


def test_a_gate_receives_only_the_events_it_is_enrolled_for(tmp_path, clock):
    org = init_org(tmp_path / "org", "Example Events")
    admin = _device(tmp_path, org, "admin", Role.ADMIN, clock)
    gate = _device(tmp_path, org, "gate", Role.GATE, clock, events=[EV])
    admin.create_event(EV, "Conf")
    admin.create_event("secret", "Board meeting")
    admin.import_participants("secret", [{"id": "ceo", "name": "C"}])

    async def main():
        a = _node(admin, [])
        await a.start()
        g = _node(gate, [("127.0.0.1", a.port)])
        arrived = _once(g, lambda: EV in gate.events())
        await g.start()
        await asyncio.wait_for(arrived.wait(), 10)  # the allowed event
        for link in a.links:  # a few anti-entropy rounds that would carry it
            await link.peer.anti_entropy()
        await asyncio.sleep(0.3)
        for node in (g, a):
            await node.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert gate.events() == [EV]
    admin.close()
    gate.close()
