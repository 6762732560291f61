"""Revocations: signed by the organisation CA or an admin, verified record by
record, grow-only, gossiped and enforced (issue 11, attack 4).

1. The attack: a gate that writes a ``revocations`` configuration value cuts
   no one off any more (on the code before this change it cut the victim
   off every daemon and relay that merged event configuration).
2. An admin revokes through its running daemon; the record reaches a relay
   and another gate through gossip, and both refuse the revoked gate.
3. Forged records (a gate's, another organisation's admin's, a revoked
   admin's, tampered bytes...) are refused one by one, with a reason that
   shows in the node's counters, log and metrics; valid records beside them
   are kept.
4. Any order, duplication or batching of the same records converges to the
   same list in force, and no record is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from headcount import Replica, Role
from headcount.core.errors import HeadcountError
from headcount.core.identity import device_id_for
from headcount.net.node import refusal_metrics
from headcount.pki.device import load_device_certificate
from headcount.pki.org import Org, enroll, init_org, revoke_as_ca
from headcount.pki.revocation_book import RevocationBook, in_force
from headcount.pki.revocation_record import (
    RevocationClaim,
    SignedRevocation,
    claim_for,
    sign_revocation,
    verify_record,
)
from headcount.pki.verify import verify_peer_certificate
from headcount.protocol.session import RevocationRefused, Send, Session
from headcount.protocol.wire import FrameDecoder, RevocationRecord, Revocations
from headcount.relay.server import Relay, RelayConfig
from headcount.replica.log import ReplicaLog
from headcount.replica.replica import wall_clock_ms
from headcount.service.daemon import Daemon, DaemonConfig
from headcount.store.dbfile import StoreFile

from .support.daemons import DEADLINE_S, LISTENING, Proc
from .support.devices import enrolled_dir, enrolled_replica
from .support.nodes import effect_pulse, tls_node
from .support.protocol import ConnectionPair
from .support.sync import sync
from .support.wait import await_until, wait_until

EV = "ev"
T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # when the test certificates are issued
T_MS = int(T.timestamp() * 1000)
DER = serialization.Encoding.DER


# -- devices and records, no network ------------------------------------------------


@dataclass(frozen=True)
class Device:
    key: Ed25519PrivateKey
    der: bytes
    id: str


def device(org: Org, role: Role, now: datetime = T) -> Device:
    key = Ed25519PrivateKey.generate()
    cert = enroll(org, key.public_key(), None, role, ["*"], now=now)
    return Device(key, cert.public_bytes(DER), device_id_for(key.public_key()))


def signed_by(org: Org, signer: Device, device_id: str, at_ms: int, **kw: Any) -> SignedRevocation:
    claim = claim_for(org.certificate, device_id, at_ms=at_ms, signer=signer.id, **kw)
    return sign_revocation(claim, signer.key, signer.der)


def victim_id() -> str:
    return device_id_for(Ed25519PrivateKey.generate().public_key())


@dataclass(frozen=True)
class World:
    org: Org
    other: Org  # another organisation (same name, another key)
    admin: Device
    gate: Device
    stale: Device  # an admin the CA revoked at T + 1 s
    foreign: Device  # an admin of the other organisation


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("orgs")
    org = init_org(root / "org", "Example Events", now=T - timedelta(days=1))
    other = init_org(root / "other", "Example Events", now=T - timedelta(days=1))
    return World(
        org,
        other,
        device(org, Role.ADMIN),
        device(org, Role.GATE),
        device(org, Role.ADMIN),
        device(other, Role.ADMIN),
    )


def _tampered_body(w: World) -> SignedRevocation:
    good = signed_by(w.org, w.admin, victim_id(), T_MS, reason="lost")
    forged = dataclasses.replace(RevocationClaim.decode(good.body), reason="found")
    return SignedRevocation(forged.encode(), good.sig, good.cert)


def _flipped_sig(w: World) -> SignedRevocation:
    good = signed_by(w.org, w.admin, victim_id(), T_MS)
    return SignedRevocation(good.body, bytes([good.sig[0] ^ 1]) + good.sig[1:], good.cert)


def _ca_name_admin_key(w: World) -> SignedRevocation:
    claim = claim_for(w.org.certificate, victim_id(), at_ms=T_MS, signer="ca")
    return sign_revocation(claim, w.admin.key)


FORGERIES: dict[str, tuple[Any, str]] = {
    "signed by a gate": (lambda w: signed_by(w.org, w.gate, victim_id(), T_MS), "not_admin"),
    "by an admin of another organisation": (
        lambda w: signed_by(w.org, w.foreign, victim_id(), T_MS),
        "signer_wrong_issuer",
    ),
    "for another organisation": (
        lambda w: revoke_as_ca(w.other, victim_id(), at_ms=T_MS),
        "wrong_org",
    ),
    "by a revoked admin": (
        lambda w: signed_by(w.org, w.stale, victim_id(), T_MS + 2000),
        "signer_revoked",
    ),
    "tampered body": (_tampered_body, "bad_signature"),
    "tampered signature": (_flipped_sig, "bad_signature"),
    "truncated body": (
        lambda w: (lambda r: SignedRevocation(r.body[:-1], r.sig, r.cert))(
            signed_by(w.org, w.admin, victim_id(), T_MS)
        ),
        "malformed",
    ),
    "with someone else's certificate": (
        lambda w: (lambda r: SignedRevocation(r.body, r.sig, w.gate.der))(
            signed_by(w.org, w.admin, victim_id(), T_MS)
        ),
        "signer_mismatch",
    ),
    "after the admin's certificate expired": (
        lambda w: signed_by(w.org, w.admin, victim_id(), T_MS + 400 * 86_400_000),
        "signer_expired",
    ),
    "by the CA, with a certificate": (
        lambda w: (lambda r: SignedRevocation(r.body, r.sig, w.admin.der))(
            revoke_as_ca(w.org, victim_id(), at_ms=T_MS)
        ),
        "malformed",
    ),
    "in the CA's name with an admin's key": (_ca_name_admin_key, "bad_signature"),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_record_is_refused_with_its_reason_and_the_valid_one_beside_it_kept(
    world: World, name: str
) -> None:
    make, code = FORGERIES[name]
    book = RevocationBook(world.org.certificate)
    stale_revoked = revoke_as_ca(world.org, world.stale.id, at_ms=T_MS + 1000)
    accepted, refused = book.check([stale_revoked])
    book.add(accepted)
    victim = victim_id()
    forged, valid = make(world), signed_by(world.org, world.admin, victim, T_MS)
    accepted, refused = book.check([forged, valid])
    assert [r.code for r in refused] == [code], refused
    # A void record is kept without effect (whether it is void depends on
    # other records); anything else refused is not kept at all.
    dormant = [forged] if code == "signer_revoked" else []
    assert [v.record for v in accepted] == [*dormant, valid]
    book.add(accepted)
    assert {e.device_id for e in book.revocations().entries} == {world.stale.id, victim}


def test_records_signed_by_the_ca_or_an_admin_revoke_devices_and_certificates(
    world: World,
) -> None:
    book = RevocationBook(world.org.certificate)
    lost, stolen = victim_id(), victim_id()
    records = [
        revoke_as_ca(world.org, lost, at_ms=T_MS, reason="lost"),
        signed_by(world.org, world.admin, stolen, T_MS, serial=0xABC),
    ]
    accepted, refused = book.check(records)
    assert refused == [] and len(accepted) == 2
    book.add(accepted)
    in_force_now = book.revocations()
    assert in_force_now.find(lost, 1) is not None and in_force_now.find(lost, 2) is not None
    assert in_force_now.find(stolen, 0xABC).revoked_by == world.admin.id
    assert in_force_now.find(stolen, 0xABD) is None  # only that certificate
    gate_cert = enroll(
        world.org, Ed25519PrivateKey.generate().public_key(), None, "gate", ["*"], now=T
    )
    assert verify_peer_certificate(gate_cert, world.org.certificate, T_MS, in_force_now)


def test_a_revoked_admins_record_dated_after_its_revocation_is_void_whenever_it_arrives(
    world: World,
) -> None:
    """Arrival order does not matter: the record is refused if the admin's
    revocation is known, and loses its effect when that revocation comes later."""
    target = victim_id()
    late = signed_by(world.org, world.stale, target, T_MS + 2000)
    early = signed_by(world.org, world.stale, victim_id(), T_MS + 500)  # before: stays valid
    revoked = revoke_as_ca(world.org, world.stale.id, at_ms=T_MS + 1000)
    first = RevocationBook(world.org.certificate)
    for batch in ([late, early], [revoked]):
        first.add(first.check(batch)[0])
    second = RevocationBook(world.org.certificate)
    second.add(second.check([revoked])[0])
    accepted, refused = second.check([late, early])
    second.add(accepted)
    assert [r.code for r in refused] == ["signer_revoked"]
    assert first.revocations() == second.revocations()
    assert first.revocations().find(target, 1) is None
    assert len(first) == len(second) == 3  # the void record is kept (and passed on)


def test_a_forged_copy_does_not_hide_the_genuine_record_behind_it(world: World) -> None:
    good = signed_by(world.org, world.admin, victim_id(), T_MS)
    bad = SignedRevocation(good.body, bytes(64), good.cert)
    book = RevocationBook(world.org.certificate)
    accepted, refused = book.check([bad, good, good])
    assert [v.record for v in accepted] == [good]
    assert [r.code for r in refused] == ["bad_signature"]


def test_a_book_is_bounded(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from headcount.pki import revocation_book

    small = RevocationBook(world.org.certificate, max_records=2)
    records = [revoke_as_ca(world.org, victim_id(), at_ms=T_MS + i) for i in range(3)]
    accepted, refused = small.check(records)
    assert len(accepted) == 2 and [r.code for r in refused] == ["list_full"]
    # A revoked admin's key cannot fill a book with void records either.
    monkeypatch.setattr(revocation_book, "MAX_VOID_PER_SIGNER", 2)
    book = RevocationBook(world.org.certificate)
    book.add(book.check([revoke_as_ca(world.org, world.stale.id, at_ms=T_MS)])[0])
    void = [signed_by(world.org, world.stale, victim_id(), T_MS + 10 + i) for i in range(4)]
    accepted, refused = book.check(void)
    assert len(accepted) == 2 and [r.code for r in refused] == ["signer_revoked"] * 4
    book.add(accepted)
    assert {e.device_id for e in book.revocations().entries} == {world.stale.id}


# -- any order, any duplication, any batching: the same list ------------------------


def _pool() -> tuple[Org, list[SignedRevocation]]:
    """Records of one organisation whose effect depends on each other: two
    admins revoking each other and devices, the CA revoking one of them."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="revocation-pool-"))
    org = init_org(root / "org", "Pool", now=T - timedelta(days=1))
    a, b = device(org, Role.ADMIN), device(org, Role.ADMIN)
    d = [victim_id() for _ in range(5)]
    records = [
        revoke_as_ca(org, d[0], at_ms=T_MS + 100),
        revoke_as_ca(org, b.id, at_ms=T_MS + 300, reason="stolen"),
        revoke_as_ca(org, d[1], at_ms=T_MS + 50, serial=7),
        signed_by(org, a, d[2], T_MS + 200),
        signed_by(org, b, d[3], T_MS + 200),  # before b's revocation: in force
        signed_by(org, b, d[4], T_MS + 400),  # after it: void
        signed_by(org, a, b.id, T_MS + 250),  # a revokes b first
        signed_by(org, b, a.id, T_MS + 260),  # then b revokes a: void
        signed_by(org, a, d[4], T_MS + 270),  # a is not revoked (b's record is void)
        signed_by(org, b, d[0], T_MS + 240),
    ]
    return org, records


