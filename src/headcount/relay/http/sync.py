"""``POST /api/attendance/sync``: the request parsed, authorised and applied.

How a contract record becomes scans (reference ``004_1e7dd788cc7acd62.txt``):

1. A record is the attendance of one participant at one event. The
   participant is the token's user (``sub``); an ``admin`` token may name
   another participant with an explicit ``userId`` field (a ``user`` token
   may only repeat its own ``sub`` there). ``facilityId`` is the event id.
2. ``clockIn`` becomes a check-in scan at that time, ``clockOut`` (optional,
   may be null) a check-out scan. Both are recorded with ``device=deviceId``,
   ``gate="cloud-api"`` and ``method="manual"``.
3. ``id`` (a UUID v4) is the idempotency key of the check-in scan; the
   check-out scan's key is derived from it (sha256 of ``id + ":out"``, forced
   to UUID v4). A record without ``id`` gets one derived from user, device
   and ``clientTimestamp``, so a resend without ids is recognised too; the
   response reports that derived id. Besides, the replica treats a scan of
   the same device, time, participant and kind as a repeat, which catches
   resends with a fresh id (``clientTimestamp`` is the clock-in time in the
   contract's examples).
4. Per record, ``action`` is ``created`` (every scan new), ``updated`` (some
   new, e.g. a ``clockOut`` added to a record synced before) or
   ``duplicate`` (nothing new).
5. A key already used for a *different* scan (another user's record, other
   times) changes nothing and is reported in ``data.conflicts`` with
   ``resolution: "server_wins"``: scans are an append-only audit set, so the
   server's record always stands, whatever ``conflictResolutionStrategy``
   asks for. An unknown event or participant, or a timestamp further in the
   future than the replica's tolerance, is an item of ``data.errors``
   (``unknown_event``, ``unknown_participant``, ``future_timestamp``); the
   other records still sync.
6. Anything wrong with the request as a whole (not JSON, wrong shapes,
   naive timestamps, too many records, a record for an event the token does
   not grant, another user's record on a ``user`` token) raises
   :class:`ApiError` before anything is written.

``syncVersion``, ``conflictResolutionStrategy`` and unknown fields (e.g.
``clockInLatitude``) are validated where known and otherwise ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from headcount.core.errors import HeadcountError, InputError, NotFoundError
from headcount.core.hlc import pack
from headcount.core.ids import check_id, parse_scan_id
from headcount.relay.tokens import Claims, UserRole
from headcount.replica.replica import Replica

from . import strictjson
from .errors import ApiError

GATE = "cloud-api"
METHOD = "manual"
# The API client's deviceId (a phone's, seed 004), not a headcount device id
# (those are checked by core.identity.check_device_id).
MAX_DEVICE_LEN = 64
STRATEGIES = frozenset({"server_wins", "client_wins", "manual"})
MAX_SHOWN = 64  # characters of a client's value quoted back in an error message


@dataclass(frozen=True, slots=True)
class SyncRecord:
    """One validated record of a sync request (times in ms since the epoch)."""

    index: int
    key: str
    event: str
    user: str | None
    device: str
    clock_in_ms: int
    clock_out_ms: int | None
    client_ms: int


@dataclass(slots=True)
class SyncResult:
    """Per-record outcomes, in request order."""

    synced: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, timestamp: str) -> dict[str, Any]:
        """The contract's response body."""
        return {
            "success": True,
            "synced": len(self.synced),
            "conflicts": len(self.conflicts),
            "errors": len(self.errors),
            "timestamp": timestamp,
            "data": {"synced": self.synced, "conflicts": self.conflicts, "errors": self.errors},
        }


# -- parsing -------------------------------------------------------------------


def parse_request(body: bytes, max_records: int) -> list[SyncRecord]:
    """The records of a request body, every one validated.

    Raises:
        ApiError: 400 ``malformed_json`` (not JSON, non-finite numbers, nested
            deeper than :data:`.strictjson.MAX_DEPTH`) / ``invalid_request`` /
            ``invalid_record``; 413 ``too_many_records`` above ``max_records``.
    """
    doc = strictjson.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise ApiError(400, "invalid_request", 'the body must be an object with a "records" list')
    records = doc["records"]
    if len(records) > max_records:
        raise ApiError(
            413, "too_many_records", f"{len(records)} records; at most {max_records} per request"
        )
    return [_record(i, r) for i, r in enumerate(records)]


