"""The organisation trust root, device enrolment and the certificate files.

1. ``init_org`` makes the organisation CA: an Ed25519 key (``org.key``, 0600)
   and a self-signed X.509 CA certificate (``org.crt``).
2. ``enroll`` issues a leaf certificate for a device's *existing* Ed25519 key
   (the private key never leaves the device), binding its device id, role,
   events and an expiry. The same certificate serves both ends of mutual TLS
   1.3 (stdlib ``ssl``; OpenSSL 3 accepts Ed25519 certificates there), so the
   key that signs log heads is the key the TLS peer proved it holds. Reusing
   the key is safe because the two signed formats cannot collide: TLS 1.3
   signs 64 spaces and a context string, log heads start ``headcount/head/v1``.
3. ``revoke_as_ca`` signs a revocation record with the CA key (the offline
   path, for an organisation without a running admin device);
   ``load_revocations`` / ``save_revocations`` keep the records the CA signed
   in ``revocations.json``, a file any admin daemon imports and gossips
   (``headcount device revoke --import``).

Verification lives in :mod:`headcount.pki_verify` (pure, no files), the
revocation list in :mod:`headcount.pki_revocation` and the device's files and
TLS context in :mod:`headcount.pki_device`; this module re-exports them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from headcount.core.errors import InputError, NotFoundError, StoreError
from headcount.core.files import create_private_dir, write_atomic
from headcount.core.identity import Role, device_id_for
from headcount.core.ids import check_id

from .device import (
    CA_FILE,
    CERT_FILE,
    install_certificate,
    load_device_certificate,
    ssl_context,
)
from .revocation import Revocation, RevocationList, revoke
from .revocation_file import records_from_json, records_to_json
from .revocation_record import CA_SIGNER, SignedRevocation, claim_for, sign_revocation
from .verify import (
    ALL_EVENTS,
    PeerCertificateError,
    PeerIdentity,
    Rejection,
    as_utc,
    ca_key_id,
    device_uri,
    event_uri,
    role_uri,
    verify_peer_certificate,
)

ORG_KEY_FILE = "org.key"
ORG_CERT_FILE = "org.crt"
REVOCATIONS_FILE = "revocations.json"
DEFAULT_ORG_DAYS = 3650
DEFAULT_DEVICE_DAYS = 365
# Certificates start an hour early: an offline gate's clock may lag the issuer's.
CLOCK_SKEW = timedelta(hours=1)
MAX_NAME = 64  # X.520 upper bound for a common name

__all__ = [
    "ALL_EVENTS",
    "CA_FILE",
    "CERT_FILE",
    "Org",
    "PeerCertificateError",
    "PeerIdentity",
    "Rejection",
    "Revocation",
    "RevocationList",
    "enroll",
    "init_org",
    "install_certificate",
    "load_device_certificate",
    "load_org",
    "load_revocations",
    "parse_public_key",
    "revoke",
    "revoke_as_ca",
    "save_revocations",
    "ssl_context",
    "verify_peer_certificate",
]


@dataclass(frozen=True, slots=True)
class Org:
    """The organisation's CA: its name, certificate and signing key."""

    name: str
    certificate: x509.Certificate
    private_key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return ca_key_id(self.certificate)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def init_org(
    org_dir: Path, name: str, *, days: int = DEFAULT_ORG_DAYS, now: datetime | int | None = None
) -> Org:
    """Create an organisation CA in ``org_dir`` (``org.key`` 0600, ``org.crt``).

    Raises:
        InputError: ``org_dir`` already holds an organisation, a bad name or
            validity, or a directory that cannot be created.
    """
    name = _check_text("organisation name", name, MAX_NAME, required=True)
    _check_days(days, 100 * 365)
    start = _now(now)
    create_private_dir(org_dir)
    key_path = org_dir / ORG_KEY_FILE
    if key_path.exists():
        raise InputError(f"{org_dir} already holds an organisation", code="exists")
    key = Ed25519PrivateKey.generate()
    cert = _ca_certificate(key, name, start, days)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL: two concurrent inits cannot both believe they created the key.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    write_atomic(org_dir / ORG_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return Org(name, cert, key)


def load_org(org_dir: Path) -> Org:
    """Load the organisation CA from ``org_dir``.

    Raises:
        NotFoundError: no organisation there.
        StoreError: unreadable files, or a key that does not match the certificate.
    """
    key_path, cert_path = org_dir / ORG_KEY_FILE, org_dir / ORG_CERT_FILE
    if not key_path.exists():
        raise NotFoundError(f"no organisation in {org_dir}: run `headcount org init` first")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"organisation in {org_dir} is unreadable: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey) or _raw(key.public_key()) != _raw(cert.public_key()):
        raise StoreError(f"{key_path} does not match {cert_path}")
    names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return Org(str(names[0].value) if names else "", cert, key)


def enroll(
    org: Org,
    device_public_key: Ed25519PublicKey | bytes,
    device_id: str | None,
    role: Role | str,
    events: Iterable[str],
    valid_days: int = DEFAULT_DEVICE_DAYS,
    name: str = "",
    *,
    now: datetime | int | None = None,
) -> x509.Certificate:
    """Issue a device certificate for an existing Ed25519 public key.

    Args:
        device_public_key: the device's key (object or 32 raw bytes).
        device_id: the id the operator expects; ``None`` takes the key's.
        events: event ids the device may serve, or ``"*"`` for all.
        now: issue time (default: the wall clock); validity starts an hour
            earlier to tolerate clock skew.

    Raises:
        InputError: a key that is not Ed25519, a device id that is not the
            key's (``device_id_mismatch``), an unknown role, no events, a bad
            name or validity, or a validity past the organisation's expiry.
    """
    key = _public_key(device_public_key)
    derived = device_id_for(key)
    if device_id is not None and device_id != derived:
        raise InputError(
            f"device id {device_id!r} is not the key's ({derived})", code="device_id_mismatch"
        )
    role = _role(role)
    wanted = sorted({check_id("event", e) for e in events})
    if not wanted:
        raise InputError("a device certificate needs at least one event (or '*' for all)")
    name = _check_text("device name", name, MAX_NAME)
    _check_days(valid_days, 10 * 365)
    start = _now(now)
    expiry = start + timedelta(days=valid_days)
    if expiry > org.certificate.not_valid_after_utc:
        raise InputError(
            f"the organisation certificate expires at {org.certificate.not_valid_after_utc}; "
            "ask for fewer days",
            code="outlives_org",
        )
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, derived)]
    if name:
        subject.append(x509.NameAttribute(NameOID.PSEUDONYM, name))
    uris = [device_uri(derived), role_uri(role), *(event_uri(e) for e in wanted)]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(org.certificate.subject)
        .public_key(key)
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(expiry)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    )
    return _sign_leaf(builder, key, org)


