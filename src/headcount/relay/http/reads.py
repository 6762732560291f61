"""The read endpoints of the cloud bridge HTTP API, and conflict resolution.

Routes (added to the app by :func:`add_read_routes`, which
:func:`.api.create_app` calls)::

    GET  /api/events/{event}/attendance?participant=&since=&limit=&cursor=
    GET  /api/events/{event}/participants?participant=&since=&limit=&cursor=&deleted=
    GET  /api/events/{event}/devices                      (admin only)
    GET  /api/events/{event}/conflicts                    (admin only)
    POST /api/events/{event}/conflicts/{id}/resolve       (admin only)

Every request is authenticated like the sync endpoint (bearer JWT, 401
``missing_token`` / ``invalid_token`` / ``token_expired``), then the event
is checked against the token (403 ``event_forbidden``, before any existence
check so a token cannot probe for other events), then that the relay holds
it (404 ``unknown_event``). A ``user`` token sees only its own participant
and attendance record (participant id == ``sub``; asking for another with
``participant=`` is 403 ``forbidden``) and may not use the admin-only routes
(403 ``forbidden``). Reads are not counted by the sync rate limit.

Pagination and change feeds
---------------------------

Lists are ordered by participant id. ``limit`` defaults to 100 (1..1000,
otherwise 400 ``invalid_parameter``). A page that is not the last carries
``page.nextCursor``; passing it back as ``cursor`` (with the same filters)
yields the next page. Cursors are opaque: base64url of a small JSON object
``{"v": 1, "k": kind, "e": event, "a": last id, "w": watermark}``; a cursor
that does not decode, or was made for another list or event, is 400
``invalid_cursor``.

Each response also carries ``changes.next``, an opaque *change token*: the
highest change position the listing covered (its *watermark*, fixed at the
first page and carried in the cursor, so every page of one walk reports the
same token). Passing it as ``since`` later lists only records that changed
after it:

* attendance: a participant whose scans include one with position
  ``(hlc, scan id)`` greater than the token's; the record is returned whole
  (every scan), so a client replaces what it held;
* participants: a participant with a register entry (any field, or the
  deletion flag) whose ``(hlc, dot)`` is greater than the token's.

A record changed while a walk is under way may appear again in the next
change feed (at least once, never lost) -- with one caveat: positions are
hybrid logical clock values assigned where the write happened, so an entry
written by a device that was offline and reaches the relay *after* a client
took a token with a higher position is not reported by ``since``. Clients
that need every late scan should periodically re-read without ``since``.

Device status
-------------

For each device the relay knows for the event (authors of entries, and
peers that acknowledged a version vector): ``authored`` (entries of that
device the relay holds), ``has`` (entries the device acknowledged holding),
``pending`` (entries the relay holds that the device has not acknowledged:
the relay's version vector minus its acknowledgement, per author),
``lastAckAt`` / ``lagMs`` (when the acknowledgement was recorded, if the
store keeps it, and how long ago). A device that never acknowledged has
``acknowledged: false`` and everything pending.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from headcount.core.errors import InputError, NotFoundError, PermissionDeniedError
from headcount.core.event import Event
from headcount.core.eventdoc import PARTICIPANT, record_key
from headcount.core.model import Attendance, Participant
from headcount.relay.tokens import Claims, UserRole
from headcount.replica.replica import Replica

from .app import _STATE, _authenticate, _iso, _read_body
from .sync import ApiError

PREFIX = "/api/events/{event}"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CURSOR_VERSION = 1

Position = tuple[int, str]
"""A change position: (hlc, tie-breaking id)."""


def add_read_routes(app: web.Application) -> None:
    """Register the read and resolve routes on an app made by ``create_app``."""
    app.router.add_get(f"{PREFIX}/attendance", _attendance)
    app.router.add_get(f"{PREFIX}/participants", _participants)
    app.router.add_get(f"{PREFIX}/devices", _devices)
    app.router.add_get(f"{PREFIX}/conflicts", _conflicts)
    app.router.add_post(f"{PREFIX}/conflicts/{{conflict}}/resolve", _resolve)
    app.router.add_get("/api/audit", _audit_trail)


# -- common steps ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    replica: Replica
    claims: Claims
    event: str
    now_ms: int

    @property
    def admin(self) -> bool:
        return self.claims.role is UserRole.ADMIN


def _context(request: web.Request, *, admin_only: bool = False) -> _Ctx:
    """Authenticate, authorise the event (and role), and check the event exists.

    Raises:
        ApiError: 401, 403 ``event_forbidden`` / ``forbidden``, 404 ``unknown_event``.
    """
    state = request.app[_STATE]
    now = state.clock()
    claims = _authenticate(state.tokens, request.headers.get("Authorization"), now)
    event = request.match_info["event"]
    if not claims.may_access(event):
        raise ApiError(403, "event_forbidden", f"the token does not grant {event!r}")
    if admin_only and claims.role is not UserRole.ADMIN:
        raise ApiError(403, "forbidden", "this endpoint needs an admin token")
    if event not in state.replica.events():
        raise ApiError(404, "unknown_event", f"no event {event!r}")
    return _Ctx(state.replica, claims, event, now)


def _ok(request: web.Request, data: Any, **extra: Any) -> web.Response:
    return web.json_response({"success": True, "data": data, **extra})


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(400, "invalid_parameter", f"limit must be an integer from 1 to {MAX_LIMIT}")
    return value


def _wanted_participant(request: web.Request, ctx: _Ctx) -> str | None:
    """The participant filter: forced to ``sub`` for a ``user`` token."""
    asked = request.query.get("participant") or None
    if ctx.admin:
        return asked
    if asked is not None and asked != ctx.claims.user:
        raise ApiError(403, "forbidden", "a user token sees only its own records")
    return ctx.claims.user


# -- opaque tokens ---------------------------------------------------------------


def _encode(obj: dict[str, Any]) -> str:
    raw = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        obj = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(obj, dict) or obj.get("v") != _CURSOR_VERSION:
        return None
    return obj


def _position(value: object) -> Position | None:
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
    ):
        return (value[0], value[1])
    return None


def encode_since(pos: Position) -> str:
    """The opaque change token of a position."""
    return _encode({"v": _CURSOR_VERSION, "p": list(pos)})


def _since(request: web.Request) -> Position | None:
    raw = request.query.get("since")
    if raw is None or raw == "":
        return None
    obj = _decode(raw)
    pos = _position(obj.get("p")) if obj else None
    if pos is None:
        raise ApiError(400, "invalid_cursor", "since is not a change token of this API")
    return pos


@dataclass(frozen=True, slots=True)
class _Page:
    after: str | None
    watermark: Position | None


def _cursor(request: web.Request, kind: str, event: str) -> _Page:
    raw = request.query.get("cursor")
    if raw is None or raw == "":
        return _Page(None, None)
    obj = _decode(raw)
    bad = ApiError(400, "invalid_cursor", f"cursor is not a cursor of this {kind} list")
    if obj is None or obj.get("k") != kind or obj.get("e") != event:
        raise bad
    after, mark = obj.get("a"), obj.get("w")
    watermark = _position(mark)
    if not isinstance(after, str) or (mark is not None and watermark is None):
        raise bad
    return _Page(after, watermark)


# -- listing -----------------------------------------------------------------------


_Item = tuple[str, Position | None, dict[str, Any]]
"""(participant id, highest change position, JSON body)."""


def _listing(
    request: web.Request,
    ctx: _Ctx,
    kind: str,
    items: Callable[[str | None], Iterable[_Item]],
) -> web.Response:
    """Filter by ``since``, paginate by id after the cursor, add the change token."""
    limit = _limit(request)
    since = _since(request)
    page = _cursor(request, kind, ctx.event)
    who = _wanted_participant(request, ctx)
    rows = sorted(items(who), key=lambda r: r[0])
    if page.watermark is not None:
        watermark: Position | None = page.watermark
    else:
        marks = [pos for _, pos, _ in rows if pos is not None]
        watermark = max(marks) if marks else since
    if since is not None:
        rows = [r for r in rows if r[1] is not None and r[1] > since]
    if page.after is not None:
        rows = [r for r in rows if r[0] > page.after]
    chosen = rows[:limit]
    more = len(rows) > limit
    next_cursor = None
    if more:
        mark = list(watermark) if watermark is not None else None
        next_cursor = _encode(
            {"v": _CURSOR_VERSION, "k": kind, "e": ctx.event, "a": chosen[-1][0], "w": mark}
        )
    return _ok(
        request,
        [body for _, _, body in chosen],
        page={"limit": limit, "count": len(chosen), "nextCursor": next_cursor},
        changes={"next": encode_since(watermark) if watermark is not None else None},
    )


def _attendance_items(ev: Event, who: str | None) -> list[_Item]:
    if who is not None:
        records: list[Attendance] = (
            [ev.attendance(who)] if ev.doc.scans_by_participant.get(who) else []
        )
    else:
        records = ev.attendance_list()
    out: list[_Item] = []
    for a in records:
        pos = max(((s.hlc, s.id) for s in a.scans), default=None)
        body = {
            "participant": a.participant,
            "checkIn": a.check_in.to_dict() if a.check_in else None,
            "checkOut": a.check_out.to_dict() if a.check_out else None,
            "scans": [s.to_dict() for s in a.scans],
        }
        out.append((a.participant, pos, body))
    return out


def _participant_items(ev: Event, who: str | None, deleted: bool) -> list[_Item]:
    if who is not None:
        try:
            found: list[Participant] = [ev.participant(who)]
        except NotFoundError:
            found = []
        if not deleted:
            found = [p for p in found if not p.deleted]
    else:
        found = ev.participants(include_deleted=deleted)
    out: list[_Item] = []
    for p in found:
        entries = ev.doc.records.get(record_key(PARTICIPANT, p.id), {})
        pos = max(((e.hlc, e.dot) for e in entries.values()), default=None)
        out.append((p.id, pos, p.to_dict()))
    return out


async def _attendance(request: web.Request) -> web.Response:
    ctx = _context(request)
    ev = ctx.replica.event(ctx.event)
    return _listing(request, ctx, "attendance", lambda who: _attendance_items(ev, who))


async def _participants(request: web.Request) -> web.Response:
    ctx = _context(request)
    raw = request.query.get("deleted", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_parameter", "deleted must be true or false")
    deleted = raw in ("true", "1") and ctx.admin
    ev = ctx.replica.event(ctx.event)
    return _listing(request, ctx, "participants", lambda who: _participant_items(ev, who, deleted))


# -- devices ---------------------------------------------------------------------------


async def _devices(request: web.Request) -> web.Response:
    ctx = _context(request, admin_only=True)
    store = ctx.replica.store
    vv = ctx.replica.version_vector(ctx.event)
    acks = store.acks(ctx.event)
    times = store.ack_times(ctx.event)
    roles = store.devices()
    me = ctx.replica.device_id
    out = []
    for device in sorted((set(vv) | set(acks)) - {me}):
        ack = acks.get(device)
        missing = {a: n - (ack or {}).get(a, 0) for a, n in vv.items()}
        missing = {a: n for a, n in missing.items() if n > 0}
        at = times.get(device)
        out.append(
            {
                "device": device,
                "role": roles.get(device),
                "authored": vv.get(device, 0),
                "acknowledged": ack is not None,
                "has": sum(min(n, vv.get(a, 0)) for a, n in ack.items()) if ack else 0,
                "pending": sum(missing.values()),
                "pendingByAuthor": missing,
                "lastAckAt": _iso(at) if at is not None else None,
                "lagMs": max(0, ctx.now_ms - at) if at is not None else None,
            }
        )
    relay = {
        "device": me,
        "entries": sum(vv.values()),
        "versionVector": vv,
        "logCount": store.log_count(ctx.event),
    }
    return _ok(request, out, relay=relay)


# -- conflicts --------------------------------------------------------------------------


async def _conflicts(request: web.Request) -> web.Response:
    ctx = _context(request, admin_only=True)
    found = ctx.replica.conflicts(ctx.event)
    return _ok(request, [c.to_dict() for c in found])


def _resolution(body: bytes) -> dict[str, Any]:
    """The keyword arguments of ``resolve_conflict`` from a request body.

    Raises:
        ApiError: 400 ``malformed_json`` / ``invalid_request``.
    """
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not JSON: {exc}") from None
    given = set(doc) & {"choose", "value", "restore"} if isinstance(doc, dict) else set()
    if not isinstance(doc, dict) or len(given) != 1 or set(doc) != given:
        raise ApiError(
            400,
            "invalid_request",
            'the body must be an object with exactly one of "choose", "value", "restore"',
        )
    if "choose" in doc:
        if not isinstance(doc["choose"], str) or not doc["choose"]:
            raise ApiError(400, "invalid_request", "choose must be a candidate's dot (a string)")
        return {"choose": doc["choose"]}
    if "restore" in doc:
        if not isinstance(doc["restore"], bool):
            raise ApiError(400, "invalid_request", "restore must be true or false")
        return {"restore": doc["restore"]}
    return {"value": doc["value"], "use_value": True}


async def _resolve(request: web.Request) -> web.Response:
    ctx = _context(request, admin_only=True)
    state = request.app[_STATE]
    conflict_id = request.match_info["conflict"]
    ev = ctx.replica.event(ctx.event)
    try:
        conflict = ev.conflict(conflict_id)
    except NotFoundError:
        raise ApiError(404, "unknown_conflict", f"no open conflict {conflict_id!r}") from None
    kw = _resolution(await _read_body(request, state.limits.max_body_bytes))
    if "choose" in kw and kw["choose"] not in {c.dot for c in conflict.candidates}:
        raise ApiError(400, "unknown_candidate", f"conflict has no candidate {kw['choose']!r}")
    try:
        ctx.replica.resolve_conflict(ctx.event, conflict_id, **kw)
    except PermissionDeniedError as exc:
        raise ApiError(409, "relay_not_admin", exc.message) from None
    except NotFoundError as exc:
        raise ApiError(404, "unknown_conflict", exc.message) from None
    except InputError as exc:
        raise ApiError(400, "invalid_resolution", exc.message) from None
    return _ok(
        request,
        {
            "resolved": conflict.to_dict(),
            "by": ctx.claims.user,
            "openConflicts": len(ctx.replica.conflicts(ctx.event)),
        },
    )


async def _audit_trail(request: web.Request) -> web.Response:
    """``GET /api/audit?user=&outcome=&from=&to=&limit=``: who synced what,
    when, from which devices, with which outcome (admin tokens only; times in
    epoch milliseconds, ``from`` inclusive, ``to`` exclusive)."""
    state = request.app[_STATE]
    claims = _authenticate(state.tokens, request.headers.get("Authorization"), state.clock())
    if claims.role is not UserRole.ADMIN:
        raise ApiError(403, "forbidden", "the audit trail needs an admin token")
    if state.audit is None:
        raise ApiError(404, "no_audit", "this relay keeps no audit trail")
    query = request.query
    bounds: dict[str, int | None] = {}
    for name in ("from", "to"):
        raw = query.get(name)
        if raw is not None and not raw.isdigit():
            raise ApiError(400, "invalid_parameter", f"{name} must be epoch milliseconds")
        bounds[name] = int(raw) if raw is not None else None
    rows = state.audit.query(
        user=query.get("user"),
        outcome=query.get("outcome"),
        since_ms=bounds["from"],
        until_ms=bounds["to"],
        limit=_limit(request),
    )
    data = [
        {
            "requestId": r.request_id,
            "at": r.at_ms,
            "user": r.user,
            "role": r.role,
            "devices": list(r.devices),
            "records": r.records,
            "synced": r.synced,
            "conflicts": r.conflicts,
            "errors": r.errors,
            "status": r.status,
            "outcome": r.outcome,
        }
        for r in rows
    ]
    return _ok(request, data)
