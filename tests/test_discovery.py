"""mDNS discovery: TXT contract, interface scope, and gates finding each other.

Where the traffic goes (the network rule in design.md):

* the in-process tests bind zeroconf to 127.0.0.1 only and use a private,
  random service type, so they neither leave the machine nor meet another
  test run's adverts;
* the multi-process cluster test and the unicast-guard test run inside
  ``headcount.service.netns`` (a private network namespace with only loopback); they are
  skipped, with the reason, when that is not possible (not root, no
  ``unshare``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from zeroconf.asyncio import AsyncServiceInfo

from headcount import InputError, LocalProtocolError, Replica, Role
from headcount.net.advert import (
    MAX_EVENTS_TXT,
    MalformedAdvert,
    check_interfaces,
    decode_advert,
    decode_properties,
    encode_properties,
    in_scope,
)
from headcount.net.discovery import Discovery, DiscoveryConfig, open_zeroconf
from headcount.pki.org import init_org
from headcount.protocol.wire import WIRE_VERSION
from headcount.service import netns

from .support.devices import enrolled_dir
from .support.wait import Pulse, await_until

HERE = Path(__file__).resolve().parent
WORKER = HERE / "support" / "discovery_worker.py"
A, B, C, D = "a" * 20, "b" * 20, "c" * 20, "d" * 20
TIMEOUT = 10.0  # seconds any single in-process wait may take


@pytest.fixture(scope="module")
def in_netns() -> Callable[[list[str]], list[str]]:
    """Wraps a command so that it runs in a private network namespace (the
    project's own helper, headcount.service.netns)."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"mDNS multi-process tests run only in a private network namespace: {reason}")
    return netns.command


def _private_config() -> DiscoveryConfig:
    """Loopback only, and a service type no other run uses."""
    return DiscoveryConfig(service_type=f"_hct{secrets.token_hex(4)}._tcp.local.")


# -- the TXT contract and the interface scope --------------------------------------


@pytest.mark.parametrize(
    "interfaces",
    [(), ("0.0.0.0",), ("224.0.0.251",), ("255.255.255.255",), ("::1",), ("eth0",), ("",)],
)
def test_only_named_ipv4_unicast_interfaces_are_accepted(interfaces):
    with pytest.raises(InputError):
        check_interfaces(interfaces)
    with pytest.raises(InputError):
        Discovery(A, 4000, role="gate", on_peer=print, config=DiscoveryConfig(interfaces))


def test_the_default_interface_is_loopback():
    assert DiscoveryConfig().interfaces == ("127.0.0.1",)
    assert check_interfaces(["192.168.1.10", "127.0.0.1", "192.168.1.10"]) == (
        "192.168.1.10",
        "127.0.0.1",
    )
    with pytest.raises(InputError):
        Discovery(A, 0, role="gate", on_peer=print)


def test_loopback_only_discovery_stays_on_loopback():
    assert in_scope("127.0.0.1", ["127.0.0.1"])
    assert in_scope("127.8.9.10", ["127.0.0.1"])
    assert not in_scope("192.0.2.1", ["127.0.0.1"])
    assert not in_scope("not an address", ["127.0.0.1"])
    assert in_scope("192.0.2.1", ["127.0.0.1", "192.0.2.2"])  # a LAN was named


def test_txt_properties_round_trip_and_the_events_list_is_bounded():
    props = encode_properties(A, ["ev2", "ev1", "ev1"], "gate")
    assert props == {"device": A, "events": "ev1,ev2", "proto": str(WIRE_VERSION), "role": "gate"}
    raw = {k.encode(): v.encode() for k, v in props.items()}
    assert decode_properties(raw) == (A, "gate", ("ev1", "ev2"), True)

    many = encode_properties(A, [f"event-{i:04}" for i in range(100)] + ["a,b"], "gate")
    assert len(many["events"].encode()) <= MAX_EVENTS_TXT and many["more"] == "1"
    device, _, events, complete = decode_properties(
        {k.encode(): v.encode() for k, v in many.items()}
    )
    assert device == A and not complete and "a,b" not in events
    assert events == tuple(f"event-{i:04}" for i in range(len(events)))


GOOD = {b"device": A.encode(), b"proto": str(WIRE_VERSION).encode(), b"role": b"gate"}


@pytest.mark.parametrize(
    "props",
    [
        {},
        {**GOOD, b"proto": b"999"},
        {k: v for k, v in GOOD.items() if k != b"proto"},
        {k: v for k, v in GOOD.items() if k != b"device"},
        {**GOOD, b"device": b"A" * 20},
        {**GOOD, b"device": b"a" * 21},
        {**GOOD, b"device": None},
        {**GOOD, b"role": b"\xff\xfe"},
        {**GOOD, b"role": b"gate\n"},
        {**GOOD, "dévice".encode(): b"x"},
    ],
)
def test_malformed_txt_properties_are_refused(props):
    with pytest.raises(MalformedAdvert):
        decode_properties(props)


LOOPBACK = ["127.0.0.1"]


def test_a_peer_is_dialled_only_at_an_address_in_scope():
    assert decode_advert(GOOD, 4000, ["127.0.0.1"], LOOPBACK).host == "127.0.0.1"
    assert decode_advert(GOOD, 4000, ["192.0.2.7", "127.0.0.2"], LOOPBACK).host == "127.0.0.2"
    with pytest.raises(MalformedAdvert, match="in scope"):
        decode_advert(GOOD, 4000, ["192.0.2.7"], LOOPBACK)  # would leave the machine
    with pytest.raises(MalformedAdvert, match="in scope"):
        decode_advert(GOOD, 4000, [], LOOPBACK)
    assert decode_advert(GOOD, 4000, ["192.0.2.7"], ["192.0.2.2"]).host == "192.0.2.7"


@pytest.mark.parametrize("port", [0, 65536, -1, "4000", None, True])
def test_a_bad_port_is_refused(port):
    with pytest.raises(MalformedAdvert, match="port"):
        decode_advert(GOOD, port, ["127.0.0.1"], LOOPBACK)


def test_lifecycle_misuse_is_the_callers_error():
    async def main():
        discovery = Discovery(A, 4000, role="gate", on_peer=print, config=_private_config())
        await discovery.stop()  # never started: nothing to do
        with pytest.raises(LocalProtocolError):
            await discovery.start()  # stopped for good

    asyncio.run(main())


# -- in process, on 127.0.0.1 --------------------------------------------------------


class Recorder:
    """Callbacks of one Discovery, each kind of call with an event to await."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail  # on_peer raises (after recording): discovery must carry on
        self.peers: list[tuple[str, str, int]] = []
        self.lost: list[str] = []
        self.ignored: dict[str, str] = {}
        self.changed = Pulse()

    def on_peer(self, device: str, host: str, port: int) -> None:
        self.peers.append((device, host, port))
        self.changed.beat()
        if self.fail:
            raise RuntimeError("a broken callback")

    def on_lost(self, device: str) -> None:
        self.lost.append(device)
        self.changed.beat()

    def on_ignored(self, name: str, reason: str) -> None:
        self.ignored[name] = reason
        self.changed.beat()

    async def until(self, condition, what: str, timeout: float = TIMEOUT) -> None:
        """Wait (bounded) until ``condition()`` holds; re-checked on each callback."""
        await await_until(condition, timeout, what, pulse=self.changed)

    def discovery(self, device: str, port: int, config: DiscoveryConfig) -> Discovery:
        return Discovery(
            device,
            port,
            role="gate",
            events=["ev"],
            on_peer=self.on_peer,
            on_lost=self.on_lost,
            on_ignored=self.on_ignored,
            config=config,
        )


def test_two_devices_on_loopback_find_each_other_and_notice_a_departure(caplog):
    config = _private_config()

    async def main():
        ra, rb = Recorder(), Recorder(fail=True)
        da, db = ra.discovery(A, 4001, config), rb.discovery(B, 4002, config)
        await asyncio.gather(da.start(), db.start())
        try:
            await ra.until(lambda: (B, "127.0.0.1", 4002) in ra.peers, "A found B")
            await rb.until(lambda: (A, "127.0.0.1", 4001) in rb.peers, "B found A")
            await ra.until(lambda: ra.ignored.get(da.name) == "self", "A ignored its own advert")
            await db.stop()  # goodbye packets
            await ra.until(lambda: B in ra.lost, "A noticed B left")
        finally:
            await asyncio.gather(da.stop(), db.stop())
        return ra, rb, da

    ra, rb, da = asyncio.run(asyncio.wait_for(main(), 30))
    assert ra.peers == [(B, "127.0.0.1", 4002)]  # once, not on every refresh
    assert rb.peers == [(A, "127.0.0.1", 4001)]
    assert A not in [p[0] for p in ra.peers] and da.peers == {}
    assert "a broken callback" in caplog.text  # logged, not raised


def _raw_service(
    config: DiscoveryConfig, label: str, port: int, text: bytes | dict, host: str = "127.0.0.1"
):
    """An advert made by hand (the address is only record data: nothing is sent to it)."""
    return AsyncServiceInfo(
        config.service_type,
        f"{label}.{config.service_type}",
        addresses=[socket.inet_aton(host)],
        port=port,
        properties=text,
        server=f"{label}.local.",
    )


def test_malformed_adverts_are_ignored_and_a_changed_peer_is_reported_again():
    """Other devices' adverts, written by hand with zeroconf (on 127.0.0.1)."""
    config = _private_config()
    good = {"device": C, "proto": str(WIRE_VERSION), "role": "gate", "events": "ev"}
    bad = {
        "undecodable": b"\x10device=\xff\xfe\xfd" + b"\x07proto=1" + b"\x30truncated",
        "old-protocol": {**good, "device": B, "proto": "0"},
        "no-device": {k: v for k, v in good.items() if k != "device"},
    }
    off_machine = {**good, "device": D}  # a valid advert, but at a LAN address

    async def main():
        rec = Recorder()
        discovery = rec.discovery(A, 4001, config)
        others = open_zeroconf(["127.0.0.1"])
        services = [_raw_service(config, label, 5000, text) for label, text in bad.items()]
        services.append(_raw_service(config, "gate-d", 4004, off_machine, "192.0.2.7"))
        c = _raw_service(config, "gate-c", 4003, good)
        try:
            await discovery.start()
            registering = [others.async_register_service(s) for s in [*services, c]]
            await asyncio.gather(*await asyncio.gather(*registering))
            names = {s.name for s in services}
            await rec.until(lambda: names <= rec.ignored.keys(), "every malformed advert ignored")
            await rec.until(lambda: (C, "127.0.0.1", 4003) in rec.peers, "C found on port 4003")
            c.port = 4013  # gate C restarted on another port
            await (await others.async_update_service(c))
            await rec.until(lambda: (C, "127.0.0.1", 4013) in rec.peers, "C found on port 4013")
            c_upgraded = _raw_service(config, "gate-c", 4013, {**good, "proto": "0"})
            await (await others.async_update_service(c_upgraded))
            # no longer a peer we can talk to
            await rec.until(lambda: C in rec.lost, "C reported lost")
        finally:
            await discovery.stop()
            await others.async_close()
        return rec, names

    rec, names = asyncio.run(asyncio.wait_for(main(), 30))
    assert [p[0] for p in rec.peers] == [C, C] and rec.lost == [C]
    reasons = {n.split(".")[0]: rec.ignored[n] for n in names}
    assert "protocol" in reasons["old-protocol"] and "in scope" in reasons["gate-d"], reasons
    assert "device" in reasons["no-device"], reasons


# -- inside a private network namespace ---------------------------------------------


def _run_worker(
    in_netns: Callable[[list[str]], list[str]], args: list[str], timeout: float
) -> dict:
    proc = subprocess.run(
        in_netns([sys.executable, str(WORKER), *args]),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if '"result"' in line]
    assert len(results) == 1, (proc.stdout, proc.stderr[-3000:])
    return results[0]["result"]


def test_unicast_replies_to_a_non_loopback_address_are_dropped(in_netns):
    out = _run_worker(in_netns, ["guard"], timeout=30)
    assert out["loopback_answers"], out  # the query itself is answerable
    assert out["lan_reply_bytes"] == 0 and out["dropped_unicast"] >= 1, out


def test_gates_in_separate_processes_find_each_other_and_a_check_in_reaches_all(in_netns, tmp_path):
    """Four processes (an admin holding the event, three gates), no static
    peers. The admin's event reaches the gates only through links made by
    mDNS; gate 1 checks a participant in once it holds the event; every other
    process must then hold that check-in."""
    org = init_org(tmp_path / "org", "Example Events")
    dirs = [enrolled_dir(tmp_path, org, "admin", Role.ADMIN)]
    dirs += [enrolled_dir(tmp_path, org, f"gate{i}", Role.GATE) for i in (1, 2, 3)]
    with Replica.open(dirs[0]) as admin:
        admin.create_event("ev", "Conf")
        admin.import_participants("ev", [{"id": f"p{i}", "name": f"N{i}"} for i in range(5)])
    args = ["cluster", "ev", "p3", "1", "30", *map(str, dirs)]

    out = _run_worker(in_netns, args, timeout=55)

    ids = out["ready"]
    assert out["netns"] and out["gates"] == 4 and None not in ids, out
    others = [sorted(set(ids) - {d}) for d in ids]
    assert out["found"] == others, out  # everyone found everyone by mDNS
    assert out["writer"] == ids[1] and out["scan"], out
    assert out["has"] == {d: out["scan"] for d in ids if d != ids[1]}, out
    for done in out["done"]:  # (peers that stopped first are gone from "discovered")
        assert done["static_peers"] == 0 and done["rejected"] == [], out
        assert set(done["ignored"].values()) <= {"self"}, out  # nothing malformed
    assert out["exit_codes"] == [0, 0, 0, 0], out
