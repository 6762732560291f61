"""``headcount`` commands that run or talk to long-running processes: the live
demo, the gate daemon (``run``, ``retry``), the relay, ``status`` and ``compact``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from headcount.core.errors import HeadcountError, InputError
from headcount.core.identity import default_data_dir

from .util import Command, daemon_request, open_replica

COMPACT_TIMEOUT_S = 600.0  # a daemon compacting many large events


def register(sub: Any, cmd: Command) -> None:
    """Add the process commands with the main CLI's ``cmd`` helper."""
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


def _run(args: argparse.Namespace) -> None:
    from headcount.service.daemon import Daemon, load_config
    from headcount.service.housekeeping import log_to_stderr
    from headcount.service.runner import serve

    config = load_config(args.config, args.data_dir)
    log_to_stderr()  # scheduled backups and archiving: one JSON object per line
    daemon = Daemon(config)
    serve(
        daemon.run,
        lambda: (
            f"headcount gate {daemon.replica.device_id} listening on "
            f"{config.listen_host}:{daemon.node.port}"
        ),
    )


def _relay(args: argparse.Namespace) -> None:
    import logging

    from headcount.relay.http.ops import JsonFormatter
    from headcount.relay.server import Relay, load_relay_config
    from headcount.service.runner import serve

    handler = logging.StreamHandler(sys.stderr)  # structured logs: one JSON object per line
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    relay = Relay(load_relay_config(args.config, args.data_dir))

    def banner() -> str:
        text = (
            f"headcount relay {relay.replica.device_id} serving "
            f"https://{relay.config.https[0]}:{relay.https_port} (API, /sync)"
        )
        if relay.config.ops is not None:
            text += f"; operations http://{relay.config.ops[0]}:{relay.ops_port} (/metrics)"
        return text

    serve(relay.run, banner)


def _retry(args: argparse.Namespace) -> tuple[Any, str]:
    reply = daemon_request(args, {"op": "retry"})
    if reply is None:
        raise HeadcountError(
            "no gate daemon is running for this data directory", code="not_running"
        )
    return reply, f"retrying {reply['retried']} peer addresses now"


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


def _status(args: argparse.Namespace) -> tuple[Any, str]:
    running = daemon_request(args, {"op": "status"})
    peers: list[dict[str, Any]] | None = None
    if running is not None:
        device, peers = running["device"], running["peers"]
        statuses = [s for s in running["events"] if not args.event or s["event"] == args.event]
        logs: list[dict[str, Any]] = running.get("log", [])
    else:
        from headcount.replica.compaction import log_size

        with open_replica(args, read_only=True) as r:
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
    refused = running.get("refused") if running is not None else None
    if refused is not None:
        lines += _refused_lines(refused)
    data = {"device": device, "events": statuses, "peers": peers}
    if refused is not None:  # peers' entries refused for what they do; quarantined devices
        data["refused"] = refused
    if logs:  # per event: entries in the log, entries folded by compaction
        data["log"] = logs
    if jobs is not None:  # a running daemon's scheduled backups, archiving, compaction
        data["jobs"] = jobs
    return data, "\n".join(lines)


def _refused_lines(refused: dict[str, Any]) -> list[str]:
    """What peers sent that this daemon refused, and whom it quarantined."""
    counts = refused.get("counts") or {}
    lines = []
    if counts:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
        lines.append(f"refused peer entries: {sum(counts.values())} ({reasons})")
        for v in refused.get("latest", [])[-3:]:
            lines.append(f"  {v['device']} entry {v['seq']} of {v['event']}: {v['reason']}")
    for event, devices in sorted((refused.get("quarantined") or {}).items()):
        lines.append(f"quarantined on {event}: {', '.join(devices)}")
    return lines


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
    data = daemon_request(args, payload, timeout=COMPACT_TIMEOUT_S)
    if data is None:
        try:
            replica = open_replica(args)
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
