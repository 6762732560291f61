"""``headcount device revoke``: cut a lost or stolen device off the organisation.

A revocation is a record signed by an admin device (through its running
daemon, which keeps it and gossips it to every peer at once) or, offline,
by the organisation CA (a file any admin daemon imports). Every device and
relay that receives a record verifies it, keeps it and refuses the revoked
device's connections from then on.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headcount.core.errors import HeadcountError, InputError
from headcount.core.identity import default_data_dir

from .util import Command, Result, daemon_request

IMPORT_BATCH = 32  # records per control request (the daemon's MAX_IMPORT_RECORDS)

HELP = "revoke a device: signed by this admin's daemon, or offline by the CA"
EPILOG = """\
ways to revoke:
  headcount --data-dir ADMIN device revoke DEVICE_ID [--serial S] [--reason TEXT]
      on an admin device whose daemon (`headcount run`) is running: the daemon
      signs the revocation with its admin key, keeps it, closes its links to
      the device and sends the record to every peer, which pass it on; every
      gate and relay refuses the device from then on. Refused if this device
      is not an admin.
  headcount device revoke DEVICE_ID --org-dir ORG [--serial S] [--reason TEXT]
      offline, with the organisation CA key (no admin running): the record is
      added to ORG/revocations.json; then import that file on any admin:
  headcount --data-dir ADMIN device revoke --import ORG/revocations.json
      verify and keep records signed elsewhere, and gossip them.
  headcount --data-dir DEVICE device revoke --list
      the revocations this device enforces.

A revocation is never undone: re-admit a device by enrolling a new key.
Entries the device wrote before stay part of the history."""


def register(dev: Any, cmd: Command) -> None:
    """Add ``revoke`` to the ``device`` group with the main CLI's ``cmd`` helper."""
    p = cmd(
        dev,
        "revoke",
        _revoke,
        HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("device_id", metavar="DEVICE_ID", nargs="?", help="the device to revoke")
    p.add_argument("--serial", help="revoke only this certificate of the device (hex serial)")
    p.add_argument("--reason", default="", help="why (kept in the signed record)")
    p.add_argument(
        "--org-dir", type=Path, help="sign offline with the organisation CA in this directory"
    )
    p.add_argument(
        "--import",
        dest="import_file",
        type=Path,
        metavar="FILE",
        help="send the records of a revocation file to this device's daemon",
    )
    p.add_argument("--list", action="store_true", help="list the revocations this device enforces")


def _revoke(args: argparse.Namespace) -> Result:
    given = [args.device_id is not None, args.import_file is not None, args.list]
    if sum(given) != 1:
        raise InputError("give one of DEVICE_ID, --import FILE or --list (see --help)")
    if args.device_id is None and (args.serial or args.reason or args.org_dir):
        raise InputError("--serial, --reason and --org-dir go with DEVICE_ID")
    if args.import_file is not None:
        return _import(args)
    if args.list:
        return _list(args)
    serial = _serial(args.serial)
    if args.org_dir is not None:
        return _offline(args, serial)
    return _through_daemon(args, serial)


def _through_daemon(args: argparse.Namespace, serial: int | None) -> Result:
    payload = {
        "op": "revoke",
        "device": args.device_id,
        "serial": None if serial is None else format(serial, "x"),
        "reason": args.reason,
    }
    reply = _ask(args, payload)
    text = (
        f"revoked {_what(args.device_id, serial)}: signed by this admin device, kept and "
        f"sent to every connected peer; {_summary(reply)}"
    )
    return reply, text


def _offline(args: argparse.Namespace, serial: int | None) -> Result:
    from headcount.pki.org import load_org, load_revocations, revoke_as_ca, save_revocations
    from headcount.pki.revocation_file import record_to_dict

    org = load_org(args.org_dir)
    records = load_revocations(args.org_dir)
    at_ms = int(datetime.now(UTC).timestamp() * 1000)
    record = revoke_as_ca(org, args.device_id, at_ms=at_ms, serial=serial, reason=args.reason)
    path = save_revocations(args.org_dir, [*records, record])
    data = {"record": record_to_dict(record), "file": str(path), "records": len(records) + 1}
    return data, (
        f"revoked {_what(args.device_id, serial)}: signed by the organisation CA; {path} "
        f"holds {len(records) + 1} records. Import it on an admin device, whose daemon "
        f"sends it to every peer:\n  headcount --data-dir ADMIN device revoke --import {path}"
    )


def _import(args: argparse.Namespace) -> Result:
    from headcount.pki.revocation_file import record_to_dict, records_from_json

    try:
        text = args.import_file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {args.import_file}: {exc.strerror}") from None
    records = records_from_json(text)
    added, refused, reply = 0, [], {}
    for start in range(0, max(len(records), 1), IMPORT_BATCH):
        batch = [
            {k: v for k, v in record_to_dict(r).items() if k != "revocation"}
            for r in records[start : start + IMPORT_BATCH]
        ]
        reply = _ask(args, {"op": "import_revocations", "records": batch})
        added += reply["added"]
        refused += reply["refused"]
    data = {**reply, "added": added, "refused": refused}
    if refused:
        reasons = "; ".join(f"{r['code']}: {r['detail']}" for r in refused[:5])
        raise HeadcountError(
            f"{len(refused)} of {len(records)} records were refused ({reasons}); "
            f"{added} new ones were kept",
            code="revocation_refused",
        )
    return data, f"imported {added} new of {len(records)} records; {_summary(data)}"


def _list(args: argparse.Namespace) -> Result:
    reply = daemon_request(args, {"op": "revocations"})
    if reply is None:
        reply = _stored(args)
    lines = [_summary(reply)]
    for entry in reply["revoked"]:
        serial = f" (certificate {entry['serial']})" if entry["serial"] else ""
        reason = f": {entry['reason']}" if entry["reason"] else ""
        lines.append(f"  {entry['device_id']}{serial} by {entry['revoked_by']}{reason}")
    return reply, "\n".join(lines)


def _stored(args: argparse.Namespace) -> dict[str, Any]:
    """What the device's store holds, when no daemon runs (read-only)."""
    from headcount.pki.device import load_device_certificate
    from headcount.pki.revocation_book import RevocationBook
    from headcount.pki.revocation_record import SignedRevocation

    from .util import open_replica

    data_dir = args.data_dir or default_data_dir()
    _, ca = load_device_certificate(data_dir)
    book = RevocationBook(ca)
    with open_replica(args, read_only=True) as replica:
        book.load(SignedRevocation(b, s, c) for _, b, s, c in replica.store.revocations())
    entries = book.revocations().entries
    return {"records": len(book), "revoked": [e.to_dict() for e in entries], "refusals": {}}


def _ask(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    reply = daemon_request(args, payload)
    if reply is None:
        raise HeadcountError(
            f"no daemon is running for {args.data_dir or default_data_dir()}: start it "
            "(`headcount run`) on the admin device, or revoke offline with the organisation "
            "CA (`headcount device revoke DEVICE_ID --org-dir ORG`)",
            code="not_running",
        )
    return reply


def _serial(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 16)
    except ValueError:
        raise InputError(f"--serial {text!r} is not a hex number") from None


def _what(device_id: str, serial: int | None) -> str:
    return f"device {device_id}" if serial is None else f"certificate {serial:x} of {device_id}"


def _summary(status: dict[str, Any]) -> str:
    return (
        f"this device holds {status['records']} revocation records, revoking "
        f"{len(status['revoked'])} devices or certificates"
    )
