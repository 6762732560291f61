"""A device's certificate files and its TLS context.

A device's data directory holds ``device.key`` (made by ``headcount init``),
``device.crt`` (its organisation-issued certificate, PEM) and ``org-ca.crt``
(the organisation CA, its only trust anchor). The same certificate serves both
ends of mutual TLS 1.3, so the key that signs log entries is the key a TLS peer
proved it holds.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from headcount.core.errors import InputError, NotFoundError, StoreError
from headcount.core.files import write_atomic
from headcount.core.identity import KEY_FILE, load_identity

from .verify import (
    PeerCertificateError,
    PeerIdentity,
    as_utc,
    certificate_identity,
    check_issued_by,
)

CERT_FILE = "device.crt"
CA_FILE = "org-ca.crt"


def install_certificate(
    data_dir: Path, cert_pem: bytes, ca_pem: bytes, *, now: datetime | int | None = None
) -> PeerIdentity:
    """Write ``device.crt`` and ``org-ca.crt`` (0644) after checking them.

    Checks: both parse, the CA is a CA and issued the certificate, the
    certificate is for this device's key and role, it has not expired at
    ``now`` (default: the wall clock), and an existing ``org-ca.crt`` is the
    same CA. Each file is replaced atomically.

    Raises:
        StoreError: no device in ``data_dir``.
        InputError: any failed check (nothing is written).
    """
    identity = load_identity(data_dir)
    cert, ca = _parse_pair(cert_pem, ca_pem)
    if _raw(cert.public_key()) != identity.public_key_raw:
        raise InputError(
            f"the certificate is not for this device's key ({identity.device_id})",
            code="key_mismatch",
        )
    try:
        check_issued_by(cert, ca)
        peer = certificate_identity(cert)
    except PeerCertificateError as exc:
        raise InputError(f"unusable certificate: {exc}", code=exc.code) from None
    if peer.role is not identity.role:
        raise InputError(
            f"the certificate is for role {peer.role}, this device is a {identity.role}",
            code="role_mismatch",
        )
    if (datetime.now(UTC) if now is None else as_utc(now)) > cert.not_valid_after_utc:
        raise InputError(f"the certificate expired at {cert.not_valid_after_utc}", code="expired")
    _check_same_ca(data_dir / CA_FILE, ca)
    # The CA first: a crash in between leaves the old certificate under the same CA.
    write_atomic(data_dir / CA_FILE, _pem(ca), 0o644)
    write_atomic(data_dir / CERT_FILE, _pem(cert), 0o644)
    return peer


def load_device_certificate(data_dir: Path) -> tuple[x509.Certificate, x509.Certificate]:
    """This device's certificate and its organisation CA.

    Raises:
        NotFoundError: the device has not been enrolled.
        StoreError: unreadable files.
    """
    cert_path, ca_path = data_dir / CERT_FILE, data_dir / CA_FILE
    if not cert_path.exists() or not ca_path.exists():
        raise NotFoundError(
            f"no certificate in {data_dir}: enrol the device (`headcount device enroll`)",
            code="not_enrolled",
        )
    try:
        return (
            x509.load_pem_x509_certificate(cert_path.read_bytes()),
            x509.load_pem_x509_certificate(ca_path.read_bytes()),
        )
    except (OSError, ValueError) as exc:
        raise StoreError(f"the certificate files in {data_dir} are unreadable: {exc}") from None


def ssl_context(data_dir: Path, *, server_side: bool) -> ssl.SSLContext:
    """A TLS 1.3 mutual-authentication context from the device's files.

    Hostnames are not checked: peers are named by device id, which the caller
    checks with :func:`verify_peer_certificate` on
    ``getpeercert(binary_form=True)`` once the handshake is done.

    Raises:
        NotFoundError: the device has not been enrolled.
        StoreError: files that ``ssl`` cannot load.
    """
    load_device_certificate(data_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        ctx.load_cert_chain(data_dir / CERT_FILE, data_dir / KEY_FILE)
        ctx.load_verify_locations(data_dir / CA_FILE)
    except (OSError, ssl.SSLError) as exc:
        raise StoreError(f"TLS cannot use the certificate in {data_dir}: {exc}") from None
    return ctx


# -- helpers ------------------------------------------------------------------------


def _parse_pair(cert_pem: bytes, ca_pem: bytes) -> tuple[x509.Certificate, x509.Certificate]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
        basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise InputError(f"unreadable certificate: {exc}", code="bad_certificate") from None
    if not basic.ca:
        raise InputError("the organisation certificate is not a CA", code="bad_certificate")
    return cert, ca


def _check_same_ca(path: Path, ca: x509.Certificate) -> None:
    """Moving a device to another organisation is a deliberate act, not a side effect."""
    if not path.exists():
        return
    try:
        same = x509.load_pem_x509_certificate(path.read_bytes()) == ca
    except (OSError, ValueError):
        same = False
    if not same:
        raise InputError(
            f"{path} holds another organisation's CA; "
            "delete it first if this device is moving to another organisation",
            code="ca_mismatch",
        )


def _raw(key: object) -> bytes | None:
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
