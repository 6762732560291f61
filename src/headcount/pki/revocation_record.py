"""One signed revocation: the unit the organisation's revocation list is made of.

A record says "``device_id`` (or only its certificate ``serial``) is revoked
since ``revoked_at_ms``, because ``reason``", for the organisation whose CA
key id is ``org``, signed by ``signer``: the organisation CA itself
(``"ca"``, the offline path) or an admin device, whose certificate travels
with the record so that any peer can check its authority.

The signed bytes are a domain prefix then the record's **body**, the msgpack
array ``[1, org, device_id, serial, revoked_at_ms, reason, signer]`` (``serial``
a lower-case hex string or nil). The body travels as it was signed, so no
re-encoding can change what a signature covers, and a body that is not the
canonical encoding of its own content is refused: one content, one body.
The prefix keeps these signatures apart from everything else the same keys
sign (log heads start ``headcount/head/v1``, TLS 1.3 with 64 spaces, X.509 with
a DER sequence).

:func:`verify_record` makes the checks that depend on the record alone (and
the organisation CA): shape, organisation, signature, and an admin signer's
certificate (issued by the CA, the admin role, valid at ``revoked_at_ms``).
Whether the signer was itself revoked when it signed depends on the other
records: that is :class:`~headcount.pki.revocation_book.RevocationBook`'s.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from headcount.core.errors import HeadcountError, InputError
from headcount.core.identity import Role, check_device_id, is_device_id

from .revocation import Revocation
from .verify import PeerCertificateError, PeerIdentity, ca_key_id, verify_peer_certificate

DOMAIN = b"headcount/revocation/v1\x00"
VERSION = 1
CA_SIGNER = "ca"
MAX_BODY = 1024
MAX_CERT = 16_384
MAX_REASON = 256
SIGNATURE_SIZE = 64
_SERIAL = re.compile(r"[0-9a-f]{1,40}")
_KEY_ID = re.compile(r"[0-9a-f]{16,128}")


class RecordRefused(HeadcountError):
    """A revocation record that is not acceptable; ``code`` says why (stable):
    ``malformed``, ``wrong_org``, ``bad_signature``, ``not_admin``,
    ``signer_mismatch``, ``signer_<rejection>`` (the signer's certificate,
    e.g. ``signer_expired``), ``signer_revoked``, ``list_full``."""

    code = "malformed"


@dataclass(frozen=True, slots=True)
class RevocationClaim:
    """What a record says (its body, decoded)."""

    org: str
    device_id: str
    serial: int | None
    revoked_at_ms: int
    reason: str
    signer: str

    def encode(self) -> bytes:
        """The canonical body."""
        serial = None if self.serial is None else format(self.serial, "x")
        fields = [VERSION, self.org, self.device_id, serial, self.revoked_at_ms]
        return bytes(msgpack.packb([*fields, self.reason, self.signer]))

    @classmethod
    def decode(cls, body: bytes) -> RevocationClaim:
        """Decode a body strictly.

        Raises:
            RecordRefused: ``malformed``: not the canonical encoding of a claim.
        """
        if not isinstance(body, bytes) or not 0 < len(body) <= MAX_BODY:
            raise RecordRefused(f"a record body is 1..{MAX_BODY} bytes")
        try:
            raw = msgpack.unpackb(body, raw=False, strict_map_key=True, max_ext_len=0)
        except Exception as exc:
            raise RecordRefused(f"undecodable record body: {type(exc).__name__}") from None
        if not isinstance(raw, list) or len(raw) != 7 or raw[0] != VERSION:
            raise RecordRefused("a record body is [1, org, device, serial, at, reason, signer]")
        _, org, device, serial, at, reason, signer = raw
        ok = (
            isinstance(org, str)
            and _KEY_ID.fullmatch(org) is not None
            and is_device_id(device)
            and (serial is None or (isinstance(serial, str) and _SERIAL.fullmatch(serial)))
            and type(at) is int
            and 0 <= at < 1 << 63
            and isinstance(reason, str)
            and len(reason) <= MAX_REASON
            and reason.isprintable()
            and (signer == CA_SIGNER or is_device_id(signer))
        )
        if not ok:
            raise RecordRefused(f"malformed record body {raw!r:.200}")
        claim = cls(org, device, None if serial is None else int(serial, 16), at, reason, signer)
        if claim.encode() != body:
            raise RecordRefused("the record body is not in canonical form")
        return claim

    def to_revocation(self) -> Revocation:
        return Revocation(self.device_id, self.serial, self.revoked_at_ms, self.signer, self.reason)

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_revocation().to_dict(), "org": self.org, "signer": self.signer}


@dataclass(frozen=True, slots=True)
class SignedRevocation:
    """A record as it is stored and travels: the body, its Ed25519 signature
    and the signer's certificate (DER; empty when the CA signed)."""

    body: bytes
    sig: bytes
    cert: bytes = b""

    @property
    def digest(self) -> bytes:
        """SHA-256 of the body: identifies the record (Ed25519 signatures are
        deterministic, so one body has one signature per key)."""
        return hashlib.sha256(self.body).digest()