def _record(index: int, raw: object) -> SyncRecord:
    where = f"records[{index}]"
    if not isinstance(raw, dict):
        raise _bad(where, "a record must be an object")
    try:
        event = check_id("event", _str(raw, "facilityId", where))
        device = check_id("device", _str(raw, "deviceId", where))
        if len(device) > MAX_DEVICE_LEN:
            raise InputError(f"deviceId is longer than {MAX_DEVICE_LEN} characters")
        user = raw.get("userId")
        if user is not None:
            user = check_id("participant", user)
    except InputError as exc:
        raise _bad(where, exc.message) from None
    clock_in = _time(raw, "clockIn", where)
    clock_out = None if raw.get("clockOut") is None else _time(raw, "clockOut", where)
    client_ms = _time(raw, "clientTimestamp", where)
    if clock_out is not None and clock_out < clock_in:
        raise _bad(where, "clockOut is before clockIn")
    version = raw.get("syncVersion", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _bad(where, "syncVersion must be a positive integer")
    strategy = raw.get("conflictResolutionStrategy", "server_wins")
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise _bad(where, f"conflictResolutionStrategy must be one of {sorted(STRATEGIES)}")
    key = raw.get("id")
    if key is not None:
        if not isinstance(key, str) or len(key) > MAX_SHOWN:
            raise _bad(where, "id must be a UUID v4 string")
        try:
            key = parse_scan_id(key)
        except InputError as exc:
            raise _bad(where, f"id: {exc.message}") from None
    return SyncRecord(index, key or "", event, user, device, clock_in, clock_out, client_ms)


def _str(raw: Mapping[str, Any], name: str, where: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise _bad(where, f"{name} must be a string")
    return value


def _time(raw: Mapping[str, Any], name: str, where: str) -> int:
    """An ISO 8601 timestamp with a timezone, in ms since the epoch."""
    text = _str(raw, name, where)
    shown = repr(text) if len(text) <= MAX_SHOWN else repr(text[:MAX_SHOWN]) + "..."
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(where, f"{name} {shown} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise _bad(where, f"{name} {shown} has no timezone")
    ms = int(parsed.timestamp() * 1000)
    if ms <= 0:
        raise _bad(where, f"{name} {shown} is before 1970")
    return ms


def _bad(where: str, message: str) -> ApiError:
    return ApiError(400, "invalid_record", f"{where}: {message}")


# -- authorisation ---------------------------------------------------------------


def authorize(records: list[SyncRecord], claims: Claims) -> list[SyncRecord]:
    """The records with their participant and idempotency key filled in.

    Raises:
        ApiError: 403 ``forbidden`` (a ``user`` token naming another
            ``userId``) or ``event_forbidden`` (an event the token lacks).
    """
    out = []
    for r in records:
        user = r.user or claims.user
        if user != claims.user and claims.role is not UserRole.ADMIN:
            raise ApiError(
                403, "forbidden", f"records[{r.index}]: only admins write other users' records"
            )
        if not claims.may_access(r.event):
            raise ApiError(
                403, "event_forbidden", f"records[{r.index}]: the token does not grant {r.event!r}"
            )
        key = r.key or _derive(f"{user}\0{r.device}\0{r.client_ms}")
        out.append(dataclasses.replace(r, key=key, user=user))
    return out


def _derive(text: str) -> str:
    """A deterministic UUID v4 from ``text``."""
    return str(uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=4))


def checkout_key(key: str) -> str:
    """The idempotency key of a record's check-out scan."""
    return _derive(f"{key}:out")


# -- applying ------------------------------------------------------------------------


def apply(replica: Replica, records: list[SyncRecord]) -> SyncResult:
    """Record every authorised record's scans; per-record outcomes.

    Each record is checked completely (event, participant, future times,
    key reuse) before its first scan is written, so a record is written whole
    or not at all. Store failures propagate (the caller answers 500).
    """
    result = SyncResult()
    for r in records:
        problem = _precheck(replica, r)
        if problem is not None:
            kind, item = problem
            (result.conflicts if kind == "conflict" else result.errors).append(item)
            continue
        assert r.user is not None  # filled in by authorize()
        kw = {"gate": GATE, "method": METHOD, "device": r.device}
        new = [replica.check_in(r.event, r.user, scan_id=r.key, at_ms=r.clock_in_ms, **kw).recorded]
        if r.clock_out_ms is not None:
            out_key = checkout_key(r.key)
            res = replica.check_out(r.event, r.user, scan_id=out_key, at_ms=r.clock_out_ms, **kw)
            new.append(res.recorded)
        action = "created" if all(new) else "updated" if any(new) else "duplicate"
        result.synced.append({"id": r.key, "action": action})
    return result


def _precheck(replica: Replica, r: SyncRecord) -> tuple[str, dict[str, Any]] | None:
    """Why ``r`` cannot be written: ``("error" | "conflict", item)``, or None."""
    assert r.user is not None
    if r.event not in replica.events():
        return "error", _item(r, "unknown_event", f"no event {r.event!r}")
    try:
        if replica.participant(r.event, r.user).deleted:
            raise NotFoundError("deleted")
    except NotFoundError:
        return "error", _item(r, "unknown_participant", f"no participant {r.user!r} in {r.event!r}")
    scans = [("in", r.key, r.clock_in_ms)]
    if r.clock_out_ms is not None:
        scans.append(("out", checkout_key(r.key), r.clock_out_ms))
    try:
        for _, _, at_ms in scans:
            replica.clock.check(pack(at_ms), replica.wall_clock())
    except HeadcountError as exc:
        return "error", _item(r, exc.code, exc.message)
    known = replica.event(r.event).doc.scans
    for kind, key, at_ms in scans:
        old = known.get(key)
        if old is not None and (old.participant, old.kind.value, old.ts_ms) != (
            r.user,
            kind,
            at_ms,
        ):
            item = _item(r, "conflict", "the id was already used for a different record")
            return "conflict", {**item, "resolution": "server_wins"}
    return None


def _item(r: SyncRecord, code: str, message: str) -> dict[str, Any]:
    return {"id": r.key, "index": r.index, "code": code, "message": message}
