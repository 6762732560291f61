"""What a peer's certificate proves: verification against the organisation CA.

Pure functions over certificates, a trust anchor and a time passed in: no files,
no sockets, no wall clock, so the transport, the simulator and the tests share
one implementation. ``ssl`` has already checked the chain during the TLS
handshake (against the wall clock); :func:`verify_peer_certificate` is the
application-level check that runs after it and extracts the peer's identity.

Claims are carried as ``SubjectAlternativeName`` URIs in a ``urn:headcount:``
namespace (``device:<id>``, ``role:<role>``, ``event:<percent-encoded id>``):
a standard extension that ``cryptography`` parses, ``openssl x509 -text``
prints and no home-made ASN.1 has to decode. Unknown ``urn:headcount:`` claims
are rejected (fail closed: a future restriction must not be silently ignored);
URIs outside the namespace are ignored.

``cryptography``'s ``x509.verification`` verifier only allows the Web PKI
algorithms (no Ed25519), so the chain is checked here with
``Certificate.verify_directly_issued_by`` plus explicit checks, each mapped to a
stable error code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from headcount.core.errors import InputError, RemoteProtocolError
from headcount.core.identity import Role, device_id_for

from .revocation import RevocationList

URN = "urn:headcount:"
ALL_EVENTS = "*"  # an event claim that covers every event (relays, admins)

_T = TypeVar("_T", bound=x509.ExtensionType)


class Rejection(StrEnum):
    """Why a peer certificate was refused; the value is the error's stable ``code``."""

    NO_CERTIFICATE = "no_certificate"
    MALFORMED = "malformed_certificate"
    SELF_SIGNED = "self_signed"
    WRONG_ISSUER = "wrong_issuer"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    NOT_A_DEVICE = "not_a_device_certificate"
    DEVICE_ID_MISMATCH = "device_id_mismatch"
    UNKNOWN_ROLE = "unknown_role"
    REVOKED = "revoked"


