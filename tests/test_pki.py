"""Trust and enrolment: the organisation CA, device certificates, peer
verification (every rejection has its code), revocation lists, real TLS 1.3
mutual-authentication handshakes over socket pairs, and the CLI handlers.

Verification tests run at fixed times (no wall clock). The TLS tests use the
wall clock only because OpenSSL does: their certificates are issued around
the real now.
"""

from __future__ import annotations

import json
import socket
import ssl
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from headcount.cli.main import main
from headcount.core.errors import InputError, NotFoundError, RemoteProtocolError, StoreError
from headcount.core.identity import (
    Identity,
    Role,
    check_device_id,
    create_identity,
    device_id_for,
    is_device_id,
    load_identity,
)
from headcount.net.advert import MalformedAdvert, decode_properties
from headcount.pki.org import (
    CA_FILE,
    CERT_FILE,
    Org,
    PeerCertificateError,
    RevocationList,
    enroll,
    init_org,
    install_certificate,
    load_org,
    parse_public_key,
    revoke,
    ssl_context,
    verify_peer_certificate,
)
from headcount.pki.revocation_book import RevocationBook
from headcount.pki.revocation_file import records_from_json
from headcount.protocol.wire import WIRE_VERSION

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def code_of(exc_info: pytest.ExceptionInfo[Any]) -> str:
    return exc_info.value.code


@pytest.fixture
def org(tmp_path: Path) -> Org:
    return init_org(tmp_path / "org", "Example Events", now=T - DAY)


@pytest.fixture
def gate(tmp_path: Path) -> Identity:
    return create_identity(tmp_path / "gate", role=Role.GATE, name="north")


def issue(org: Org, ident: Identity, **kw: Any) -> x509.Certificate:
    kw.setdefault("now", T)
    return enroll(org, ident.public_key, ident.device_id, ident.role, ["e1"], **kw)