POOL_ORG, POOL = _pool()
PROPERTY = settings(
    max_examples=60, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)


def _fed(order: list[int], cuts: list[int]) -> RevocationBook:
    """A book fed the pool's records in ``order``, in batches cut at ``cuts``."""
    book = RevocationBook(POOL_ORG.certificate)
    points = sorted({c % (len(order) + 1) for c in cuts})
    seen_ca: set[tuple[str, int]] = set()  # (device, a serial it covers)
    for start, end in zip([0, *points], [*points, len(order)], strict=True):
        before = book.records()
        book.add(book.check([POOL[i] for i in order[start:end]])[0])
        assert book.records()[: len(before)] == before  # grow-only: nothing dropped
        in_force_now = book.revocations()
        for device_id, serial in seen_ca:  # what the CA revoked stays revoked
            assert in_force_now.find(device_id, serial) is not None
        seen_ca |= {
            (e.device_id, 1 if e.serial is None else e.serial)
            for e in in_force_now.entries
            if e.revoked_by == "ca"
        }
    return book


@PROPERTY
@given(
    chosen=st.lists(st.integers(0, len(POOL) - 1), max_size=30),
    data=st.data(),
)
def test_any_order_duplication_or_batching_converges_to_the_same_list(chosen, data):
    other = data.draw(st.permutations(chosen), label="another order")
    more = data.draw(st.lists(st.sampled_from(chosen or [0]), max_size=5), label="repeats")
    cuts = data.draw(st.lists(st.integers(0, 100), max_size=6), label="batches")
    one = _fed(chosen, [])
    two = _fed([*other, *(more if chosen else [])], cuts)
    verified = [verify_record(POOL[i], POOL_ORG.certificate) for i in set(chosen)]
    expected = in_force(verified, one.org)[0]  # the whole set at once
    assert one.revocations() == two.revocations() == expected


