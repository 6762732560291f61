"""``headcount archive …``: archive old events, query archives by date, list, prune, restore.

Registered into the main parser by :func:`register` (one line in
``headcount/cli.py``)::

    headcount archive run [--event EV] [--older-than 90d] [--dry-run]
    headcount archive query --from DATE --to DATE [--event EV] [--kind KIND]
    headcount archive list [--verify]
    headcount archive prune [--retention 365d] [--dry-run]
    headcount archive restore EVENT|ID

Archives live in ``--dir``, else ``$HEADCOUNT_ARCHIVE_DIR``, else
``<data_dir>/archive``. Every step is logged to stderr (one JSON object per
line) and to the archive directory's ``journal.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from headcount.archive.errors import ArchiveError
from headcount.archive.reader import ArchiveQuery, default_archive_dir, entries, verify
from headcount.archive.records import KINDS
from headcount.archive.restore import restore_archived
from headcount.archive.run import DAY_S, ArchivePolicy, Steps, archive_now, prune, scan
from headcount.backup.crypto import KeyRing
from headcount.core.durations import duration_arg, format_duration
from headcount.core.errors import InputError, StoreError
from headcount.core.identity import load_identity
from headcount.replica.replica import Replica, wall_clock_ms
from headcount.service.housekeeping import log_to_stderr
from headcount.service.journal import iso_time
from headcount.store.dbfile import StoreFile
from headcount.store.sqlite import DB_FILE

from .backup import (
    Command,
    Result,
    data_dir_from,
    dir_from,
    secret_from_args,
    secret_options,
)
from .util import command_group

DIR_ENV = "HEADCOUNT_ARCHIVE_DIR"


def register(sub: Any, cmd: Command) -> None:
    """Add the ``archive`` command group with the main CLI's ``cmd`` helper."""
    grp = command_group(sub, "archive", "move old events into archive files; query them by date")
    _add_run(grp, cmd)
    _add_query(grp, cmd)
    _add_others(grp, cmd)


def _add_run(grp: Any, cmd: Command) -> None:
    p = cmd(grp, "run", _run, "archive the events whose newest record is older than an age")
    p.add_argument("--event", dest="events", action="append", metavar="EV", help="only EV (repeat)")
    p.add_argument(
        "--older-than",
        type=duration_arg,
        default=90 * DAY_S,
        metavar="AGE",
        help="archive events with no scan or edit for this long: 90d, 12h, ... (default 90d)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would move, change nothing")
    p.add_argument(
        "--force",
        action="store_true",
        help="archive even if a peer has not acknowledged all of the event (it would never "
        "get the rest from this device)",
    )
    _common(p, "encrypt with")


def _add_query(grp: Any, cmd: Command) -> None:
    p = cmd(grp, "query", _query, "print the archived records whose time falls in a range")
    p.add_argument(
        "--from",
        dest="start",
        required=True,
        type=_date_from,
        metavar="DATE",
        help="from this day (YYYY-MM-DD, UTC) or instant (ISO 8601 with zone, epoch ms)",
    )
    p.add_argument(
        "--to",
        dest="end",
        required=True,
        type=_date_to,
        metavar="DATE",
        help="to this day, included, or instant",
    )
    p.add_argument("--event", dest="events", action="append", metavar="EV", help="only EV (repeat)")
    p.add_argument(
        "--kind",
        dest="kinds",
        action="append",
        choices=sorted(KINDS),
        help="only these records (repeat; default all)",
    )
    _common(p, "decrypt with")