def forge(
    signer: Ed25519PrivateKey,
    issuer: x509.Name | None,
    subject_key: Ed25519PrivateKey,
    *,
    device_id: str | None = None,
    common_name: str | None = None,
    role: str = "gate",
    events: Iterable[str] = ("e1",),
    extra_uris: Iterable[str] = (),
    client_auth: bool = True,
    is_ca: bool = False,
    start: datetime = T - DAY,
    end: datetime = T + 30 * DAY,
) -> x509.Certificate:
    """A certificate the org tooling would never issue, signed by ``signer``."""
    real_id = device_id_for(subject_key.public_key())
    uris = [f"urn:headcount:device:{device_id or real_id}", f"urn:headcount:role:{role}"]
    uris += [f"urn:headcount:event:{e}" for e in events] + list(extra_uris)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    cn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or device_id or real_id)])
    return (
        x509.CertificateBuilder()
        .subject_name(cn)
        .issuer_name(cn if issuer is None else issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
        .sign(signer, None)
    )


# -- the organisation ----------------------------------------------------------------


def test_init_org_makes_a_ca_with_private_key_file(tmp_path: Path, org: Org) -> None:
    ca = org.certificate
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert basic.critical and basic.value.ca
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= timedelta(days=3650)
    ca.verify_directly_issued_by(ca)
    assert stat.S_IMODE((tmp_path / "org" / "org.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "org" / "org.crt").stat().st_mode) == 0o644
    loaded = load_org(tmp_path / "org")
    assert loaded.name == "Example Events" and loaded.certificate == ca
    assert loaded.key_id == org.key_id


def test_org_validity_is_configurable(tmp_path: Path) -> None:
    short = init_org(tmp_path / "o", "Short", days=30, now=T)
    assert short.certificate.not_valid_after_utc == T + 30 * DAY


def test_org_bad_input(tmp_path: Path, org: Org) -> None:
    with pytest.raises(InputError) as exc:
        init_org(tmp_path / "org", "Again")
    assert code_of(exc) == "exists"
    for name in ("", " padded ", "x" * 65, "tab\there"):
        with pytest.raises(InputError):
            init_org(tmp_path / "o2", name)
    with pytest.raises(InputError, match="validity"):
        init_org(tmp_path / "o3", "Zero", days=0)
    with pytest.raises(NotFoundError):
        load_org(tmp_path / "nowhere")
    other = init_org(tmp_path / "o4", "Other")
    (tmp_path / "org" / "org.crt").write_bytes(other.certificate_pem)
    with pytest.raises(StoreError, match="does not match"):
        load_org(tmp_path / "org")


# -- enrolment and verification: the happy path ------------------------------------------


def test_enrolled_certificate_binds_identity_role_events(org: Org, gate: Identity) -> None:
    cert = enroll(
        org, gate.public_key, gate.device_id, "gate", ["e2", "e1", "e1"], 30, "north", now=T
    )
    peer = verify_peer_certificate(der(cert), org.certificate, T)
    assert peer.device_id == gate.device_id
    assert peer.role is Role.GATE
    assert peer.events == {"e1", "e2"}
    assert peer.public_key_raw == gate.public_key_raw
    assert peer.not_after == T + 30 * DAY
    assert peer.serial == cert.serial_number and peer.name == "north"
    assert peer.may_serve("e1") and not peer.may_serve("e3")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"urn:headcount:device:{gate.device_id}" in san.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
    # the same value through every accepted input form
    assert verify_peer_certificate(cert, org.certificate, int(T.timestamp() * 1000)) == peer


def test_event_ids_with_any_text_round_trip(org: Org, gate: Identity) -> None:
    events = ["행사 2026/서울", "a:b%c", "*"]
    cert = enroll(org, gate.public_key_raw, None, Role.GATE, events, now=T)
    peer = verify_peer_certificate(cert, org.certificate, T)
    assert peer.events == set(events)
    assert peer.may_serve("anything")  # '*' covers every event


# -- every rejection, with its code --------------------------------------------------------


def rejected(cert: bytes | x509.Certificate | None, org: Org, at: datetime = T, **kw: Any) -> str:
    with pytest.raises(PeerCertificateError) as exc:
        verify_peer_certificate(cert, org.certificate, at, **kw)
    assert isinstance(exc.value, RemoteProtocolError)
    return code_of(exc)


def test_no_certificate(org: Org) -> None:
    assert rejected(None, org) == "no_certificate"
    assert rejected(b"", org) == "no_certificate"


def test_garbled_certificate(org: Org) -> None:
    assert rejected(b"\x30\x03abc", org) == "malformed_certificate"
    assert rejected(b"not DER at all", org) == "malformed_certificate"


def test_self_signed(org: Org) -> None:
    key = Ed25519PrivateKey.generate()
    assert rejected(forge(key, None, key), org) == "self_signed"


def test_another_organisation(tmp_path: Path, org: Org, gate: Identity) -> None:
    other = init_org(tmp_path / "other", "Other Events", now=T - DAY)
    assert rejected(issue(other, gate), org) == "wrong_issuer"
    # Same name, different key: the authority key identifier tells them apart.
    twin = init_org(tmp_path / "twin", "Example Events", now=T - DAY)
    assert twin.certificate.subject == org.certificate.subject
    assert rejected(issue(twin, gate), org) == "wrong_issuer"
    # Same name and no key identifier: only the signature can tell.
    key = Ed25519PrivateKey.generate()
    assert rejected(forge(twin.private_key, org.certificate.subject, key), org) == "bad_signature"


def test_tampered_certificate(tmp_path: Path, org: Org) -> None:
    relay = create_identity(tmp_path / "relay", role=Role.RELAY)
    good = der(issue(org, relay))
    promoted = good.replace(b"role:relay", b"role:admin")
    assert promoted != good and x509.load_der_x509_certificate(promoted)
    assert rejected(promoted, org) == "bad_signature"
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    assert rejected(flipped, org) == "bad_signature"


def test_expired_and_not_yet_valid(org: Org, gate: Identity) -> None:
    cert = issue(org, gate, valid_days=30)
    assert rejected(cert, org, T + 31 * DAY) == "expired"
    assert rejected(cert, org, T - 2 * timedelta(hours=1)) == "not_yet_valid"
    assert verify_peer_certificate(cert, org.certificate, T + 29 * DAY).device_id
    with pytest.raises(PeerCertificateError, match="organisation") as exc:
        verify_peer_certificate(cert, org.certificate, T + 3651 * DAY)
    assert code_of(exc) == "expired"


def test_device_id_mismatch(org: Org, gate: Identity) -> None:
    stranger = Ed25519PrivateKey.generate()
    claimed = forge(org.private_key, org.certificate.subject, stranger, device_id=gate.device_id)
    assert rejected(claimed, org) == "device_id_mismatch"
    wrong_cn = forge(org.private_key, org.certificate.subject, stranger, common_name="0" * 20)
    assert rejected(wrong_cn, org) == "device_id_mismatch"


def test_unknown_or_missing_role(org: Org) -> None:
    key = Ed25519PrivateKey.generate()
    wizard = forge(org.private_key, org.certificate.subject, key, role="wizard")
    assert rejected(wizard, org) == "unknown_role"
    two = forge(
        org.private_key, org.certificate.subject, key, extra_uris=["urn:headcount:role:admin"]
    )
    assert rejected(two, org) == "unknown_role"


def test_not_a_device_certificate(org: Org) -> None:
    assert rejected(org.certificate, org) == "not_a_device_certificate"
    key = Ed25519PrivateKey.generate()
    server_only = forge(org.private_key, org.certificate.subject, key, client_auth=False)
    assert rejected(server_only, org) == "not_a_device_certificate"
    sub_ca = forge(org.private_key, org.certificate.subject, key, is_ca=True)
    assert rejected(sub_ca, org) == "not_a_device_certificate"
    no_events = forge(org.private_key, org.certificate.subject, key, events=())
    assert rejected(no_events, org) == "not_a_device_certificate"
    future_claim = forge(
        org.private_key, org.certificate.subject, key, extra_uris=["urn:headcount:zone:vip"]
    )
    assert rejected(future_claim, org) == "malformed_certificate"


def test_revoked_by_device_or_serial(org: Org, gate: Identity) -> None:
    old, new = issue(org, gate), issue(org, gate)
    empty = RevocationList(org.key_id)
    one_cert = revoke(empty, gate.device_id, at_ms=1, by="ops", serial=old.serial_number)
    assert rejected(old, org, revoked=one_cert) == "revoked"
    assert verify_peer_certificate(new, org.certificate, T, one_cert).serial == new.serial_number
    whole = revoke(empty, gate.device_id, at_ms=1, by="ops", reason="stolen")
    with pytest.raises(PeerCertificateError, match="ops: stolen"):
        verify_peer_certificate(new, org.certificate, T, whole)
    foreign = RevocationList("ab" * 20)
    with pytest.raises(InputError, match="another organisation"):
        verify_peer_certificate(new, org.certificate, T, foreign)


def test_naive_time_is_the_callers_mistake(org: Org, gate: Identity) -> None:
    with pytest.raises(InputError, match="time zone"):
        verify_peer_certificate(issue(org, gate), org.certificate, datetime(2026, 6, 1))


# -- revocation lists ------------------------------------------------------------------------


def test_revocation_list_json_round_trip_and_merge(org: Org) -> None:
    a = revoke(RevocationList(org.key_id), "a" * 20, at_ms=5, by="alice", reason="lost")
    a = revoke(a, "b" * 20, at_ms=6, by="alice", serial=2**150)
    b = revoke(RevocationList(org.key_id), "a" * 20, at_ms=3, by="bob")
    assert RevocationList.from_json(a.to_json()) == a
    assert json.loads(a.to_json())["revocations"][1]["serial"] == format(2**150, "x")
    merged = a.merge(b)
    assert merged == b.merge(a) and merged.merge(merged) == merged
    assert merged.to_json() == b.merge(a).to_json()
    assert [(e.device_id, e.revoked_by) for e in merged.entries] == [
        ("a" * 20, "bob"),  # the earliest revocation of a device wins
        ("b" * 20, "alice"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"format": "other"}',
        '{"format": "headcount-revocations/1", "org": "", "revocations": [{"device_id": "x"}]}',
        '{"format": "headcount-revocations/1", "org": "", "revocations": '
        '[{"device_id": "aaaaaaaaaaaaaaaaaaaa", "serial": 12}]}',
    ],
)
def test_revocation_list_rejects_garbage(text: str) -> None:
    with pytest.raises(InputError) as exc:
        RevocationList.from_json(text)
    assert code_of(exc) in {"invalid_revocation_list", "invalid_device_id"}


def test_revoke_rejects_bad_ids() -> None:
    with pytest.raises(InputError, match="not a device id"):
        revoke(RevocationList(), "NOT-AN-ID", at_ms=1, by="x")
    with pytest.raises(InputError):
        revoke(RevocationList(), "a" * 20, at_ms=1, by="x" * 300)


@pytest.mark.parametrize(
    "bad",
    ["", "a" * 19, "a" * 21, "A" * 20, "g" * 20, "a" * 19 + "\n", " " + "a" * 19, None, b"a" * 20],
    ids=repr,
)
def test_one_device_id_check(bad: object) -> None:
    """identity's check is the one the revocation list and mDNS adverts apply."""
    assert not is_device_id(bad)
    with pytest.raises(InputError, match="not a device id") as exc:
        check_device_id(bad)
    assert code_of(exc) == "invalid_device_id"
    with pytest.raises(InputError, match="not a device id"):
        revoke(RevocationList(), bad, at_ms=1, by="x")  # type: ignore[arg-type]
    if isinstance(bad, str):
        props = {b"device": bad.encode(), b"proto": str(WIRE_VERSION).encode(), b"role": b"gate"}
        with pytest.raises(MalformedAdvert, match="bad device id"):
            decode_properties(props)


def test_a_derived_device_id_passes_the_check(gate: Identity) -> None:
    device_id = device_id_for(gate.public_key)
    assert is_device_id(device_id) and check_device_id(device_id) == device_id
    props = {b"device": device_id.encode(), b"proto": str(WIRE_VERSION).encode(), b"role": b"gate"}
    assert decode_properties(props)[0] == device_id


# -- enrolment input -------------------------------------------------------------------------


def test_enroll_bad_input(tmp_path: Path, org: Org, gate: Identity) -> None:
    key = gate.public_key
    with pytest.raises(InputError, match="unknown role"):
        enroll(org, key, None, "wizard", ["e1"], now=T)
    with pytest.raises(InputError, match="at least one event"):
        enroll(org, key, None, "gate", [], now=T)
    with pytest.raises(InputError, match="event id"):
        enroll(org, key, None, "gate", [" e1"], now=T)
    with pytest.raises(InputError) as exc:
        enroll(org, key, "0" * 20, "gate", ["e1"], now=T)
    assert code_of(exc) == "device_id_mismatch"
    with pytest.raises(InputError, match="validity"):
        enroll(org, key, None, "gate", ["e1"], 0, now=T)
    with pytest.raises(InputError) as exc:
        enroll(org, key, None, "gate", ["e1"], 3650, now=T)
    assert code_of(exc) == "outlives_org"
    with pytest.raises(InputError, match="32 raw"):
        enroll(org, b"short", None, "gate", ["e1"], now=T)


def test_parse_public_key(tmp_path: Path, gate: Identity) -> None:
    spki = gate.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert device_id_for(parse_public_key(spki)) == gate.device_id
    assert device_id_for(parse_public_key(gate.public_key_raw.hex().encode())) == gate.device_id
    private = (tmp_path / "gate" / "device.key").read_bytes()
    with pytest.raises(InputError, match="must stay on the device") as exc:
        parse_public_key(private)
    assert code_of(exc) == "private_key"
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    p256_pem = p256.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for bad in (p256_pem, spki[:60] + b"garbled" + spki[60:], b"abcd", "é".encode(), b""):
        with pytest.raises(InputError) as exc:
            parse_public_key(bad)
        assert code_of(exc) == "bad_key"


# -- installing into a device's data dir ----------------------------------------------------------


def test_install_certificate(tmp_path: Path, org: Org, gate: Identity) -> None:
    data_dir = tmp_path / "gate"
    peer = install_certificate(data_dir, pem(issue(org, gate)), org.certificate_pem, now=T)
    assert peer.device_id == gate.device_id
    for name in (CERT_FILE, CA_FILE):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o644
    assert (data_dir / CA_FILE).read_bytes() == org.certificate_pem
    assert stat.S_IMODE((data_dir / "device.key").stat().st_mode) == 0o600
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".")]  # no temp files left


