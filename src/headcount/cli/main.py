"""The ``headcount`` command line.

Every subcommand takes ``--json`` for machine-readable output and
``--data-dir`` (default: ``$HEADCOUNT_DATA_DIR`` or the platform data dir).
Exit codes: 0 success, 1 a headcount error (message on stderr, or a JSON
``{"error": {...}}`` on stdout with ``--json``), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from headcount import __version__
from headcount.core.errors import HeadcountError, InputError
from headcount.core.hlc import DEFAULT_FUTURE_TOLERANCE_MS
from headcount.core.identity import Role, default_data_dir
from headcount.core.schema import load_schema_file
from headcount.replica.replica import Replica

from .archive import register as register_archive
from .backup import register as register_backup
from .pki import register as register_pki
from .sim import register as register_sim
from .token import register as register_token
from .util import command_group

Handler = Callable[[argparse.Namespace], Any]
TOLERANCE_ENV = "HEADCOUNT_FUTURE_TOLERANCE"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        result = args.handler(args)
    except HeadcountError as exc:
        return _fail(args, exc.code, exc.message)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", "interrupted")
    _emit(args, result)
    return 0


def _fail(args: argparse.Namespace, code: str, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        print(f"headcount: error: {message}", file=sys.stderr)
    return 1


def _emit(args: argparse.Namespace, result: Any) -> None:
    if result is None:
        return
    data, text = result
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    elif text:
        print(text)


# -- parser ------------------------------------------------------------------


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after the command name.

    The copy given to subcommands uses SUPPRESS defaults so that it does not
    overwrite a value given before the command. Two separate parsers are
    needed: argparse shares action objects between parents and children, and
    ``set_defaults`` would change both.
    """

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=default(None),
        help=f"device data directory (default: $HEADCOUNT_DATA_DIR or {default_data_dir()})",
    )
    common.add_argument("--json", action="store_true", default=default(False), help="print JSON")
    common.add_argument(
        "--future-tolerance",
        type=float,
        metavar="SECONDS",
        default=default(None),
        help="reject timestamps further ahead of this device's clock "
        f"(default: ${TOLERANCE_ENV} or {DEFAULT_FUTURE_TOLERANCE_MS // 1000})",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(defaults=False)
    parser = argparse.ArgumentParser(
        prog="headcount",
        description="Offline-first, peer-to-peer check-in replication for events.",
        epilog="Run `headcount COMMAND --help` for a command's options.",
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"headcount {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def cmd(
        group: Any, name: str, handler: Handler, help_: str, **kw: Any
    ) -> argparse.ArgumentParser:
        p = group.add_parser(name, parents=[common], help=help_, description=help_, **kw)
        p.set_defaults(handler=handler)
        return p

    p = cmd(
        sub,
        "demo",
        _demo,
        "live demo: gate processes syncing over TLS, an offline gate, a conflict",
    )
    p.add_argument("--gates", type=int, default=3, help="gate processes besides the admin (3)")
    p.add_argument("--participants", type=int, default=200, help="how many guests (default 200)")
    p.add_argument("--scans", type=int, default=60, help="check-ins to make (default 60)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for convergence (default 60)"
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="the quick in-process version: three replicas, no network",
    )

    p = cmd(sub, "init", _init, "create this device's identity and store")
    p.add_argument(
        "--role",
        choices=[r.value for r in Role],
        default="gate",
        help="what this device may do (default: gate)",
    )
    p.add_argument("--name", default="", help="a display name, e.g. the gate's location")

    ev = command_group(sub, "event", "create and list events")
    p = cmd(ev, "create", _event_create, "create an event")
    p.add_argument("event", help="event id")
    p.add_argument("--name", default="", help="display name (default: the id)")
    p.add_argument("--schema", type=Path, help="TOML file extending the default field policies")
    cmd(ev, "list", _event_list, "list the events on this device")

    pa = command_group(sub, "participants", "import, edit and list participants")
    p = cmd(
        pa,
        "import",
        _participants_import,
        "import participants from CSV (header: id and schema fields; all or nothing)",
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

    p = cmd(sub, "status", _status, "counts, version vector and open conflicts")
    p.add_argument("event", nargs="?", help="one event (default: all)")
    p = cmd(
        sub,
        "compact",
        _compact,
        "fold the log entries every peer acknowledged into the events' snapshots, now",
        epilog="Prints, per event, the log entries removed and those left. With a gate "
        "daemon running, the daemon does it (a run of its [compaction] job, journalled); "
        "a running relay compacts on its own schedule and is not interrupted.",
    )
    p.add_argument("events", nargs="*", metavar="EVENT", help="events to compact (default: all)")

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
    p = cmd(sub, "run", _run, "run the gate daemon (sync with peers; Ctrl-C or SIGTERM stops)")
    p.add_argument("--config", type=Path, help="TOML configuration (see docs/gate.md)")
    cmd(sub, "retry", _retry, "make a running gate daemon retry failing peers now")
    p = cmd(
        sub,
        "relay",
        _relay,
        "run a relay: store-and-forward hub for gates, HTTP API, metrics (SIGTERM stops)",
    )
    p.add_argument("--config", type=Path, help="TOML configuration (see docs/relay.md)")
    register_sim(sub, cmd)  # headcount sim ...
    register_pki(sub, cmd)  # headcount org init, device enroll/show/revoke/...
    register_token(sub, cmd)  # headcount token secret/issue (the relay's HTTP API)
    register_backup(sub, cmd)  # headcount backup create/list/verify/restore
    register_archive(sub, cmd)  # headcount archive run/query/list/prune/restore
    return parser


# -- handlers ------------------------------------------------------------------


def _daemon(
    args: argparse.Namespace, payload: dict[str, Any], timeout: float = 10.0
) -> dict[str, Any] | None:
    """Ask the gate daemon of this data directory, if one is running."""
    from headcount.service import control
    from headcount.service.daemon import CONTROL_SOCKET

    path = (args.data_dir or default_data_dir()) / CONTROL_SOCKET
    return control.request(path, payload, timeout=timeout)


def _run(args: argparse.Namespace) -> None:
    import asyncio

    from headcount.service.daemon import Daemon, load_config
    from headcount.service.housekeeping import log_to_stderr

    config = load_config(args.config, args.data_dir)
    log_to_stderr()  # scheduled backups and archiving: one JSON object per line
    daemon = Daemon(config)
    ready = asyncio.Event()

    async def main() -> None:
        task = asyncio.create_task(daemon.run(ready))
        await ready.wait()
        print(
            f"headcount gate {daemon.replica.device_id} listening on "
            f"{config.listen_host}:{daemon.node.port}",
            flush=True,
        )
        await task

    asyncio.run(main())


def _relay(args: argparse.Namespace) -> None:
    import asyncio
    import logging

    from headcount.relay.http.ops import JsonFormatter
    from headcount.relay.server import Relay, load_relay_config

    handler = logging.StreamHandler(sys.stderr)  # structured logs: one JSON object per line
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    relay = Relay(load_relay_config(args.config, args.data_dir))
    ready = asyncio.Event()

    async def main() -> None:
        task = asyncio.create_task(relay.run(ready))
        await ready.wait()
        host = relay.config.https[0]
        print(
            f"headcount relay {relay.replica.device_id} serving https://{host}:"
            f"{relay.https_port} (API, /sync, /metrics)",
            flush=True,
        )
        await task

    asyncio.run(main())


def _retry(args: argparse.Namespace) -> tuple[Any, str]:
    reply = _daemon(args, {"op": "retry"})
    if reply is None:
        raise HeadcountError(
            "no gate daemon is running for this data directory", code="not_running"
        )
    return reply, f"retrying {reply['retried']} peer addresses now"


def _open(args: argparse.Namespace, read_only: bool = False) -> Replica:
    return Replica.open(args.data_dir, read_only=read_only, future_tolerance_ms=_tolerance(args))


def _tolerance(args: argparse.Namespace) -> int:
    raw = args.future_tolerance
    source = "--future-tolerance"
    if raw is None:
        env = os.environ.get(TOLERANCE_ENV)
        if not env:
            return DEFAULT_FUTURE_TOLERANCE_MS
        source = f"${TOLERANCE_ENV}"
        try:
            raw = float(env)
        except ValueError:
            raise InputError(f"{source}={env!r} is not a number of seconds") from None
    if not 0 <= raw <= 86_400:
        raise InputError(f"{source} must be between 0 and 86400 seconds")
    return int(raw * 1000)


def _demo(args: argparse.Namespace) -> None:
    for name, value, low in (
        ("participants", args.participants, 2),
        ("gates", args.gates, 2),
        ("scans", args.scans, 1),
    ):
        if value < low:
            raise InputError(f"--{name} must be at least {low}")
    if args.timeout <= 0:
        raise InputError("--timeout must be positive")
    if args.in_process:
        from .demo import run_demo

        ok = run_demo(args.participants, args.seed)
    else:
        from .livedemo import maybe_reexec_in_namespace, run_live_demo

        code = maybe_reexec_in_namespace(args.argv)
        if code is not None:
            raise SystemExit(code)
        ok = run_live_demo(
            args.gates, args.participants, args.scans, args.seed, timeout=args.timeout
        )
    if not ok:
        raise HeadcountError("the replicas did not converge", code="diverged")


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
    with _open(args) as r:
        ev = r.create_event(args.event, args.name, schema)
        return {"event": ev.id, "name": ev.name}, f"created event {ev.id}"


def _event_list(args: argparse.Namespace) -> tuple[Any, str]:
    with _open(args, read_only=True) as r:
        events = [{"event": e, "name": r.event(e).name} for e in r.events()]
    return events, "\n".join(f"{e['event']}\t{e['name']}" for e in events) or "(no events)"


def _participants_import(args: argparse.Namespace) -> tuple[Any, str]:
    with _open(args) as r:
        report = r.import_csv(args.event, args.file)
    return report.to_dict(), (
        f"imported {report.rows} rows: {report.changed} participants created or changed"
    )


def _participants_list(args: argparse.Namespace) -> tuple[Any, str]:
    with _open(args, read_only=True) as r:
        people = [p.to_dict() for p in r.event(args.event).participants(args.deleted)]
    lines = [
        f"{p['id']}\t{p.get('name') or ''}" + ("\t(deleted)" if p.get("deleted") else "")
        for p in people
    ]
    return people, "\n".join(lines) or "(no participants)"


def _participants_show(args: argparse.Namespace) -> tuple[Any, str]:
    with _open(args, read_only=True) as r:
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
    with _open(args) as r:
        changed = r.upsert_participant(args.event, args.participant, fields)
        data = r.participant(args.event, args.participant).to_dict()
    return {"changed": changed, "participant": data}, "updated" if changed else "no change"


def _participants_delete(args: argparse.Namespace) -> tuple[Any, str]:
    with _open(args) as r:
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
        data = _daemon(
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
            with _open(args) as r:
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
    with _open(args, read_only=True) as r:
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
    with _open(args) as r:
        r.set_config(args.event, args.key, _json_or_text(args.value))
        cfg = r.event(args.event).config()
    return cfg, f"{args.key} = {json.dumps(cfg.get(args.key))}"


def _config_show(args: argparse.Namespace) -> tuple[Any, str]:
    with _open(args, read_only=True) as r:
        cfg = r.event(args.event).config()
    return cfg, "\n".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in cfg.items())


def _status(args: argparse.Namespace) -> tuple[Any, str]:
    running = _daemon(args, {"op": "status"})
    peers: list[dict[str, Any]] | None = None
    if running is not None:
        device, peers = running["device"], running["peers"]
        statuses = [s for s in running["events"] if not args.event or s["event"] == args.event]
        logs: list[dict[str, Any]] = running.get("log", [])
    else:
        from headcount.replica.compaction import log_size

        with _open(args, read_only=True) as r:
            events = [args.event] if args.event else r.events()
            device = {"device_id": r.device_id, "role": r.role.value, "name": r.identity.name}
            statuses = [r.status(e).to_dict() for e in events]
            logs = [log_size(r, e).to_dict() for e in events]
    chosen = {s["event"] for s in statuses}
    logs = [entry for entry in logs if entry["event"] in chosen]
    sizes = {entry["event"]: entry for entry in logs}
    lines = [f"device {device['device_id']} ({device['role']}, {device['name']})"]
    lines += [_event_line(s, sizes.get(s["event"])) for s in statuses]
    jobs = running.get("jobs") if running is not None else None
    lines += [_job_line(name, job) for name, job in (jobs or {}).items()]
    lines.append("gate daemon: not running" if peers is None else f"peers: {len(peers)}")
    for p in peers or []:
        lines.append(
            f"  {p.get('peer') or p.get('address')}: {p['status']}, "
            f"pending {p.get('pending_entries', '-')}, last sync {p.get('last_sync') or '-'}, "
            f"retries {p.get('retries', p.get('failures', 0))}"
            + (f", error: {p['error']}" if p.get("error") else "")
        )
    data = {"device": device, "events": statuses, "peers": peers}
    if logs:  # per event: entries in the log, entries folded by compaction
        data["log"] = logs
    if jobs is not None:  # a running daemon's scheduled backups, archiving, compaction
        data["jobs"] = jobs
    return data, "\n".join(lines)


def _event_line(status: dict[str, Any], log: dict[str, Any] | None) -> str:
    """One event of ``headcount status``: counts, vector clock, log size."""
    s = status
    line = (
        f"{s['event']}: {s['participants']} participants, {s['checked_in']} checked in, "
        f"{s['checked_out']} checked out, {s['scans']} scans, "
        f"{s['open_conflicts']} open conflicts; "
        f"vector clock {json.dumps(s['version_vector'])}"
    )
    if log is not None:
        line += f"; log {log['log_entries']} entries ({log['folded']} folded)"
    return line


def _job_line(name: str, job: dict[str, Any]) -> str:
    """``backup: last run 2026-…Z ok (full …), next 2026-…Z`` (a scheduled job)."""
    last = job.get("last")
    if last is None:
        done = "not run yet"
    elif last["ok"]:
        if name == "compaction":
            what = f"{last.get('removed', 0)} log entries removed"
            if last.get("failed"):
                what += f"; failed: {', '.join(f['event'] for f in last['failed'])}"
        else:
            what = last.get("backup") or f"{len(last.get('archived', []))} events archived"
        done = f"last run {last['started']} ok ({what})"
    else:
        error = last["error"]
        done = f"last run {last['started']} FAILED: {error['code']}: {error['message']}"
    return f"{name}: {done}, {job['failures']} of {job['runs']} runs failed, next {job['next_due']}"


COMPACT_TIMEOUT_S = 600.0  # a daemon compacting many large events


def _compact(args: argparse.Namespace) -> tuple[Any, str]:
    """Compact now: through the gate daemon if one runs here (a run of its
    compaction job), else in this process. A relay holding the directory is
    a clear error: it compacts on its own schedule."""
    import asyncio

    from headcount.core.errors import StoreError
    from headcount.replica.compaction import events_to_compact
    from headcount.service.housekeeping import compaction_report, compaction_run

    payload: dict[str, Any] = {"op": "compact"}
    if args.events:
        payload["events"] = args.events
    data = _daemon(args, payload, timeout=COMPACT_TIMEOUT_S)
    if data is None:
        try:
            replica = _open(args)
        except StoreError as exc:
            if exc.code != "locked":
                raise
            raise StoreError(
                f"{args.data_dir or default_data_dir()} is held by another headcount process "
                "with no control socket (a relay, or a command still running). A relay "
                "compacts on its [compaction] schedule; stop the process to compact now.",
                code="locked",
            ) from None
        with replica:
            chosen = events_to_compact(replica, args.events or None)
            detail = asyncio.run(compaction_run(replica, chosen))
            data = compaction_report(replica, chosen, detail)
    lines = [
        f"{e['event']}: {e['removed']} log entries removed, {e['log_entries']} left "
        f"({e['folded']} folded in all)"
        for e in data["events"]
    ]
    lines += [f"{f['event']}: FAILED: {f['code']}: {f['message']}" for f in data["failed"]]
    if data["failed"]:
        failed = ", ".join(f["event"] for f in data["failed"])
        raise HeadcountError(
            f"compaction failed for {failed}: " + "; ".join(lines), code="compaction_failed"
        )
    return data, "\n".join(lines) or "(no events)"


def _conflicts_list(args: argparse.Namespace) -> tuple[Any, str]:
    with _open(args, read_only=True) as r:
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
    with _open(args) as r:
        r.resolve_conflict(args.event, args.conflict, **kw)
    return {"resolved": args.conflict}, f"resolved {args.conflict}"


if __name__ == "__main__":
    sys.exit(main())
