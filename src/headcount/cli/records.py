"""``headcount`` commands on a device's records: init, events, participants,
check-in and check-out, attendance, configuration and conflicts."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from headcount.core.csvimport import ImportProgress
from headcount.core.errors import InputError
from headcount.core.identity import Role, default_data_dir
from headcount.core.schema import load_schema_file
from headcount.replica.replica import Replica

from .util import Command, Handler, command_group, daemon_request, open_replica


def register(sub: Any, cmd: Command) -> None:
    """Add the record commands with the main CLI's ``cmd`` helper."""
    p = cmd(sub, "init", _init, "create this device's identity and store")
    p.add_argument(
        "--role",
        choices=[r.value for r in Role],
        default="gate",
        help="what this device may do (default: gate)",
    )
    p.add_argument("--name", default="", help="a display name, e.g. the gate's location")

    ev = command_group(sub, "event", "create and list events")
    p = cmd(ev, "create", _event_create, "create an event (on an admin or relay device)")
    p.add_argument("event", help="event id")
    p.add_argument("--name", default="", help="display name (default: the id)")
    p.add_argument("--schema", type=Path, help="TOML file extending the default field policies")
    cmd(ev, "list", _event_list, "list the events on this device")

    pa = command_group(sub, "participants", "import, edit and list participants")
    p = cmd(
        pa,
        "import",
        _participants_import,
        "import participants from CSV (header: id and schema fields; every row is checked "
        "before any is written)",
    )
    p.add_argument("event")
    p.add_argument("file", type=Path)
    p = cmd(pa, "list", _participants_list, "list participants")
    p.add_argument("event")
    p.add_argument("--deleted", action="store_true", help="include deleted participants")
    p = cmd(pa, "show", _participants_show, "show one participant and their attendance")
    p.add_argument("event")
    p.add_argument("participant")
    p = cmd(pa, "set", _participants_set, "create or update a participant's fields")
    p.add_argument("event")
    p.add_argument("participant")
    p.add_argument("fields", nargs="+", metavar="FIELD=VALUE")
    p = cmd(pa, "delete", _participants_delete, "delete a participant (admin)")
    p.add_argument("event")
    p.add_argument("participant")

    for name, kind in (("checkin", "in"), ("checkout", "out")):
        p = cmd(sub, name, _scan(kind), f"record a check-{kind} (returns once it is on disk)")
        p.add_argument("event")
        p.add_argument("who", help="participant id or QR token")
        p.add_argument("--gate", help="gate name (default: this device's name)")
        p.add_argument("--method", default="qr", choices=["qr", "ble", "manual"])
        p.add_argument("--key", help="idempotency key (UUID v4); a repeat is applied once")
        p.add_argument("--at", help="scan time, ISO 8601 or epoch milliseconds (default: now)")
        p.add_argument(
            "--allow-unknown",
            action="store_true",
            help="record the scan even if the participant is not known here yet",
        )

    p = cmd(sub, "attendance", _attendance, "list attendance records")
    p.add_argument("event")

    cf = command_group(sub, "config", "event configuration")
    p = cmd(cf, "set", _config_set, "set a configuration value (JSON, or a plain string)")
    p.add_argument("event")
    p.add_argument("key")
    p.add_argument("value")
    p = cmd(cf, "show", _config_show, "show the event's configuration")
    p.add_argument("event")

    co = command_group(sub, "conflicts", "manual-merge records")
    p = cmd(co, "list", _conflicts_list, "list open conflicts")
    p.add_argument("event")
    p.add_argument("--resolved", action="store_true", help="list past resolutions instead")
    p = cmd(co, "resolve", _conflicts_resolve, "resolve a conflict (admin)")
    p.add_argument("event")
    p.add_argument("conflict")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--choose", metavar="DOT", help="keep this candidate's value")
    how.add_argument("--value", help="write this value instead (JSON, or a plain string)")
    how.add_argument("--delete", action="store_true", help="modified-deleted: keep it deleted")
    how.add_argument("--restore", action="store_true", help="modified-deleted: restore it")