def _ca_certificate(
    key: Ed25519PrivateKey, name: str, start: datetime, days: int
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} headcount CA"[:MAX_NAME]),
        ]
    )
    usage = {**dict.fromkeys(_KEY_USAGES, False), "key_cert_sign": True, "crl_sign": True}
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(**usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None)
    )


def _sign_leaf(
    builder: x509.CertificateBuilder, key: Ed25519PublicKey, org: Org
) -> x509.Certificate:
    """Add the end-entity extensions every device certificate carries, and sign.

    One certificate for both ends of mutual TLS: serverAuth and clientAuth.
    The authority key id lets verification tell another organisation (even
    one with the same name) from a tampered certificate.
    """
    usage = {**dict.fromkeys(_KEY_USAGES, False), "digital_signature": True}
    both_ends = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    authority = x509.AuthorityKeyIdentifier(bytes.fromhex(org.key_id), None, None)
    return (
        builder.serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage(both_ends), critical=False)
        .add_extension(authority, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .sign(org.private_key, None)
    )


def parse_public_key(data: bytes) -> Ed25519PublicKey:
    """A device public key from a PEM ``PUBLIC KEY`` or 64 hex characters.

    Raises:
        InputError: a private key (it must stay on the device), another key
            type, or text that is neither.
    """
    text = data.strip()
    if b"PRIVATE KEY" in text:
        raise InputError(
            "this is a private key: it must stay on the device; "
            "export the public key with `headcount device pubkey`",
            code="private_key",
        )
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode("ascii")))
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise InputError(
            f"not an Ed25519 public key (PEM or 64 hex characters): {exc}", code="bad_key"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{type(key).__name__} is not an Ed25519 key", code="bad_key")
    return key


def revoke_as_ca(
    org: Org, device_id: str, *, at_ms: int, serial: int | None = None, reason: str = ""
) -> SignedRevocation:
    """A revocation record signed by the organisation CA.

    Raises:
        InputError: a malformed device id, serial or reason.
    """
    claim = claim_for(
        org.certificate, device_id, at_ms=at_ms, signer=CA_SIGNER, serial=serial, reason=reason
    )
    return sign_revocation(claim, org.private_key)


def load_revocations(org_dir: Path) -> list[SignedRevocation]:
    """The revocation records the CA signed so far (none if no file was
    written). An unsigned list written by an earlier version is signed now,
    entry by entry (same devices, times and reasons).

    Raises:
        InputError: a corrupt ``revocations.json``, or one of another organisation.
    """
    org = load_org(org_dir)
    path = org_dir / REVOCATIONS_FILE
    if not path.exists():
        return []
    text = path.read_bytes()
    try:
        return records_from_json(text)
    except InputError:
        old = RevocationList.from_json(text)  # raises if it is neither format
    if old.org and old.org != org.key_id:
        raise InputError(f"{path} lists the revocations of another organisation")
    return [
        revoke_as_ca(org, e.device_id, at_ms=e.revoked_at_ms, serial=e.serial, reason=e.reason)
        for e in old.entries
    ]


def save_revocations(org_dir: Path, records: Iterable[SignedRevocation]) -> Path:
    """Replace ``revocations.json`` atomically; returns its path."""
    org = load_org(org_dir)
    path = org_dir / REVOCATIONS_FILE
    write_atomic(path, records_to_json(org.key_id, records).encode("utf-8"), 0o644)
    return path


# -- helpers ----------------------------------------------------------------------

_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise InputError(f"unknown role {role!r} (expected one of: {known})") from None


def _now(now: datetime | int | None) -> datetime:
    return datetime.now(UTC) if now is None else as_utc(now)


def _public_key(key: Ed25519PublicKey | bytes) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, bytes) and len(key) == 32:
        return Ed25519PublicKey.from_public_bytes(key)
    raise InputError("a device public key is an Ed25519 key or its 32 raw bytes", code="bad_key")


def _raw(key: object) -> bytes | None:
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_text(what: str, value: str, limit: int, *, required: bool = False) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise InputError(f"{what} must be a non-empty string")
    if len(value) > limit or any(ord(c) < 32 for c in value) or value != value.strip():
        raise InputError(
            f"{what} {value!r}: at most {limit} characters, no control characters or edge spaces"
        )
    return value


def _check_days(days: int, limit: int) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= limit:
        raise InputError(f"validity must be between 1 and {limit} days, not {days!r}")