# -- the sessions carry them -------------------------------------------------------------


def test_two_logs_exchange_records_over_a_session_and_converge_without_echo(
    tmp_path: Path, clock: Any
) -> None:
    org = init_org(tmp_path / "org", "Example Events")
    logs = []
    for name in ("one", "two"):
        Replica.init(tmp_path / name, role=Role.GATE, name=name)
        log = ReplicaLog(Replica.open(tmp_path / name, wall_clock=clock))
        log.use_revocations(RevocationBook(org.certificate))
        logs.append(log)
    one, two = logs
    victims = [victim_id() for _ in range(3)]
    wire = [
        RevocationRecord(r.body, r.sig, r.cert)
        for r in (revoke_as_ca(org, v, at_ms=clock.now) for v in victims)
    ]
    assert one.learn_revocations(wire[:2]).added == 2
    assert two.learn_revocations(wire[1:]).added == 2
    pair = ConnectionPair(one, two)  # type: ignore[arg-type]
    pair.run()
    assert one.revocation_list() == two.revocation_list()
    assert {e.device_id for e in one.revocation_list().entries} == set(victims)
    for side in pair.sides:  # the next round offers nothing: each knows the other holds all
        sent = _messages(side.session.anti_entropy(pair.now))
        assert not [m for m in sent if isinstance(m, Revocations)]
    for log in logs:  # kept in the store: a log reopened on it enforces the same list
        fresh = ReplicaLog(log.replica)
        fresh.use_revocations(RevocationBook(org.certificate))
        assert fresh.revocation_list() == one.revocation_list()
        log.replica.close()