def _init(args: argparse.Namespace) -> tuple[Any, str]:
    identity = Replica.init(args.data_dir, role=Role(args.role), name=args.name)
    data = {
        "device_id": identity.device_id,
        "role": identity.role.value,
        "name": identity.name,
        "data_dir": str(args.data_dir or default_data_dir()),
    }
    return data, f"created device {identity.device_id} ({identity.role}) in {data['data_dir']}"


def _event_create(args: argparse.Namespace) -> tuple[Any, str]:
    schema = load_schema_file(args.schema) if args.schema else None
    with open_replica(args) as r:
        ev = r.create_event(args.event, args.name, schema)
        return {"event": ev.id, "name": ev.name}, f"created event {ev.id}"


def _event_list(args: argparse.Namespace) -> tuple[Any, str]:
    with open_replica(args, read_only=True) as r:
        events = [{"event": e, "name": r.event(e).name} for e in r.events()]
    return events, "\n".join(f"{e['event']}\t{e['name']}" for e in events) or "(no events)"


def _participants_import(args: argparse.Namespace) -> tuple[Any, str]:
    with open_replica(args) as r:
        report = r.import_csv(args.event, args.file, progress=_ImportProgress(args.json))
    return report.to_dict(), (
        f"imported {report.rows} rows: {report.changed} participants created or changed"
    )


class _ImportProgress:
    """Progress of a long import on stderr: one line when each pass has run
    for a while, then at most one every few seconds (none with ``--json``)."""

    EVERY_S = 5.0

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.start = time.monotonic()
        self.last = self.start

    def __call__(self, p: ImportProgress) -> None:
        now = time.monotonic()
        if self.quiet or now - self.last < (self.EVERY_S if self.last > self.start else 1.0):
            return
        self.last = now
        if p.phase == "checked":
            line = f"checked {p.rows:,} rows (nothing is written until every row is valid)"
        else:
            share = f" ({100 * p.rows // p.total}%)" if p.total else ""
            line = f"imported {p.rows:,} of {p.total or 0:,} rows{share}"
        print(f"headcount: {line}, {now - self.start:.0f} s", file=sys.stderr, flush=True)


def _participants_list(args: argparse.Namespace) -> tuple[Any, str]:
    with open_replica(args, read_only=True) as r:
        people = [p.to_dict() for p in r.event(args.event).participants(args.deleted)]
    lines = [
        f"{p['id']}\t{p.get('name') or ''}" + ("\t(deleted)" if p.get("deleted") else "")
        for p in people
    ]
    return people, "\n".join(lines) or "(no participants)"


def _participants_show(args: argparse.Namespace) -> tuple[Any, str]:
    with open_replica(args, read_only=True) as r:
        ev = r.event(args.event)
        data = {
            **ev.participant(args.participant).to_dict(),
            "attendance": ev.attendance(args.participant).to_dict(),
        }
    return data, json.dumps(data, indent=2, ensure_ascii=False)


def _participants_set(args: argparse.Namespace) -> tuple[Any, str]:
    fields = {}
    for item in args.fields:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(f"expected FIELD=VALUE, got {item!r}")
        fields[name] = value
    with open_replica(args) as r:
        changed = r.upsert_participant(args.event, args.participant, fields)
        data = r.participant(args.event, args.participant).to_dict()
    return {"changed": changed, "participant": data}, "updated" if changed else "no change"


def _participants_delete(args: argparse.Namespace) -> tuple[Any, str]:
    with open_replica(args) as r:
        r.delete_participant(args.event, args.participant)
    return {"deleted": args.participant}, f"deleted {args.participant}"