def test_install_refuses_mismatches(tmp_path: Path, org: Org, gate: Identity) -> None:
    data_dir = tmp_path / "gate"
    admin = create_identity(tmp_path / "admin", role=Role.ADMIN)
    cases: list[tuple[bytes, bytes, str]] = [
        (pem(issue(org, admin)), org.certificate_pem, "key_mismatch"),
        (b"-----BEGIN CERTIFICATE-----\ngarbage\n", org.certificate_pem, "bad_certificate"),
        (pem(issue(org, gate)), b"", "bad_certificate"),
        (pem(issue(org, gate)), pem(issue(org, gate)), "bad_certificate"),  # not a CA
        (
            pem(enroll(org, gate.public_key, None, "admin", ["e1"], now=T)),
            org.certificate_pem,
            "role_mismatch",
        ),
    ]
    other = init_org(tmp_path / "other", "Other", now=T - DAY)
    cases.append((pem(issue(other, gate)), org.certificate_pem, "wrong_issuer"))
    for cert_pem, ca_pem, code in cases:
        with pytest.raises(InputError) as exc:
            install_certificate(data_dir, cert_pem, ca_pem, now=T)
        assert code_of(exc) == code, code
        assert not (data_dir / CERT_FILE).exists()
    with pytest.raises(InputError) as exc:
        install_certificate(data_dir, pem(issue(org, gate)), org.certificate_pem, now=T + 400 * DAY)
    assert code_of(exc) == "expired"
    install_certificate(data_dir, pem(issue(org, gate)), org.certificate_pem, now=T)
    with pytest.raises(InputError) as exc:
        install_certificate(data_dir, pem(issue(other, gate)), other.certificate_pem, now=T)
    assert code_of(exc) == "ca_mismatch"
    with pytest.raises(StoreError):
        install_certificate(tmp_path / "empty", pem(issue(org, gate)), org.certificate_pem)