def _messages(effects: list[Any]) -> list[Any]:
    decoder = FrameDecoder()
    for effect in effects:
        if isinstance(effect, Send):
            decoder.receive_data(effect.data)
    out = []
    while (m := decoder.next_message()) is not None:
        out.append(m)
    return out


def test_a_peer_sending_too_many_records_in_a_session_is_cut_off(tmp_path, clock):
    from headcount.protocol.config import SessionConfig
    from headcount.protocol.wire import Hello, encode

    Replica.init(tmp_path / "g", role=Role.GATE, name="g")
    replica = Replica.open(tmp_path / "g", wall_clock=clock)
    session = Session(ReplicaLog(replica), 0.0, SessionConfig(max_revocations=3))
    session.start(0.0)
    session.receive_data(encode(Hello(victim_id(), ())), 0.0)
    junk = Revocations(tuple(RevocationRecord(b"x%d" % i, bytes(64)) for i in range(2)))
    session.receive_data(encode(junk), 0.0)  # two: refused one by one, the session stays
    assert session.state.value == "open"
    effects = session.receive_data(encode(junk), 0.0)  # four in all
    assert session.state.value == "closed" and effects[-1].error == "too_big"
    replica.close()


def test_a_peer_sending_forgeries_is_cut_off_but_not_one_passing_on_void_records(
    world: World, tmp_path: Path, clock: Any
) -> None:
    from headcount.protocol.gossip import MAX_BAD_RECORDS
    from headcount.protocol.wire import Hello, encode

    Replica.init(tmp_path / "g", role=Role.GATE, name="g")
    replica = Replica.open(tmp_path / "g", wall_clock=clock)
    log = ReplicaLog(replica)
    log.use_revocations(RevocationBook(world.org.certificate))
    revoked = revoke_as_ca(world.org, world.stale.id, at_ms=T_MS)
    assert log.learn_revocations([RevocationRecord(revoked.body, revoked.sig)]).added == 1

    def session() -> Session:
        s = Session(log, 0.0)
        s.start(0.0)
        s.receive_data(encode(Hello(victim_id(), ())), 0.0)
        return s

    def wire(records: list[SignedRevocation]) -> bytes:
        return encode(Revocations(tuple(RevocationRecord(r.body, r.sig, r.cert) for r in records)))

    # An honest peer passes on what a revoked admin signed: kept without effect.
    honest = session()
    void = [signed_by(world.org, world.stale, victim_id(), T_MS + 1 + i) for i in range(20)]
    effects = honest.receive_data(wire(void), 1.0)
    assert [e.code for e in effects if isinstance(e, RevocationRefused)] == ["signer_revoked"] * 20
    assert honest.state.value == "open"
    # Forgeries: each refused and reported, then the peer is cut off.
    forger = session()
    forged = [signed_by(world.org, world.gate, victim_id(), T_MS) for _ in range(MAX_BAD_RECORDS)]
    effects = forger.receive_data(wire(forged), 1.0)
    assert forger.state.value == "open" and len(effects) == MAX_BAD_RECORDS
    effects = forger.receive_data(wire(forged[:1]), 1.0)
    assert isinstance(effects[0], RevocationRefused) and effects[0].code == "not_admin"
    assert effects[-1].error == "bad_revocations" and forger.state.value == "closed"
    assert len(log.revocations()) == 21  # nothing forged was kept
    replica.close()


