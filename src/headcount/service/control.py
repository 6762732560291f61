"""The daemon's local control socket: JSON lines over a Unix socket.

While the gate daemon runs it holds the data directory, so the CLI talks to
it here to record scans and read status. The socket lives in the device's
data directory (owner-only) and accepts one JSON request per line:

``{"op": "status"}``, ``{"op": "scan", "kind": "in"|"out", "event": ..., "who": ...,
"gate"?, "method"?, "scan_id"?, "at_ms"?, "allow_unknown"?}``, ``{"op": "retry"}``,
``{"op": "upsert", "event", "participant", "fields"}``, ``{"op": "view", "event"}``,
``{"op": "compact", "events"?: [...]}`` (a run of the compaction job now, on
the loop's thread like the scheduled ones; all events by default),
``{"op": "revoke", "device", "serial"?: hex, "reason"?}`` (an admin daemon
signs a revocation record, keeps, enforces and gossips it),
``{"op": "import_revocations", "records": [{"body", "sig", "cert"}, ...]}``
(records signed elsewhere, base64, at most 32 per request) and
``{"op": "revocations"}`` (the records held, the devices revoked, what was refused).

Every reply is one JSON line: the result, or ``{"error": {"code", "message"}}``.
A scan is acknowledged only after the replica made it durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Protocol

from headcount.core.errors import HeadcountError, InputError, StoreError
from headcount.net.node import Node
from headcount.pki.revocation_file import record_from_dict
from headcount.pki.revocation_record import SignedRevocation
from headcount.replica.compaction import events_to_compact, log_size
from headcount.replica.replica import Replica

from .housekeeping import Housekeeping, compaction_report

MAX_REQUEST = 64 * 1024
MAX_IMPORT_RECORDS = 32  # revocation records per import request (well within MAX_REQUEST)


class _Daemon(Protocol):
    replica: Replica
    node: Node
    housekeeping: Housekeeping

    def revoke(self, device_id: str, serial: int | None, reason: str) -> dict[str, Any]: ...
    def import_revocations(self, records: list[SignedRevocation]) -> dict[str, Any]: ...
    def revocation_status(self) -> dict[str, Any]: ...


class ControlServer:
    def __init__(self, daemon: _Daemon, path: Path) -> None:
        self.daemon = daemon
        self.path = path
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if not _alive(self.path):
                self.path.unlink()  # a stale socket from a crashed daemon
        self._server = await asyncio.start_unix_server(
            self._serve, str(self.path), limit=MAX_REQUEST
        )
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await self.respond(line)
                writer.write(json.dumps(reply, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def respond(self, line: bytes) -> dict[str, Any]:
        """One request -> one reply; never raises. ``compact`` is awaited (a
        run yields to the sessions between events); every other op is
        answered at once by :meth:`handle`."""
        try:
            request = json.loads(line)
        except ValueError:
            return self.handle(line)
        if not isinstance(request, dict) or request.get("op") != "compact":
            return self.handle(line)
        try:
            return await self._compact(request)
        except HeadcountError as exc:
            return {"error": {"code": exc.code, "message": exc.message}}

    async def _compact(self, request: dict[str, Any]) -> dict[str, Any]:
        """Compact the request's ``events`` (default all) now; per event the
        entries removed and the log left (as ``headcount compact`` prints).

        Raises:
            InputError: ``events`` is not a list of event ids.
            NotFoundError: an event is not on this device (nothing compacted).
            HeadcountError: the run failed (its code and message).
        """
        events = request.get("events")
        if events is not None and (
            not isinstance(events, list) or not all(isinstance(e, str) for e in events)
        ):
            raise InputError("compact: events must be a list of event ids")
        replica = self.daemon.replica
        chosen = events_to_compact(replica, events)
        outcome = await self.daemon.housekeeping.compact_now(chosen)
        if outcome.error is not None:
            raise HeadcountError(outcome.error["message"], code=outcome.error["code"])
        report = compaction_report(replica, chosen, outcome.detail)
        return {"run": outcome.run, "duration_s": round(outcome.duration_s, 3), **report}

    def handle(self, line: bytes) -> dict[str, Any]:
        """One request -> one reply, at once; never raises."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise InputError("a request is a JSON object")
            return self._dispatch(request)
        except HeadcountError as exc:
            return {"error": {"code": exc.code, "message": exc.message}}
        except (ValueError, TypeError) as exc:
            return {"error": {"code": "invalid_request", "message": str(exc)}}

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        replica, node = self.daemon.replica, self.daemon.node
        op = request.get("op")
        if op == "status":
            return {
                "device": {
                    "device_id": replica.device_id,
                    "role": replica.role.value,
                    "name": replica.identity.name,
                },
                "events": [replica.status(e).to_dict() for e in replica.events()],
                "log": [log_size(replica, e).to_dict() for e in replica.events()],
                "peers": node.status(),
                "listen_port": node.port,
                "revocations": self.daemon.revocation_status(),
                "refused": refusal_status(replica),
            }
        if op == "retry":
            node.retry_now()
            return {"retried": len(node.dialers)}
        if op == "scan":
            kind = request.get("kind")
            if kind not in ("in", "out"):
                raise InputError("scan kind must be in or out")
            event, who = request.get("event"), request.get("who")
            if not isinstance(event, str) or not isinstance(who, str):
                raise InputError("scan needs event and who")
            options = {
                k: request[k]
                for k in ("gate", "method", "scan_id", "at_ms", "allow_unknown")
                if k in request
            }
            fn = replica.check_in if kind == "in" else replica.check_out
            result = fn(event, who, **options)  # durable when it returns
            node.local_write(event)
            return {
                "recorded": result.recorded,
                "scan": result.scan.to_dict(),
                "attendance": result.attendance.to_dict(),
            }
        if op == "upsert":
            event, pid, fields = (
                request.get("event"),
                request.get("participant"),
                request.get("fields"),
            )
            if (
                not isinstance(event, str)
                or not isinstance(pid, str)
                or not isinstance(fields, dict)
            ):
                raise InputError("upsert needs event, participant and fields")
            changed = replica.upsert_participant(event, pid, fields)
            node.local_write(event)
            return {"changed": changed}
        if op == "view":  # everything a demo or a test compares between gates
            event = request.get("event")
            if not isinstance(event, str):
                raise InputError("view needs an event")
            ev = replica.event(event)
            return {
                "scans": sorted(ev.doc.scans),
                "attendance": [a.to_dict() for a in ev.attendance_list()],
                "participants": [p.to_dict() for p in ev.participants(include_deleted=True)],
                "conflicts": [c.to_dict() for c in ev.conflicts()],
                "version_vector": replica.version_vector(event),
            }
        if op in ("revoke", "import_revocations", "revocations"):
            return self._revocations(op, request)
        raise InputError(f"unknown op {op!r}")

    def _revocations(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        """``revoke``, ``import_revocations`` and ``revocations``.

        Raises:
            InputError: a malformed request.
            HeadcountError: the daemon refused (``not_admin``, a refused record).
        """
        if op == "revocations":
            return self.daemon.revocation_status()
        if op == "import_revocations":
            raw = request.get("records")
            if not isinstance(raw, list) or len(raw) > MAX_IMPORT_RECORDS:
                raise InputError(f"records must be a list of at most {MAX_IMPORT_RECORDS}")
            return self.daemon.import_revocations([record_from_dict(r) for r in raw])
        device, serial, reason = (request.get(k) for k in ("device", "serial", "reason"))
        if not isinstance(device, str) or not isinstance(reason or "", str):
            raise InputError("revoke needs a device id (and optionally a serial and a reason)")
        if serial is not None:
            if not isinstance(serial, str):
                raise InputError("serial must be a hex string")
            try:
                serial = int(serial, 16)
            except ValueError:
                raise InputError(f"serial {serial!r} is not a hex number") from None
        return self.daemon.revoke(device, serial, reason or "")


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def request(path: Path, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any] | None:
    """Send one request to a running daemon; None if no daemon listens there.

    Raises:
        HeadcountError: the daemon answered with an error (same code).
        StoreError: the daemon accepted the connection but did not answer.
    """
    if not path.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            return None
        try:
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise StoreError(f"the gate daemon did not answer: {exc}") from None
    reply = json.loads(data or b"{}")
    if "error" in reply:
        raise HeadcountError(reply["error"]["message"], code=reply["error"]["code"])
    return reply


def refusal_status(replica: Replica) -> dict[str, Any]:
    """Peers' entries refused for what they do (core/validate.py): counts by
    reason, the latest few, and the devices quarantined per event."""
    return {
        "counts": dict(replica.refused),
        "latest": [
            {
                "event": v.event,
                "device": v.device,
                "seq": v.seq,
                "reason": v.reason,
                "detail": v.detail,
            }
            for v in replica.refusals
        ],
        "quarantined": {
            e: sorted(q) for e in replica.events() if (q := replica.store.quarantined(e))
        },
    }
