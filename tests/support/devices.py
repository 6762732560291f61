"""Devices enrolled in a test organisation (certificate installed), on disk."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from headcount import Replica, Role
from headcount.pki.device import install_certificate
from headcount.pki.org import Org, enroll


def enrolled_dir(tmp: Path, org: Org, name: str, role: Role) -> Path:
    """A new device ``tmp/name`` enrolled for every event; its data directory
    (closed: a daemon process opens it)."""
    Replica.init(tmp / name, role=role, name=name)
    with Replica.open(tmp / name) as r:
        cert = enroll(org, r.identity.public_key_raw, r.device_id, role, ["*"])
    install_certificate(
        tmp / name, cert.public_bytes(serialization.Encoding.PEM), org.certificate_pem
    )
    return tmp / name


def enrolled_replica(
    tmp: Path,
    org: Org,
    name: str,
    role: Role,
    clock: Callable[[], int],
    events: Iterable[str] = ("*",),
) -> Replica:
    """A new device ``tmp/name`` enrolled for ``events``, open on ``clock``."""
    Replica.init(tmp / name, role=role, name=name)
    replica = Replica.open(tmp / name, wall_clock=clock)
    cert = enroll(org, replica.identity.public_key_raw, replica.device_id, role, list(events))
    install_certificate(
        tmp / name,
        cert.public_bytes(serialization.Encoding.PEM),
        org.certificate_pem,
    )
    return replica