# -- the attack: a gate's configuration value ------------------------------------------


def test_a_gate_writing_a_revocations_config_value_cuts_no_one_off(tmp_path, clock):
    """Attack 4. A modified gate writes the ``revocations`` configuration key
    (the old distribution channel) naming a victim; a daemon and a relay that
    hold that value keep admitting the victim."""
    from headcount.pki.revocation import RevocationList, revoke

    org = init_org(tmp_path / "org", "Example Events")
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    relay = enrolled_replica(tmp_path, org, "relay", Role.RELAY, clock)
    attacker = enrolled_replica(tmp_path, org, "attacker", Role.GATE, clock)
    victim = enrolled_replica(tmp_path, org, "victim", Role.GATE, clock)
    admin.create_event(EV, "Conf")
    sync(admin, attacker)
    forged = revoke(RevocationList(org.key_id), victim.device_id, at_ms=clock.now, by="attacker")

    def write_config(ev: Any, now: int) -> Any:  # what a modified client can sign
        return ev.doc.transact(
            now, lambda dot, hlc: ev._write_config("revocations", forged.to_dict(), dot, hlc)
        )

    attacker._write(EV, write_config)
    for holder in (admin, relay):
        # Holders that refuse the entry for what it does (content validation)
        # hold no value at all; either way the value must revoke no one.
        with contextlib.suppress(HeadcountError):
            sync(attacker, holder)
    admin.close()
    relay.close()
    _, ca = load_device_certificate(victim.data_dir)
    victim_cert, _ = load_device_certificate(victim.data_dir)
    daemon = Daemon(DaemonConfig(data_dir=tmp_path / "admin"))
    hub = Relay(RelayConfig(data_dir=tmp_path / "relay"))  # built, never started
    for node in (daemon.node, hub.node):
        verify_peer_certificate(victim_cert, ca, wall_clock_ms(), node.revocations())

    async def main() -> int:
        await daemon.node.start()
        v = tls_node(victim, [("127.0.0.1", daemon.node.port)])
        pulse = effect_pulse(daemon.node)
        await v.start()
        peers = lambda: {link.peer.session.status.peer for link in daemon.node.links}  # noqa: E731
        await await_until(
            lambda: victim.device_id in peers(),
            10,
            "the victim connected to the admin's daemon",
            pulse=pulse,
        )
        refused = daemon.node.refusals["peer:revoked"]
        await v.stop()
        await daemon.node.stop()
        return refused

    try:
        assert asyncio.run(asyncio.wait_for(main(), 30)) == 0
    finally:
        daemon.replica.close()
        hub.audit.close()
        hub.replica.close()
        attacker.close()
        victim.close()