# -- TLS 1.3 mutual authentication over a socket pair ----------------------------------------------


@dataclass
class Side:
    version: str | None = None
    peer_der: bytes | None = None
    received: bytes = b""
    error: BaseException | None = None


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[Side, Side]:
    """Run one TLS handshake, then a server-to-client b"ok", over a socket pair."""
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    server, client = Side(), Side()

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as tls:
                server.version, server.peer_der = tls.version(), tls.getpeercert(binary_form=True)
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            server.error = exc
        finally:
            a.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(b) as tls:
            client.version, client.peer_der = tls.version(), tls.getpeercert(binary_form=True)
            client.received = tls.recv(2)  # TLS 1.3: a refused client cert shows up here
    except (ssl.SSLError, OSError) as exc:
        client.error = exc
    finally:
        b.close()
    thread.join(10)
    assert not thread.is_alive()
    return server, client


NOW = datetime.now(UTC)  # OpenSSL checks validity against the wall clock


@pytest.fixture
def live_org(tmp_path: Path) -> Org:
    return init_org(tmp_path / "live-org", "Live Events", now=NOW - 400 * DAY)


DeviceFactory = Callable[..., Path]


@pytest.fixture
def device(tmp_path: Path, live_org: Org) -> DeviceFactory:
    def make(name: str, org: Org | None = None, role: Role = Role.GATE, **kw: Any) -> Path:
        org = org or live_org
        ident = create_identity(tmp_path / name, role=role, name=name)
        kw.setdefault("now", NOW)
        cert = enroll(org, ident.public_key, ident.device_id, role, ["e1"], **kw)
        install_certificate(tmp_path / name, pem(cert), org.certificate_pem, now=kw["now"])
        return tmp_path / name

    return make


