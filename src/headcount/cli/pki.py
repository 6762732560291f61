"""``headcount org …`` and ``headcount device …``: the trust root and enrolment.

Registered into the main parser by :func:`register` (one line in
``headcount/cli.py``). The workflow, keeping each device key on its device::

    headcount org init --org-dir ORG --name "Example Events"
    headcount device pubkey --data-dir GATE > gate.pub          # on the gate
    headcount device enroll --org-dir ORG --public-key gate.pub \\
        --role gate --event e1 --out gate.crt                   # at the org
    headcount device install --data-dir GATE --cert gate.crt --ca ORG/org.crt
    headcount device show --data-dir GATE

When the org directory and the device's data directory are on one machine,
``device enroll --device-dir GATE`` does the last three steps at once.
``device revoke`` is in :mod:`headcount.cli.revoke`.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from headcount.core.errors import InputError
from headcount.core.files import write_atomic
from headcount.core.identity import Role, default_data_dir, load_identity
from headcount.pki.org import (
    DEFAULT_DEVICE_DAYS,
    DEFAULT_ORG_DAYS,
    ORG_CERT_FILE,
    enroll,
    init_org,
    install_certificate,
    load_device_certificate,
    load_org,
    parse_public_key,
)
from headcount.pki.verify import (
    PeerCertificateError,
    PeerIdentity,
    certificate_identity,
    verify_peer_certificate,
)

from .util import Command, Result, command_group


def register(sub: Any, cmd: Command) -> Any:
    """Add the ``org`` and ``device`` command groups with the main CLI's
    ``cmd`` helper; returns the ``device`` group (``device revoke`` joins it)."""
    org = command_group(sub, "org", "the organisation's certificate authority (trust root)")
    p = cmd(org, "init", _org_init, "create the organisation CA key and certificate")
    p.add_argument("--org-dir", type=Path, required=True, help="where to keep the CA (0700)")
    p.add_argument("--name", required=True, help="the organisation's name")
    p.add_argument(
        "--days", type=int, default=DEFAULT_ORG_DAYS, help=f"validity (default {DEFAULT_ORG_DAYS})"
    )

    dev = command_group(sub, "device", "device certificates: enrol, install, show, revoke")
    cmd(dev, "pubkey", _device_pubkey, "print this device's public key (for `device enroll`)")
    p = cmd(dev, "enroll", _device_enroll, "issue a certificate for a device's existing key")
    p.add_argument("--org-dir", type=Path, required=True, help="the organisation's CA directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--device-dir", type=Path, help="the device's data dir: install there")
    src.add_argument("--public-key", type=Path, help="the device's public key (PEM or hex)")
    p.add_argument("--device-id", help="the id you expect; refused if the key's differs")
    p.add_argument(
        "--role",
        choices=[r.value for r in Role],
        help="what the device may write (default with --device-dir: the device's role)",
    )
    p.add_argument(
        "--event",
        dest="events",
        action="append",
        default=[],
        metavar="EV",
        help="an event it may serve; repeat for more; '*' for all",
    )
    p.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DEVICE_DAYS,
        help=f"validity (default {DEFAULT_DEVICE_DAYS})",
    )
    p.add_argument("--name", default="", help="a display name, e.g. the gate's location")
    p.add_argument("--out", type=Path, help="with --public-key: write the PEM here")
    p = cmd(dev, "install", _device_install, "install a certificate issued for this device")
    p.add_argument("--cert", type=Path, required=True, help="the device certificate (PEM)")
    p.add_argument("--ca", type=Path, required=True, help="the organisation CA (PEM)")
    cmd(dev, "show", _device_show, "show this device's certificate: id, role, events, expiry")
    return dev


# -- handlers ------------------------------------------------------------------


def _org_init(args: argparse.Namespace) -> Result:
    org = init_org(args.org_dir, args.name, days=args.days)
    data = {
        "org_dir": str(args.org_dir),
        "name": org.name,
        "key_id": org.key_id,
        "not_after": org.certificate.not_valid_after_utc.isoformat(),
        "certificate": str(args.org_dir / ORG_CERT_FILE),
    }
    return data, (
        f"created organisation {org.name!r} (CA key {org.key_id[:16]}) in {args.org_dir}; "
        f"valid until {data['not_after']}"
    )


def _device_pubkey(args: argparse.Namespace) -> Result:
    identity = load_identity(_data_dir(args))
    pem = identity.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    data = {"device_id": identity.device_id, "role": identity.role.value, "public_key_pem": pem}
    return data, pem.rstrip("\n")


def _device_enroll(args: argparse.Namespace) -> Result:
    org = load_org(args.org_dir)
    role = args.role
    if args.out is not None and args.device_dir is not None:
        raise InputError("--out goes with --public-key; --device-dir installs the certificate")
    if args.device_dir is not None:
        identity = load_identity(args.device_dir)
        if role is not None and role != identity.role.value:
            raise InputError(
                f"--role {role}: the device in {args.device_dir} is a {identity.role} "
                "(its role is fixed at `headcount init`)",
                code="role_mismatch",
            )
        key, role = identity.public_key, identity.role
    else:
        if role is None:
            raise InputError("--role is required with --public-key")
        key = parse_public_key(_read(args.public_key, "public key"))
    cert = enroll(org, key, args.device_id, role, args.events, args.days, args.name)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    if args.device_dir is not None:
        peer = install_certificate(args.device_dir, pem, org.certificate_pem)
        where = f"installed in {args.device_dir}"
    else:
        peer = verify_peer_certificate(cert, org.certificate, datetime.now(UTC))
        where = f"written to {args.out}" if args.out else ""
        if args.out:
            write_atomic(args.out, pem, 0o644)
    data = {
        **peer.to_dict(),
        "certificate_pem": pem.decode("ascii"),
        "installed_in": None if args.device_dir is None else str(args.device_dir),
        "written_to": None if args.out is None else str(args.out),
    }
    text = f"enrolled {_describe(peer)}; {where}" if where else pem.decode("ascii").rstrip("\n")
    return data, text


def _device_install(args: argparse.Namespace) -> Result:
    cert = _read(args.cert, "certificate")
    ca = _read(args.ca, "CA certificate")
    peer = install_certificate(_data_dir(args), cert, ca)
    return peer.to_dict(), f"installed {_describe(peer)}"


def _device_show(args: argparse.Namespace) -> Result:
    data_dir = _data_dir(args)
    cert, ca = load_device_certificate(data_dir)
    identity = load_identity(data_dir)
    try:
        peer = verify_peer_certificate(cert, ca, datetime.now(UTC))
        status, problem = "valid", ""
    except PeerCertificateError as exc:
        peer = certificate_identity(cert)  # raises again if it is not a device certificate
        status, problem = exc.code, exc.message
    if peer.public_key_raw != identity.public_key_raw:
        status, problem = "key_mismatch", "the certificate is not for this device's key"
    data = {
        **peer.to_dict(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "issuer": cert.issuer.rfc4514_string(),
        "status": status,
        "problem": problem,
    }
    text = "\n".join(
        [
            f"device    {peer.device_id}" + (f" ({peer.name})" if peer.name else ""),
            f"role      {peer.role}",
            f"events    {', '.join(sorted(peer.events))}",
            f"valid     {data['not_before']} .. {data['not_after']}",
            f"issuer    {data['issuer']}",
            f"serial    {data['serial']}",
            f"status    {status}" + (f": {problem}" if problem else ""),
        ]
    )
    return data, text


# -- helpers -------------------------------------------------------------------


def _data_dir(args: argparse.Namespace) -> Path:
    return args.data_dir or default_data_dir()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _describe(peer: PeerIdentity) -> str:
    return (
        f"device {peer.device_id} as {peer.role} for {', '.join(sorted(peer.events))} "
        f"until {peer.not_after.isoformat()}"
    )