# -- live nodes: refusals are visible --------------------------------------------------


def test_a_modified_peer_offering_forged_records_is_refused_visibly(tmp_path, clock, caplog):
    org = init_org(tmp_path / "org", "Example Events")
    other = init_org(tmp_path / "other", "Example Events")
    honest = enrolled_replica(tmp_path, org, "honest", Role.GATE, clock)
    liar = enrolled_replica(tmp_path, org, "liar", Role.GATE, clock)
    now = wall_clock_ms()
    liar_cert, _ = load_device_certificate(liar.data_dir)
    gate_signer = Device(liar.identity.private_key, liar_cert.public_bytes(DER), liar.device_id)
    victim = victim_id()
    forged = [
        signed_by(org, gate_signer, victim, now),  # a gate may not revoke
        revoke_as_ca(other, victim, at_ms=now),  # another organisation's CA
        SignedRevocation(b"\x93garbage", bytes(64)),
    ]
    valid = revoke_as_ca(org, victim_id(), at_ms=now)
    offered = [RevocationRecord(r.body, r.sig, r.cert) for r in [*forged, valid]]

    async def main() -> tuple[Any, Any]:
        h = tls_node(honest, [])
        registry = CollectorRegistry()
        h.effect_observers.append(refusal_metrics(registry))
        pulse = effect_pulse(h)
        await h.start()
        m = tls_node(liar, [("127.0.0.1", h.port)])
        m.log.revocations = lambda: offered  # a modified client offers what it likes
        await m.start()
        await await_until(
            lambda: sum(v for k, v in h.refusals.items() if k.startswith("revocation:")) >= 3,
            10,
            lambda: f"the honest node refused three records ({h.refusals})",
            pulse=pulse,
        )
        await m.stop()
        await h.stop()
        return h, registry

    with caplog.at_level(logging.WARNING, logger="headcount.net"):
        node, registry = asyncio.run(asyncio.wait_for(main(), 30))
    assert node.refusals["revocation:not_admin"] == 1
    assert node.refusals["revocation:wrong_org"] == 1
    assert node.refusals["revocation:malformed"] == 1
    assert node.log.revocation_list().find(victim, 1) is None
    assert [r.body for r in node.log.revocations()] == [valid.body]  # the valid one was kept
    sample = registry.get_sample_value(
        "headcount_refusals_total", {"kind": "revocation", "code": "not_admin"}
    )
    assert sample == 1.0
    logged = [r.getMessage() for r in caplog.records]
    assert any("not_admin" in line and liar.device_id in line for line in logged)
    honest.close()
    liar.close()


