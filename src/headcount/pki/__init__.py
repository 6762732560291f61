"""The organisation's certificate authority: enrolment, device certificates
bound to a device's existing Ed25519 key, signed revocation records (and the
list they put in force) and the checks a peer's certificate must pass. Imports only ``core``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headcount._lazy import exports

if TYPE_CHECKING:
    from .device import install_certificate, load_device_certificate, ssl_context
    from .org import Org, enroll, init_org, load_org
    from .revocation import Revocation, RevocationList, revoke
    from .revocation_book import Refusal, RevocationBook
    from .revocation_record import RecordRefused, SignedRevocation, sign_revocation
    from .verify import PeerCertificateError, PeerIdentity, Rejection, verify_peer_certificate

__all__ = [
    "Org",
    "PeerCertificateError",
    "PeerIdentity",
    "RecordRefused",
    "Refusal",
    "Rejection",
    "Revocation",
    "RevocationBook",
    "RevocationList",
    "SignedRevocation",
    "enroll",
    "init_org",
    "install_certificate",
    "load_device_certificate",
    "load_org",
    "revoke",
    "sign_revocation",
    "ssl_context",
    "verify_peer_certificate",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        ".org": ["Org", "enroll", "init_org", "load_org"],
        ".device": ["install_certificate", "load_device_certificate", "ssl_context"],
        ".revocation": ["Revocation", "RevocationList", "revoke"],
        ".revocation_book": ["Refusal", "RevocationBook"],
        ".revocation_record": ["RecordRefused", "SignedRevocation", "sign_revocation"],
        ".verify": ["PeerCertificateError", "PeerIdentity", "Rejection", "verify_peer_certificate"],
    },
)