class PeerCertificateError(RemoteProtocolError):
    """A peer's certificate does not prove membership of the organisation.

    Attributes:
        reason: the :class:`Rejection`; ``code`` is its value.
    """

    code = "bad_certificate"

    def __init__(self, reason: Rejection, message: str) -> None:
        super().__init__(message, code=reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What an organisation-issued device certificate binds.

    ``public_key_raw`` and ``role`` are what :meth:`Replica.trust` takes.
    """

    device_id: str
    role: Role
    events: frozenset[str]
    public_key_raw: bytes
    not_after: datetime
    serial: int
    name: str = ""

    def may_serve(self, event: str) -> bool:
        """Whether the certificate lets this device replicate ``event``."""
        return ALL_EVENTS in self.events or event in self.events

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "role": self.role.value,
            "events": sorted(self.events),
            "name": self.name,
            "not_after": self.not_after.isoformat(),
            "serial": format(self.serial, "x"),
            "public_key": self.public_key_raw.hex(),
        }


def device_uri(device_id: str) -> str:
    return f"{URN}device:{device_id}"


def role_uri(role: Role) -> str:
    return f"{URN}role:{role.value}"


def event_uri(event: str) -> str:
    """Event ids may hold any printable text: percent-encoding keeps the URI ASCII."""
    return f"{URN}event:{quote(event, safe='')}"


def as_utc(now: datetime | int) -> datetime:
    """``now`` as an aware UTC datetime; an ``int`` is epoch milliseconds.

    Raises:
        InputError: a naive datetime (its zone would be a guess).
    """
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise InputError("times must carry a time zone (use datetime.now(UTC))")
        return now.astimezone(UTC)
    return datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=now)


def verify_peer_certificate(
    certificate: bytes | x509.Certificate | None,
    org_ca: x509.Certificate,
    now: datetime | int,
    revoked: RevocationList | None = None,
) -> PeerIdentity:
    """Check a peer's certificate and return the identity it proves.

    Args:
        certificate: DER bytes (``SSLSocket.getpeercert(binary_form=True)``),
            a parsed certificate, or ``None`` when the peer sent none.
        org_ca: the organisation CA certificate (``org-ca.crt``), the only
            trust anchor.
        now: the time to check validity at (aware datetime or epoch ms).
        revoked: revoked devices and serials; ``None`` checks none.

    Returns:
        The peer's :class:`PeerIdentity`.

    Raises:
        PeerCertificateError: with ``code`` one of :class:`Rejection`. Any
            other exception is a bug.
        InputError: a naive ``now`` or a revocation list of another
            organisation (the caller's mistake, not the peer's).
    """
    at = as_utc(now)
    if revoked is not None and revoked.org and revoked.org != ca_key_id(org_ca):
        raise InputError("the revocation list belongs to another organisation")
    cert = _parse(certificate)
    check_issued_by(cert, org_ca)
    _check_window(cert, org_ca, at)
    peer = certificate_identity(cert)
    if revoked is not None:
        entry = revoked.find(peer.device_id, peer.serial)
        if entry is not None:
            raise PeerCertificateError(
                Rejection.REVOKED,
                f"device {peer.device_id} was revoked by {entry.revoked_by or 'the organisation'}"
                + (f": {entry.reason}" if entry.reason else ""),
            )
    return peer


def ca_key_id(ca: x509.Certificate) -> str:
    """The CA's key identifier (hex): names the organisation in revocation lists."""
    ski = _extension(ca, x509.SubjectKeyIdentifier)
    if ski is None:
        ski = x509.SubjectKeyIdentifier.from_public_key(ca.public_key())
    return ski.digest.hex()


def check_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    """Check ``cert`` was signed by ``ca``'s key, naming the kind of failure.

    Raises:
        PeerCertificateError: ``self_signed``, ``wrong_issuer``,
            ``bad_signature`` or ``not_a_device_certificate`` (the CA itself).
    """
    if cert == ca:
        raise PeerCertificateError(Rejection.NOT_A_DEVICE, "this is the organisation's CA")
    if cert.issuer == cert.subject:
        raise PeerCertificateError(Rejection.SELF_SIGNED, "the certificate is self-signed")
    aki = _extension(cert, x509.AuthorityKeyIdentifier)
    if cert.issuer != ca.subject or (
        aki is not None
        and aki.key_identifier is not None
        and aki.key_identifier.hex() != ca_key_id(ca)
    ):
        raise PeerCertificateError(
            Rejection.WRONG_ISSUER,
            f"issued by {cert.issuer.rfc4514_string()!r}, not by this organisation "
            f"({ca.subject.rfc4514_string()!r}, key {ca_key_id(ca)[:16]})",
        )
    try:
        cert.verify_directly_issued_by(ca)
    except InvalidSignature:
        raise PeerCertificateError(
            Rejection.BAD_SIGNATURE, "the organisation's signature does not verify (tampered?)"
        ) from None
    except (ValueError, TypeError) as exc:
        raise PeerCertificateError(Rejection.WRONG_ISSUER, f"not issued by the CA: {exc}") from None


def certificate_identity(cert: x509.Certificate) -> PeerIdentity:
    """The identity a device certificate claims (no chain, time or revocation check).

    Raises:
        PeerCertificateError: ``malformed_certificate``,
            ``not_a_device_certificate``, ``device_id_mismatch`` or ``unknown_role``.
    """
    key = _device_key(cert)
    devices, roles, events = _claims(cert)
    if len(devices) != 1:
        raise PeerCertificateError(Rejection.MALFORMED, "the certificate must name one device")
    derived = device_id_for(key)
    common_names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if devices[0] != derived or common_names != [derived]:
        raise PeerCertificateError(
            Rejection.DEVICE_ID_MISMATCH,
            f"the certificate names device {devices[0]!r} but its key is device {derived}",
        )
    if len(roles) != 1:
        raise PeerCertificateError(Rejection.UNKNOWN_ROLE, "the certificate must name one role")
    try:
        role = Role(roles[0])
    except ValueError:
        raise PeerCertificateError(Rejection.UNKNOWN_ROLE, f"unknown role {roles[0]!r}") from None
    if not events:
        raise PeerCertificateError(Rejection.NOT_A_DEVICE, "the certificate allows no event")
    names = cert.subject.get_attributes_for_oid(NameOID.PSEUDONYM)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PeerIdentity(
        device_id=derived,
        role=role,
        events=frozenset(events),
        public_key_raw=raw,
        not_after=cert.not_valid_after_utc,
        serial=cert.serial_number,
        name=str(names[0].value) if names else "",
    )


def _device_key(cert: x509.Certificate) -> Ed25519PublicKey:
    """The key of an end-entity certificate made for both ends of TLS."""
    basic = _extension(cert, x509.BasicConstraints)
    eku = _extension(cert, x509.ExtendedKeyUsage)
    both_ends = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    key = cert.public_key()
    if basic is None or basic.ca:
        raise PeerCertificateError(Rejection.NOT_A_DEVICE, "not an end-entity certificate")
    if eku is None or not both_ends <= set(eku):
        raise PeerCertificateError(Rejection.NOT_A_DEVICE, "not valid for TLS client and server")
    if not isinstance(key, Ed25519PublicKey):
        raise PeerCertificateError(Rejection.NOT_A_DEVICE, "the key is not an Ed25519 device key")
    return key


def _parse(certificate: bytes | x509.Certificate | None) -> x509.Certificate:
    if certificate is None or certificate == b"":
        raise PeerCertificateError(Rejection.NO_CERTIFICATE, "the peer sent no certificate")
    if isinstance(certificate, x509.Certificate):
        return certificate
    try:
        cert = x509.load_der_x509_certificate(certificate)
        cert.extensions  # noqa: B018 - parse them now: a bad one raises here, not later
    except ValueError as exc:
        raise PeerCertificateError(Rejection.MALFORMED, f"unparsable certificate: {exc}") from None
    return cert


def _check_window(cert: x509.Certificate, ca: x509.Certificate, at: datetime) -> None:
    for who, c in (("the organisation's certificate", ca), ("the certificate", cert)):
        if at < c.not_valid_before_utc:
            raise PeerCertificateError(
                Rejection.NOT_YET_VALID, f"{who} is not valid before {c.not_valid_before_utc}"
            )
        if at > c.not_valid_after_utc:
            raise PeerCertificateError(
                Rejection.EXPIRED, f"{who} expired at {c.not_valid_after_utc}"
            )


def _claims(cert: x509.Certificate) -> tuple[list[str], list[str], list[str]]:
    """The device, role and event claims among the SAN URIs."""
    san = _extension(cert, x509.SubjectAlternativeName)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier) if san else []
    claims: dict[str, list[str]] = {"device": [], "role": [], "event": []}
    for uri in uris:
        if not uri.startswith(URN):
            continue
        kind, sep, value = uri[len(URN) :].partition(":")
        if kind not in claims or not sep or not value:
            raise PeerCertificateError(Rejection.MALFORMED, f"unknown claim {uri!r}")
        try:
            claims[kind].append(unquote(value, errors="strict"))
        except UnicodeDecodeError:
            raise PeerCertificateError(Rejection.MALFORMED, f"bad encoding in {uri!r}") from None
    return claims["device"], claims["role"], claims["event"]


def _extension(cert: x509.Certificate, kind: type[_T]) -> _T | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # duplicate or undecodable extensions
        raise PeerCertificateError(Rejection.MALFORMED, f"bad extensions: {exc}") from None