def test_revocation_records_travel_in_incremental_backup_rows(tmp_path, clock):
    org = init_org(tmp_path / "org", "Example Events")
    Replica.init(tmp_path / "g", role=Role.GATE, name="g")
    replica = Replica.open(tmp_path / "g", wall_clock=clock)
    log = ReplicaLog(replica)
    log.use_revocations(RevocationBook(org.certificate))
    record = revoke_as_ca(org, victim_id(), at_ms=clock.now)
    log.learn_revocations([RevocationRecord(record.body, record.sig, record.cert)])
    replica.close()
    with StoreFile.open_read_only(tmp_path / "g" / "headcount.db") as source:
        rows = source.delta_since({})
    assert [r[1] for r in rows.revocations] == [record.body]
    Replica.init(tmp_path / "h", role=Role.GATE, name="h")
    Replica.open(tmp_path / "h").close()
    with StoreFile.open_writable(tmp_path / "h" / "headcount.db") as target:
        with target.write_transaction():
            target.apply_delta(rows)
            target.apply_delta(rows)  # replayed twice: kept once
    with Replica.open(tmp_path / "h", read_only=True) as copy:
        assert [r[1] for r in copy.store.revocations()] == [record.body]


# -- real daemons: an admin revokes, gossip carries it ------------------------------------


SYNC = "[sync]\ngossip_interval = 0.3\nbackoff_base = 0.1\nbackoff_max = 1.0\n"


def _gate(root: Path, name: str, data: Path, peers: list[int], relay: int) -> Proc:
    peer_list = ", ".join(f'"127.0.0.1:{p}"' for p in peers)
    config = root / f"{name}.toml"
    config.write_text(
        f'data_dir = "{data}"\n[network]\nlisten = "127.0.0.1:0"\npeers = [{peer_list}]\n'
        f'ws_peers = ["wss://127.0.0.1:{relay}/sync"]\n' + SYNC
    )
    return Proc(root, name, data, ["run", "--config", str(config)], LISTENING)


def _links(proc: Proc) -> set[str]:
    return {p["peer"] for p in proc.ask({"op": "status"})["peers"] if p.get("peer")}