def test_tls13_mutual_handshake_between_enrolled_devices(
    device: DeviceFactory, live_org: Org
) -> None:
    gate_dir, relay_dir = device("gate"), device("relay", role=Role.RELAY)
    server, client = handshake(
        ssl_context(gate_dir, server_side=True), ssl_context(relay_dir, server_side=False)
    )
    assert server.error is None and client.error is None, (server.error, client.error)
    assert server.version == client.version == "TLSv1.3"
    assert client.received == b"ok"
    seen_by_gate = verify_peer_certificate(server.peer_der, live_org.certificate, NOW)
    seen_by_relay = verify_peer_certificate(client.peer_der, live_org.certificate, NOW)
    assert seen_by_gate.role is Role.RELAY and seen_by_relay.role is Role.GATE
    assert seen_by_gate.device_id == load_identity(relay_dir).device_id
    assert seen_by_relay.device_id == load_identity(gate_dir).device_id
    # Ed25519 certificates on both ends: OpenSSL signed the handshake with ed25519.
    assert isinstance(
        x509.load_der_x509_certificate(server.peer_der).public_key(), Ed25519PublicKey
    )
    assert isinstance(
        x509.load_der_x509_certificate(client.peer_der).public_key(), Ed25519PublicKey
    )


def bad_client(kind: str, tmp_path: Path, device: DeviceFactory, live_org: Org) -> ssl.SSLContext:
    if kind == "no_certificate":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=live_org.certificate_pem.decode())
        return ctx
    if kind == "other_org":
        other = init_org(tmp_path / "other-org", "Other Events", now=NOW - DAY)
        data_dir = device("intruder", org=other)
        # The intruder trusts our CA too, so only the server's check can stop it.
        (data_dir / "extra-ca.crt").write_bytes(live_org.certificate_pem)
        ctx = ssl_context(data_dir, server_side=False)
        ctx.load_verify_locations(data_dir / "extra-ca.crt")
        return ctx
    if kind == "expired":
        return ssl_context(device("old", now=NOW - 100 * DAY, valid_days=30), server_side=False)
    assert kind == "self_signed"
    data_dir = device("selfie")
    key = serialization.load_pem_private_key((data_dir / "device.key").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    self_signed = forge(key, None, key, start=NOW - DAY, end=NOW + DAY)
    (data_dir / CERT_FILE).write_bytes(pem(self_signed))
    return ssl_context(data_dir, server_side=False)


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("no_certificate", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        ("self_signed", "self-signed certificate"),
        # OpenSSL sends the intruder's CA along with its certificate
        ("other_org", "self-signed certificate in certificate chain"),
        ("expired", "certificate has expired"),
    ],
)
def test_tls13_server_refuses_bad_clients(
    kind: str, why: str, tmp_path: Path, device: DeviceFactory, live_org: Org
) -> None:
    server_ctx = ssl_context(device("gate"), server_side=True)
    server, client = handshake(server_ctx, bad_client(kind, tmp_path, device, live_org))
    assert isinstance(server.error, ssl.SSLError), server
    assert why in str(server.error)
    assert client.error is not None and client.received == b""


