"""The relay process: gates sync through it over wss, and records posted to
its HTTP API become entries that reach the gates."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from headcount import InputError, Replica, Role
from headcount.pki.org import init_org
from headcount.relay.server import Relay, load_relay_config
from headcount.relay.tokens import TokenAuthority, create_secret_file
from headcount.replica.replica import wall_clock_ms

from .support.devices import enrolled_replica
from .support.nodes import effect_pulse, tls_node
from .support.sync import sync
from .support.wait import await_until

EV = "ev"


def _client_ctx(org_dir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(org_dir / "org.crt"))
    ctx.check_hostname = False  # devices are named by id, not host name
    return ctx


def test_two_gates_on_separate_networks_converge_through_the_relay_and_the_api(tmp_path):
    clock = wall_clock_ms  # the relay runs on the real clock: so must its peers
    org = init_org(tmp_path / "org", "Example Events")
    relay_replica = enrolled_replica(tmp_path, org, "relay", Role.RELAY, clock)
    north = enrolled_replica(tmp_path, org, "north", Role.GATE, clock)
    south = enrolled_replica(tmp_path, org, "south", Role.GATE, clock)
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(10)])
    relay_replica.close()
    secret = tmp_path / "jwt.secret"
    tokens = TokenAuthority(create_secret_file(secret))
    token = tokens.issue("p3", "user", [EV], now_s=int(time.time()), ttl_s=3600)

    async def main():
        config = load_relay_config(None, tmp_path / "relay")
        config.https = ("127.0.0.1", 0)
        config.ops = ("127.0.0.1", 0)
        config.token_secret = secret
        config.gossip_interval = 0.2
        relay = Relay(config)
        ready = asyncio.Event()
        task = asyncio.create_task(relay.run(ready))
        await asyncio.wait_for(ready.wait(), 10)
        url = f"wss://127.0.0.1:{relay.https_port}/sync"
        nodes = []
        for replica in (admin, north, south):  # each reaches only the relay
            node = tls_node(replica, [])
            node.config.ws_peers = [url]
            await node.start()
            nodes.append(node)
        at_gates = effect_pulse(*nodes[1:])
        gates = (north, south)
        await await_until(
            lambda: all(EV in r.events() and r.status(EV).participants == 10 for r in gates),
            20,
            "the event reached both gates",
            pulse=at_gates,
        )
        scan = north.check_in(EV, "p1").scan
        nodes[1].local_write(EV)
        record = {
            "id": str(uuid.uuid4()),
            "facilityId": EV,
            "deviceId": "phone-7",
            "clockIn": "2026-11-24T08:00:00Z",
            "clientTimestamp": "2026-11-24T08:00:00Z",
            "syncVersion": 1,
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"https://127.0.0.1:{relay.https_port}/api/attendance/sync",
                json={"records": [record]},
                headers={"Authorization": f"Bearer {token}"},
                ssl=_client_ctx(tmp_path / "org"),
            ) as response:
                body = await response.json()
            async with http.get(
                url.replace("wss", "https"),
                ssl=_client_ctx(tmp_path / "org"),
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            ) as refused:
                refused_status = refused.status  # no client certificate: no sync
        await await_until(
            lambda: {scan.id, record["id"]} <= set(south.event(EV).doc.scans),
            20,
            "both scans reached the south gate",
            pulse=at_gates,
        )
        for node in nodes:
            await node.stop()
        relay.stopped.set()
        await asyncio.wait_for(task, 10)
        return body, refused_status

    body, refused_status = asyncio.run(asyncio.wait_for(main(), 60))
    assert body["success"] is True and body["synced"] == 1
    assert refused_status == 403
    assert north.version_vector(EV) == south.version_vector(EV)
    with Replica.open(tmp_path / "relay", read_only=True) as relay:
        assert relay.version_vector(EV) == south.version_vector(EV)  # stored durably
    for r in (admin, north, south):
        r.close()


@pytest.mark.parametrize(
    "text, message",
    [
        ('https = "nope"', "HOST:PORT"),
        ("rate_limit = 0", "positive integer"),
        ("surprise = 1", "unknown configuration keys"),
    ],
)
def test_bad_relay_configuration(tmp_path, text, message):
    path = tmp_path / "relay.toml"
    path.write_text(text + "\n")
    with pytest.raises(InputError, match=message):
        load_relay_config(path, tmp_path)


def _relay_config(tmp_path, name, secret=None, ws_peers=()):
    config = load_relay_config(None, tmp_path / name)
    config.https = ("127.0.0.1", 0)
    config.ops = ("127.0.0.1", 0)
    config.token_secret = secret
    config.gossip_interval = 0.2
    config.ws_peers = list(ws_peers)
    return config


def test_two_chained_relays_carry_a_check_in_between_venues(tmp_path):
    clock = wall_clock_ms
    org = init_org(tmp_path / "org", "Example Events")
    for name in ("cloud", "venue"):
        enrolled_replica(tmp_path, org, name, Role.RELAY, clock).close()
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    east = enrolled_replica(tmp_path, org, "east", Role.GATE, clock)
    west = enrolled_replica(tmp_path, org, "west", Role.GATE, clock)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(5)])

    async def main():
        cloud = Relay(_relay_config(tmp_path, "cloud"))
        ready = asyncio.Event()
        tasks = [asyncio.create_task(cloud.run(ready))]
        await asyncio.wait_for(ready.wait(), 10)
        cloud_url = f"wss://127.0.0.1:{cloud.https_port}/sync"
        venue = Relay(_relay_config(tmp_path, "venue", ws_peers=[cloud_url]))  # chained
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(venue.run(ready)))
        await asyncio.wait_for(ready.wait(), 10)
        venue_url = f"wss://127.0.0.1:{venue.https_port}/sync"
        nodes = []
        for replica, url in ((admin, cloud_url), (east, venue_url), (west, cloud_url)):
            node = tls_node(replica, [])
            node.config.ws_peers = [url]
            await node.start()
            nodes.append(node)
        at_gates = effect_pulse(*nodes[1:])
        await await_until(
            lambda: EV in east.events() and east.status(EV).participants == 5,
            20,
            "the event crossed the relays",
            pulse=at_gates,
        )
        scan = east.check_in(EV, "p2").scan
        nodes[1].local_write(EV)
        await await_until(
            lambda: EV in west.events() and scan.id in west.event(EV).doc.scans,
            20,
            "the scan crossed the two relays",
            pulse=at_gates,
        )
        for node in nodes:
            await node.stop()
        for relay in (venue, cloud):
            relay.stopped.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert west.version_vector(EV) == east.version_vector(EV)
    for r in (admin, east, west):
        r.close()


def test_a_relay_killed_with_sigkill_loses_nothing_and_catches_up(tmp_path):
    import select
    import signal
    import subprocess
    import sys

    clock = wall_clock_ms
    org = init_org(tmp_path / "org", "Example Events")
    relay = enrolled_replica(tmp_path, org, "relay", Role.RELAY, clock)
    gate = enrolled_replica(tmp_path, org, "gate", Role.GATE, clock)
    relay.create_event(EV, "Conf")  # an admin or relay creates the event, the gate receives it
    sync(relay, gate)
    relay.close()
    gate.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(20)])

    def start_relay(https_port: int):
        toml = tmp_path / "relay.toml"
        toml.write_text(
            f'data_dir = "{tmp_path / "relay"}"\nhttps = "127.0.0.1:{https_port}"\n'
            'ops = "127.0.0.1:0"\ngossip_interval = 0.2\n'
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "headcount", "relay", "--config", str(toml)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline().decode() if ready else ""
        assert "serving https://" in line, line + proc.stderr.read().decode()
        return proc, int(line.split(":")[2].split(" ")[0])

    proc, https_port = start_relay(0)
    recorded: list[str] = []

    async def sync_for_a_while(n: int):
        node = tls_node(gate, [])
        node.config.ws_peers = [f"wss://127.0.0.1:{https_port}/sync"]
        await node.start()
        for i in range(n):
            recorded.append(gate.check_in(EV, f"p{i % 20}").scan.id)
            node.local_write(EV)

        def caught_up() -> bool:
            with Replica.open(tmp_path / "relay", read_only=True) as r:
                return EV in r.events() and r.version_vector(EV) == gate.version_vector(EV)

        # (the relay is another process: its store is polled)
        await await_until(caught_up, 20, "the relay caught up", interval=0.1)
        await node.stop()

    try:
        asyncio.run(asyncio.wait_for(sync_for_a_while(10), 60))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with Replica.open(tmp_path / "relay", read_only=True) as r:  # nothing acknowledged lost
            assert set(recorded) <= set(r.event(EV).doc.scans)
        proc, https_port = start_relay(https_port)  # restart on the same port
        asyncio.run(asyncio.wait_for(sync_for_a_while(10), 60))  # and it catches up again
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    with Replica.open(tmp_path / "relay", read_only=True) as r:
        assert set(recorded) <= set(r.event(EV).doc.scans)
        assert r.version_vector(EV) == gate.version_vector(EV)
    gate.close()