def _add_others(grp: Any, cmd: Command) -> None:
    p = cmd(grp, "list", _list, "list archives: event, time range, records, size, state")
    p.add_argument("--verify", action="store_true", help="verify each archive (reads every file)")
    _common(p, "verify content with")
    p = cmd(grp, "prune", _prune, "delete archives archived longer ago than the retention period")
    p.add_argument(
        "--retention",
        type=duration_arg,
        default=365 * DAY_S,
        metavar="AGE",
        help="keep archives for this long after archiving (default 365d)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    _common(p, None)
    p = cmd(grp, "restore", _restore, "bring an archived event back into the live store")
    p.add_argument(
        "archive", metavar="EVENT|ID", help="an event (its newest archive) or an archive id"
    )
    _common(p, "decrypt with")


def _common(p: argparse.ArgumentParser, secret_verb: str | None) -> None:
    p.add_argument(
        "--dir",
        type=Path,
        help=f"the archive directory (default: ${DIR_ENV}, else DATA_DIR/archive)",
    )
    if secret_verb:
        secret_options(p, secret_verb)


# -- handlers ------------------------------------------------------------------


def _run(args: argparse.Namespace) -> Result:
    policy = ArchivePolicy(
        _dir(args),
        older_than_s=args.older_than,
        secret=secret_from_args(args),
        require_synced=not args.force,
    )
    now = wall_clock_ms()
    if args.dry_run:
        return _dry_run(args, policy, now)
    try:
        replica = Replica.open(data_dir_from(args))
    except StoreError as exc:
        if exc.code == "locked":
            raise StoreError(
                f"{exc.message}: a running daemon archives on its own [archive] schedule",
                code="locked",
            ) from None
        raise
    with replica:
        report = archive_now(replica, policy, now, _steps(args, policy), args.events)
    lines = [
        f"archived {a['event']} into {a['archive']} ({a['size']} bytes)" for a in report["archived"]
    ]
    for f in report["failed"]:
        why = f.get("reason") or f.get("error", {}).get("message")
        lines.append(f"not archived: {f.get('event', f.get('archive'))}: {why}")
    return report, "\n".join(lines) or "nothing old enough to archive"


def _dry_run(args: argparse.Namespace, policy: ArchivePolicy, now: int) -> Result:
    data_dir, steps = data_dir_from(args), _steps(args, None)
    device = load_identity(data_dir).device_id
    found = [c.to_dict() for c, _, _ in scan(data_dir, device, now, policy, args.events, steps)]
    held = [{"event": s["event"], "reason": s["reason"]} for s in steps.lines]
    lines = [
        f"would archive {len(found)} events not touched for {format_duration(args.older_than)}:"
    ]
    lines += [
        f"  {c['event']}: newest record {c['newest']}, {c['records']} records, "
        f"{c['entries']} log entries, {c['live_bytes']} bytes live"
        for c in found
    ]
    lines += [f"  not {h['event']}: {h['reason']}" for h in held]
    return {"dry_run": True, "events": found, "held_back": held}, "\n".join(lines)


def _query(args: argparse.Namespace) -> None:
    if args.start > args.end:
        raise InputError("--from is after --to")
    query = ArchiveQuery(
        _dir(args),
        args.start,
        args.end,
        events=frozenset(args.events) if args.events else None,
        kinds=frozenset(args.kinds) if args.kinds else None,
        secret=secret_from_args(args),
    )
    out = sys.stdout
    for n, record in enumerate(query, 1):
        out.write(
            json.dumps(record, ensure_ascii=False, sort_keys=True) if args.json else _line(record)
        )
        out.write("\n")
        if n % 1000 == 0:
            out.flush()
    out.flush()
    if query.errors:
        details = "; ".join(f"{e.code}: {e.message}" for e in query.errors)
        raise ArchiveError(
            f"{len(query.errors)} archives could not be read: {details}", code=query.errors[0].code
        )


def _line(r: dict[str, Any]) -> str:
    return f"{iso_time(r['time_ms'])}  {r['event']}  {r['type']:<11} {_summary(r)}"


def _summary(r: dict[str, Any]) -> str:
    kind, dump = r["type"], lambda v: json.dumps(v, ensure_ascii=False)
    if kind == "scan":
        return (
            f"{r['participant']} {r['kind']} at {r['gate']} (scan {r['id']}, device {r['device']})"
        )
    if kind == "attendance":
        ins, outs = _at(r["check_in"]), _at(r["check_out"])
        return f"{r['participant']} in={ins} out={outs} scans={len(r['scans'])}"
    if kind == "participant":
        return f"{r['id']} {dump(r['fields'])}" + (" (deleted)" if r["deleted"] else "")
    if kind == "config":
        return f"{r['key']} = {dump(r['value'])}"
    if kind == "conflict":
        return f"{r['id']} {r['kind']} participant={r['participant']} field={r['field']}"
    if kind == "resolution":
        record = r["record"]
        return f"{record.get('conflict', {}).get('id')} -> {dump(record.get('value'))}"
    return dump(r)


def _at(scan: dict[str, Any] | None) -> str:
    return "-" if not scan else f"{iso_time(scan['ts_ms'])}@{scan['gate']}"


def _list(args: argparse.Namespace) -> Result:
    directory = _dir(args)
    keyring = KeyRing(secret_from_args(args)) if args.verify else None
    rows = [_row(directory, e, keyring) for e in entries(directory)]
    lines = [
        f"{'ID':<48} {'ARCHIVED':<20} {'RECORDS FROM':<20} {'TO':<20} "
        f"{'RECORDS':>8} {'SIZE':>10}  STATE"
    ]
    for r in rows:
        lines.append(
            f"{r['id']:<48} {(r['archived'] or '?')[:19]:<20} {(r['first'] or '?')[:19]:<20} "
            f"{(r['last'] or '?')[:19]:<20} {r['records']:>8} {r['size']:>10}  {r['state']}"
        )
    data: dict[str, Any] = {"archives": rows, "archived_events": _archived_events(args)}
    for e in data["archived_events"]:
        if not e["archive_present"]:
            lines.append(
                f"event {e['event']}: archived {e['archived'][:19]} into {e['location']} (pruned)"
            )
    return data, "\n".join(lines) if rows else f"(no archives in {directory})"


def _row(directory: Path, entry: Any, keyring: KeyRing | None) -> dict[str, Any]:
    m = entry.manifest
    row: dict[str, Any] = {
        "id": entry.id,
        "path": str(entry.path),
        "event": None if m is None else m.event,
        "archived": None if m is None else iso_time(m.created_ms),
        "first": None if m is None else iso_time(m.first_ms),
        "last": None if m is None else iso_time(m.last_ms),
        "records": 0 if m is None else sum(m.counts.values()),
        "counts": {} if m is None else m.counts,
        "size": 0 if m is None else m.size,
        "encrypted": bool(m and m.encryption),
    }
    try:
        if m is None:
            raise entry.error
        checked = verify(directory, m, keyring) if keyring is not None else False
        row["state"] = "ok" if checked else ("ok (checksums only)" if keyring else "not verified")
    except ArchiveError as exc:
        row["state"] = f"{exc.code}: {exc.message}"
    return row


def _archived_events(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The events the store remembers as archived (none without a store)."""
    path = data_dir_from(args) / DB_FILE
    if not path.is_file():
        return []
    with StoreFile.open_read_only(path) as store:
        archived = store.archived()
    return [
        {
            "event": e,
            "archived": iso_time(ms),
            "location": loc,
            "vv": vv,
            "archive_present": Path(loc).is_dir(),
        }
        for e, (ms, loc, vv) in archived.items()
    ]


def _prune(args: argparse.Namespace) -> Result:
    directory = _dir(args)
    steps = _steps(args, None if args.dry_run else ArchivePolicy(directory))
    gone = prune(directory, args.retention, wall_clock_ms(), steps, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    kept = [s for s in steps.lines if s["step"] == "failed"]
    text = f"{verb} {len(gone)} archives archived more than {format_duration(args.retention)} ago"
    text += "".join(f"\nkept (unreadable): {s['archive']}: {s['error']['message']}" for s in kept)
    return {"dry_run": args.dry_run, "deleted": gone, "unreadable": kept}, text


def _restore(args: argparse.Namespace) -> Result:
    directory = _dir(args)
    with Replica.open(data_dir_from(args)) as replica:
        report = restore_archived(
            replica,
            directory,
            args.archive,
            _steps(args, ArchivePolicy(directory)),
            secret_from_args(args),
        )
    return (
        report,
        f"restored event {report['event']} from {report['archive']} "
        f"({report['entries']} log entries)",
    )


# -- helpers -------------------------------------------------------------------


def _dir(args: argparse.Namespace) -> Path:
    return dir_from(args, args.dir, DIR_ENV, default_archive_dir)


def _steps(args: argparse.Namespace, policy: ArchivePolicy | None) -> Steps:
    """A step log journalling into ``policy``'s directory (None: not journalled),
    with structured lines on stderr."""
    log_to_stderr("headcount.archive")
    return Steps(None if policy is None else policy.journal)


def _instant(text: str, end_of_day: bool) -> int:
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            if end_of_day:
                return int((datetime.combine(day.date(), time.max, UTC)).timestamp() * 1000)
            return int(day.timestamp() * 1000)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (YYYY-MM-DD), an ISO 8601 time with a zone, or epoch ms"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time zone (e.g. Z or +09:00)")
    return int(moment.timestamp() * 1000)


def _date_from(text: str) -> int:
    return _instant(text, end_of_day=False)


def _date_to(text: str) -> int:
    return _instant(text, end_of_day=True)