def test_tls13_client_refuses_a_server_of_another_org(
    tmp_path: Path, device: DeviceFactory
) -> None:
    other = init_org(tmp_path / "other-org", "Other Events", now=NOW - DAY)
    server, client = handshake(
        ssl_context(device("impostor", org=other), server_side=True),
        ssl_context(device("gate"), server_side=False),
    )
    assert isinstance(client.error, ssl.SSLCertVerificationError)
    assert server.error is not None


# -- the CLI handlers, through headcount.cli.main.main ------------------------------------


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    """``run(*argv)`` -> (exit code, stdout, stderr) of the real ``headcount`` CLI."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def test_cli_enrol_show_revoke(tmp_path: Path, run: Callable[..., Any]) -> None:
    org_dir, gate_dir = str(tmp_path / "org"), tmp_path / "gate"
    code, out, _ = run("org", "init", "--org-dir", org_dir, "--name", "Acme", "--json")
    assert code == 0 and json.loads(out)["name"] == "Acme"
    gate = create_identity(gate_dir, role=Role.GATE)
    code, out, err = run(
        "device", "enroll", "--org-dir", org_dir, "--device-dir", str(gate_dir),
        "--event", "e1", "--event", "e2", "--days", "10", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["device_id"] == gate.device_id
    code, out, _ = run("device", "show", "--data-dir", str(gate_dir), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["status"] == "valid"
    assert (shown["role"], shown["events"]) == ("gate", ["e1", "e2"])
    code, out, _ = run("device", "show", "--data-dir", str(gate_dir))
    assert code == 0 and f"device    {gate.device_id}" in out and "status    valid" in out
    code, out, _ = run("device", "revoke", "--org-dir", org_dir, gate.device_id, "--json")
    made = json.loads(out)
    assert code == 0 and made["records"] == 1
    assert made["record"]["revocation"]["device_id"] == gate.device_id
    assert made["record"]["revocation"]["signer"] == "ca"
    code, out, _ = run("device", "revoke", "--org-dir", org_dir, gate.device_id, "--reason", "x")
    assert code == 0 and "holds 2 records" in out and "--import" in out
    saved = records_from_json((tmp_path / "org" / "revocations.json").read_text())
    book = RevocationBook(load_org(tmp_path / "org").certificate)
    accepted, refused = book.check(saved)  # signed by the CA: any device accepts them
    assert (len(accepted), refused) == (2, [])
    book.add(accepted)
    assert book.revocations().find(gate.device_id, 1) is not None


def test_cli_enrol_by_public_key_file(tmp_path: Path, run: Callable[..., Any]) -> None:
    org_dir, gate_dir = str(tmp_path / "org"), tmp_path / "gate"
    assert run("org", "init", "--org-dir", org_dir, "--name", "Acme")[0] == 0
    gate = create_identity(gate_dir, role=Role.ADMIN)
    code, out, _ = run("device", "pubkey", "--data-dir", str(gate_dir))
    (tmp_path / "gate.pub").write_text(out)
    code, out, err = run(
        "device", "enroll", "--org-dir", org_dir, "--public-key", str(tmp_path / "gate.pub"),
        "--role", "admin", "--event", "*", "--out", str(tmp_path / "gate.crt"),
    )  # fmt: skip
    assert code == 0, err
    assert "written to" in out and not (gate_dir / CERT_FILE).exists()
    code, out, err = run(
        "device", "install", "--data-dir", str(gate_dir),
        "--cert", str(tmp_path / "gate.crt"), "--ca", f"{org_dir}/org.crt", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["device_id"] == gate.device_id and json.loads(out)["role"] == "admin"
    code, out, _ = run(
        "device", "enroll", "--org-dir", org_dir, "--public-key", str(tmp_path / "gate.pub"),
        "--role", "gate", "--event", "e1",
    )  # fmt: skip
    assert code == 0 and out.startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--public-key", "{gate}/device.key", "--role", "gate", "--event", "e1"], "private key"),
        (["--public-key", "{tmp}/missing.pub", "--role", "gate", "--event", "e1"], "cannot read"),
        (["--public-key", "{tmp}/garbled.pub", "--role", "gate", "--event", "e1"], "Ed25519"),
        (["--public-key", "{tmp}/gate.pub", "--event", "e1"], "--role is required"),
        (["--device-dir", "{gate}"], "at least one event"),
        (["--device-dir", "{gate}", "--role", "admin", "--event", "e1"], "role is fixed"),
        (["--device-dir", "{gate}", "--event", "e1", "--days", "0"], "validity"),
        (["--device-dir", "{tmp}/nobody", "--event", "e1"], "no device"),
    ],
)
def test_cli_enrol_errors(
    argv: list[str], message: str, tmp_path: Path, run: Callable[..., Any]
) -> None:
    org_dir, gate_dir = tmp_path / "org", tmp_path / "gate"
    init_org(org_dir, "Acme")
    gate = create_identity(gate_dir)
    (tmp_path / "gate.pub").write_text(gate.public_key_raw.hex())
    (tmp_path / "garbled.pub").write_text("-----BEGIN PUBLIC KEY-----\nnope\n")
    args = [a.format(gate=gate_dir, tmp=tmp_path) for a in argv]
    code, out, err = run("device", "enroll", "--org-dir", str(org_dir), *args)
    assert code == 1 and message in err and out == ""
    code, out, _ = run("device", "enroll", "--org-dir", str(org_dir), *args, "--json")
    assert code == 1 and message in json.loads(out)["error"]["message"]
    assert not (gate_dir / CERT_FILE).exists()


def test_cli_other_errors(tmp_path: Path, run: Callable[..., Any]) -> None:
    create_identity(tmp_path / "gate")
    code, out, _ = run("device", "show", "--data-dir", str(tmp_path / "gate"), "--json")
    assert code == 1 and json.loads(out)["error"]["code"] == "not_enrolled"
    code, _, err = run("device", "revoke", "--org-dir", str(tmp_path / "none"), "a" * 20)
    assert code == 1 and "no organisation" in err
    init_org(tmp_path / "org", "Acme")
    code, _, err = run("device", "revoke", "--org-dir", str(tmp_path / "org"), "bogus")
    assert code == 1 and "not a device id" in err
    code, _, err = run("device", "revoke", "--data-dir", str(tmp_path / "gate"), "a" * 20)
    assert code == 1 and "no daemon is running" in err and "--org-dir" in err
    code, _, err = run("org", "init", "--org-dir", str(tmp_path / "org"), "--name", "Acme")
    assert code == 1 and "already holds" in err
    code, _, err = run("device", "enroll", "--org-dir", "x", "--device-dir", "y", "--role", "king")
    assert code == 2 and "invalid choice" in err
    for argv in (["org", "init"], ["device", "enroll"], ["device", "show"], ["device", "revoke"]):
        code, out, _ = run(*argv, "--help")
        assert code == 0 and "--json" in out
