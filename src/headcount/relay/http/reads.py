"""The read endpoints of the cloud bridge HTTP API: attendance, participants, devices.

Routes (wired by :func:`.app.create_app`; conflicts are in :mod:`.conflicts`,
the audit trail in :mod:`.audit_trail`)::

    GET  /api/events/{event}/attendance?participant=&since=&limit=&cursor=
    GET  /api/events/{event}/participants?participant=&since=&limit=&cursor=&deleted=
    GET  /api/events/{event}/devices                      (admin only)

Every request is authenticated like the sync endpoint (bearer JWT, 401
``missing_token`` / ``invalid_token`` / ``token_expired``), then the event
is checked against the token (403 ``event_forbidden``, before any existence
check so a token cannot probe for other events), then that the relay holds
it (404 ``unknown_event``); see :func:`.common.event_context`. A ``user``
token sees only its own participant and attendance record (participant id
== ``sub``; asking for another with ``participant=`` is 403 ``forbidden``)
and may not use the admin-only routes (403 ``forbidden``). Reads are not
counted by the sync rate limit. Lists are paginated and double as change
feeds (``since``): see :mod:`.paging`.

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

from aiohttp import web

from headcount.core.errors import NotFoundError
from headcount.core.event import Event
from headcount.core.eventdoc import PARTICIPANT, record_key
from headcount.core.model import Attendance, Participant

from .common import event_context, iso, ok
from .errors import ApiError
from .paging import Item, listing


async def attendance(request: web.Request) -> web.Response:
    """``GET /api/events/{event}/attendance``: one page of attendance records."""
    ctx = event_context(request)
    ev = ctx.replica.event(ctx.event)
    return listing(request, ctx, "attendance", lambda who: _attendance_items(ev, who))


async def participants(request: web.Request) -> web.Response:
    """``GET /api/events/{event}/participants``: one page of participants
    (``deleted=true`` includes deleted ones, for admin tokens only)."""
    ctx = event_context(request)
    raw = request.query.get("deleted", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_parameter", "deleted must be true or false")
    deleted = raw in ("true", "1") and ctx.admin
    ev = ctx.replica.event(ctx.event)
    return listing(request, ctx, "participants", lambda who: _participant_items(ev, who, deleted))


def _attendance_items(ev: Event, who: str | None) -> list[Item]:
    if who is not None:
        records: list[Attendance] = (
            [ev.attendance(who)] if ev.doc.scans_by_participant.get(who) else []
        )
    else:
        records = ev.attendance_list()
    out: list[Item] = []
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


def _participant_items(ev: Event, who: str | None, deleted: bool) -> list[Item]:
    if who is not None:
        try:
            found: list[Participant] = [ev.participant(who)]
        except NotFoundError:
            found = []
        if not deleted:
            found = [p for p in found if not p.deleted]
    else:
        found = ev.participants(include_deleted=deleted)
    out: list[Item] = []
    for p in found:
        entries = ev.doc.records.get(record_key(PARTICIPANT, p.id), {})
        pos = max(((e.hlc, e.dot) for e in entries.values()), default=None)
        out.append((p.id, pos, p.to_dict()))
    return out


async def devices(request: web.Request) -> web.Response:
    """``GET /api/events/{event}/devices`` (admin only): each device's sync status."""
    ctx = event_context(request, admin_only=True)
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
                "lastAckAt": iso(at) if at is not None else None,
                "lagMs": max(0, ctx.now_ms - at) if at is not None else None,
            }
        )
    relay = {
        "device": me,
        "entries": sum(vv.values()),
        "versionVector": vv,
        "logCount": store.log_count(ctx.event),
    }
    return ok(out, relay=relay)