def _scan(kind: str) -> Handler:
    def handler(args: argparse.Namespace) -> tuple[Any, str]:
        scan_at = _parse_time(args.at) if args.at else None
        options = {
            "gate": args.gate,
            "method": args.method,
            "scan_id": args.key,
            "at_ms": scan_at,
            "allow_unknown": args.allow_unknown,
        }
        # A running gate daemon holds the data directory: record through it
        # (it also pushes the scan to the peers at once).
        data = daemon_request(
            args,
            {
                "op": "scan",
                "kind": kind,
                "event": args.event,
                "who": args.who,
                **{k: v for k, v in options.items() if v is not None},
            },
        )
        if data is None:
            with open_replica(args) as r:
                fn = r.check_in if kind == "in" else r.check_out
                res = fn(args.event, args.who, **options)
                data = {
                    "recorded": res.recorded,
                    "scan": res.scan.to_dict(),
                    "attendance": res.attendance.to_dict(),
                }
        verb = "recorded" if data["recorded"] else "already recorded"
        scan = data["scan"]
        return data, f"{verb}: check-{kind} of {scan['participant']} (scan {scan['id']})"

    return handler


def _parse_time(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--at {text!r}: expected ISO 8601 (2026-05-01T09:30:00Z) or epoch ms"
        ) from None
    if moment.tzinfo is None:
        raise InputError(f"--at {text!r}: give a time zone (e.g. Z or +09:00)")
    return int(moment.timestamp() * 1000)


def _attendance(args: argparse.Namespace) -> tuple[Any, str]:
    with open_replica(args, read_only=True) as r:
        records = [a.to_dict() for a in r.event(args.event).attendance_list()]
    lines = []
    for a in records:
        cin, cout = a["check_in"], a["check_out"]
        lines.append(
            f"{a['participant']}\tin={_fmt(cin)}\tout={_fmt(cout)}\tscans={len(a['scans'])}"
        )
    return records, "\n".join(lines) or "(no attendance)"


def _fmt(scan: dict[str, Any] | None) -> str:
    if not scan:
        return "-"
    when = datetime.fromtimestamp(scan["ts_ms"] / 1000).astimezone().isoformat(timespec="seconds")
    return f"{when}@{scan['gate']}"


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _config_set(args: argparse.Namespace) -> tuple[Any, str]:
    with open_replica(args) as r:
        r.set_config(args.event, args.key, _json_or_text(args.value))
        cfg = r.event(args.event).config()
    return cfg, f"{args.key} = {json.dumps(cfg.get(args.key))}"


def _config_show(args: argparse.Namespace) -> tuple[Any, str]:
    with open_replica(args, read_only=True) as r:
        cfg = r.event(args.event).config()
    return cfg, "\n".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in cfg.items())


def _conflicts_list(args: argparse.Namespace) -> tuple[Any, str]:
    with open_replica(args, read_only=True) as r:
        ev = r.event(args.event)
        if args.resolved:
            done = ev.resolutions()
            return done, "\n".join(json.dumps(d, ensure_ascii=False) for d in done) or "(none)"
        found = [c.to_dict() for c in ev.conflicts()]
    lines = []
    for c in found:
        lines.append(f"{c['id']}  {c['kind']}  participant={c['participant']}  field={c['field']}")
        for cand in c["candidates"]:
            lines.append(
                f"    --choose {cand['dot']}  {json.dumps(cand['value'], ensure_ascii=False)}"
                f"  (device {cand['device']}, {cand['role']})"
            )
    return found, "\n".join(lines) or "(no open conflicts)"


def _conflicts_resolve(args: argparse.Namespace) -> tuple[Any, str]:
    kw: dict[str, Any]
    if args.choose:
        kw = {"choose": args.choose}
    elif args.value is not None:
        kw = {"value": _json_or_text(args.value), "use_value": True}
    else:
        kw = {"restore": bool(args.restore)}
    with open_replica(args) as r:
        r.resolve_conflict(args.event, args.conflict, **kw)
    return {"resolved": args.conflict}, f"resolved {args.conflict}"