def test_an_admin_revokes_through_its_daemon_and_gossip_cuts_the_gate_off_everywhere(tmp_path):
    org = init_org(tmp_path / "org", "Example Events")
    dirs = {
        name: enrolled_dir(tmp_path, org, name, role)
        for name, role in (
            ("relay", Role.RELAY),
            ("admin", Role.ADMIN),
            ("honest", Role.GATE),
            ("lost", Role.GATE),
        )
    }
    ids = {}
    for name, data in dirs.items():
        with Replica.open(data, read_only=True) as r:
            ids[name] = r.device_id
    relay_config = tmp_path / "relay.toml"
    relay_config.write_text(
        f'data_dir = "{dirs["relay"]}"\nhttps = "127.0.0.1:0"\nops = "127.0.0.1:0"\n'
        "gossip_interval = 0.3\n"
    )
    relay = Proc(
        tmp_path, "relay", dirs["relay"], ["relay", "--config", str(relay_config)],
        r"serving https://127\.0\.0\.1:(\d+)",
    )  # fmt: skip
    procs = [relay]
    try:
        relay.start()
        admin = _gate(tmp_path, "admin", dirs["admin"], [], relay.port)
        honest = _gate(tmp_path, "honest", dirs["honest"], [], relay.port)
        procs += [admin, honest]
        admin.start()
        honest.start()
        lost = _gate(tmp_path, "lost", dirs["lost"], [honest.port], relay.port)
        procs.append(lost)
        lost.start()
        wait_until(
            lambda: {ids["relay"], ids["honest"]} <= _links(lost) and ids["relay"] in _links(admin),
            DEADLINE_S,
            "the lost gate linked to the relay and the honest gate, the admin to the relay",
        )
        # A gate's daemon may not sign revocations.
        refused = honest.cli("device", "revoke", ids["lost"])
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["error"]["code"] == "not_admin"
        # The admin revokes the lost gate through its daemon.
        done = admin.cli("device", "revoke", ids["lost"], "--reason", "stolen at the door")
        assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
        reply = json.loads(done.stdout)
        assert reply["record"]["revocation"]["signer"] == ids["admin"]
        assert [e["device_id"] for e in reply["revoked"]] == [ids["lost"]]

        def honest_cut_it_off() -> dict[str, Any] | None:
            status = honest.ask({"op": "status"})["revocations"]
            revoked = [e["device_id"] for e in status["revoked"]] == [ids["lost"]]
            return status if revoked and status["refusals"].get("peer:revoked") else None

        wait_until(honest_cut_it_off, DEADLINE_S, "the honest gate learnt it and cut the gate off")

        def relay_refused_it() -> bool:
            return any(
                "revoked" in line["message"] and ids["lost"] in line["message"]
                for line in relay.log_lines()
                if line.get("logger", "").startswith("headcount.net")
            )

        wait_until(relay_refused_it, DEADLINE_S, "the relay logged that it cut the gate off")
        wait_until(
            lambda: not _links(lost) & {ids["relay"], ids["honest"]},
            DEADLINE_S,
            "the lost gate has no link left",
        )
        # The offline path: the CA signs, the admin's daemon imports and gossips.
        spare = victim_id()
        offline = admin.cli("device", "revoke", spare, "--org-dir", str(tmp_path / "org"))
        assert offline.returncode == 0, offline.stderr.decode()
        imported = admin.cli("device", "revoke", "--import", str(tmp_path / "org/revocations.json"))
        assert imported.returncode == 0, imported.stderr.decode()
        assert json.loads(imported.stdout)["added"] == 1
        wait_until(
            lambda: (
                {e["device_id"] for e in honest.ask({"op": "revocations"})["revoked"]}
                == {ids["lost"], spare}
            ),
            DEADLINE_S,
            "the CA's record reached the honest gate",
        )
        for proc in reversed(procs):
            proc.stop()
    finally:
        for proc in procs:
            proc.kill()
    for name in ("relay", "honest", "admin"):  # kept: a restart still refuses the gate
        with Replica.open(dirs[name], read_only=True) as r:
            assert len(r.store.revocations()) == 2, name
    listed = honest.cli("device", "revoke", "--list")  # no daemon now: read from the store
    assert listed.returncode == 0, listed.stderr.decode()
    assert {e["device_id"] for e in json.loads(listed.stdout)["revoked"]} == {ids["lost"], spare}


def test_the_ca_signs_offline_and_re_signs_an_unsigned_list_of_an_earlier_version(tmp_path):
    from headcount.cli.main import main
    from headcount.pki.revocation import RevocationList, revoke
    from headcount.pki.revocation_file import records_from_json

    org = init_org(tmp_path / "org", "Example Events")
    old, new = victim_id(), victim_id()
    earlier = revoke(RevocationList(org.key_id), old, at_ms=T_MS, by="ops", reason="lost")
    (tmp_path / "org" / "revocations.json").write_text(earlier.to_json())
    assert main(["device", "revoke", new, "--org-dir", str(tmp_path / "org"), "--json"]) == 0
    records = records_from_json((tmp_path / "org" / "revocations.json").read_bytes())
    book = RevocationBook(org.certificate)
    accepted, refused = book.check(records)
    assert refused == [] and len(accepted) == 2
    book.add(accepted)
    kept = book.revocations().find(old, 1)
    assert kept is not None and (kept.revoked_at_ms, kept.reason) == (T_MS, "lost")
    assert book.revocations().find(new, 1).revoked_by == "ca"