@dataclass(frozen=True, slots=True)
class VerifiedRevocation:
    """A record whose signature and signer authority were checked.

    ``signer_serial`` is the serial of the admin certificate that signed it
    (None for the CA): a revocation of that certificate, or of the admin
    device, dated before the record voids it.
    """

    record: SignedRevocation
    claim: RevocationClaim
    signer_serial: int | None

    @property
    def digest(self) -> bytes:
        return self.record.digest


def sign_revocation(
    claim: RevocationClaim, key: Ed25519PrivateKey, cert_der: bytes = b""
) -> SignedRevocation:
    """Sign ``claim`` with ``key`` (the CA's for ``signer == "ca"``, else the
    admin device's, whose certificate ``cert_der`` goes with the record).

    Raises:
        RecordRefused: a malformed claim (it would be refused by every peer).
    """
    body = claim.encode()
    RevocationClaim.decode(body)  # the same checks a receiver makes
    return SignedRevocation(body, key.sign(DOMAIN + body), cert_der)


def verify_record(record: SignedRevocation, org_ca: x509.Certificate) -> VerifiedRevocation:
    """Check what a record proves on its own (see the module docstring).

    Raises:
        RecordRefused: with the reason's code. Any other exception is a bug.
    """
    if not isinstance(record.sig, bytes) or len(record.sig) != SIGNATURE_SIZE:
        raise RecordRefused("a record signature is 64 bytes")
    if not isinstance(record.cert, bytes) or len(record.cert) > MAX_CERT:
        raise RecordRefused(f"a signer certificate is at most {MAX_CERT} bytes")
    claim = RevocationClaim.decode(record.body)
    if claim.org != ca_key_id(org_ca):
        raise RecordRefused(
            f"the record is for organisation {claim.org[:16]}, not this one", code="wrong_org"
        )
    if claim.signer == CA_SIGNER:
        if record.cert:
            raise RecordRefused("a record signed by the CA carries no certificate")
        key = org_ca.public_key()
        if not isinstance(key, Ed25519PublicKey):
            raise RecordRefused("the organisation CA key is not Ed25519", code="bad_signature")
        _check_signature(key, record)
        return VerifiedRevocation(record, claim, None)
    signer = _signer_identity(record.cert, org_ca, claim)
    _check_signature(Ed25519PublicKey.from_public_bytes(signer.public_key_raw), record)
    return VerifiedRevocation(record, claim, signer.serial)


def _signer_identity(cert: bytes, org_ca: x509.Certificate, claim: RevocationClaim) -> PeerIdentity:
    """The admin certificate of a record's signer, valid when it signed."""
    if not cert:
        raise RecordRefused("a record signed by a device carries its certificate")
    try:
        # Chain, claims and validity window at the signing time; revocation is
        # the book's business (it depends on the other records).
        identity = verify_peer_certificate(cert, org_ca, claim.revoked_at_ms)
    except PeerCertificateError as exc:
        raise RecordRefused(
            f"the signer's certificate: {exc.message}", code=f"signer_{exc.code}"
        ) from None
    if identity.device_id != claim.signer:
        raise RecordRefused(
            f"the record names signer {claim.signer} but carries the certificate of "
            f"{identity.device_id}",
            code="signer_mismatch",
        )
    if identity.role is not Role.ADMIN:
        raise RecordRefused(
            f"signed by {identity.device_id}, a {identity.role}: only the organisation CA "
            "or an admin device may revoke",
            code="not_admin",
        )
    return identity


def _check_signature(key: Ed25519PublicKey, record: SignedRevocation) -> None:
    try:
        key.verify(record.sig, DOMAIN + record.body)
    except InvalidSignature:
        raise RecordRefused(
            "the record's signature does not verify (tampered, or another signer)",
            code="bad_signature",
        ) from None


def claim_for(
    org_ca: x509.Certificate,
    device_id: str,
    *,
    at_ms: int,
    signer: str,
    serial: int | None = None,
    reason: str = "",
) -> RevocationClaim:
    """A claim revoking ``device_id`` (or one of its certificates) for
    ``org_ca``'s organisation, at ``at_ms``, by ``signer``.

    Raises:
        InputError: a bad device id, serial or reason (the caller's mistake).
    """
    check_device_id(device_id)
    if serial is not None and not 0 <= serial < 1 << 160:
        raise InputError(f"serial {serial!r} is not an X.509 serial number")
    if len(reason) > MAX_REASON or not reason.isprintable():
        raise InputError(f"the reason is at most {MAX_REASON} printable characters")
    if not 0 <= at_ms < 1 << 63:
        raise InputError(f"bad revocation time {at_ms!r}")
    return RevocationClaim(ca_key_id(org_ca), device_id, serial, at_ms, reason, signer)


__all__ = [
    "CA_SIGNER",
    "DOMAIN",
    "RecordRefused",
    "RevocationClaim",
    "SignedRevocation",
    "VerifiedRevocation",
    "claim_for",
    "sign_revocation",
    "verify_record",
]
