"""Conflict endpoints of the cloud bridge HTTP API (admin tokens only)::

    GET  /api/events/{event}/conflicts                    open manual-merge conflicts
    POST /api/events/{event}/conflicts/{id}/resolve       resolve one

The resolve body is a JSON object with exactly one of ``choose`` (a
candidate's dot), ``value`` (any JSON value, written as the resolution) or
``restore`` (true or false, for a modification concurrent with a
deletion). Errors: 404 ``unknown_conflict``, 400 ``unknown_candidate`` /
``invalid_resolution`` / ``malformed_json`` / ``invalid_request``, 409
``relay_not_admin`` when the relay's replica is not an admin device;
authentication and the event as in :func:`.common.event_context`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from headcount.core.errors import InputError, NotFoundError, PermissionDeniedError

from . import strictjson
from .common import STATE, event_context, ok, read_body
from .errors import ApiError


async def conflicts(request: web.Request) -> web.Response:
    """``GET /api/events/{event}/conflicts``: every open conflict."""
    ctx = event_context(request, admin_only=True)
    found = ctx.replica.conflicts(ctx.event)
    return ok([c.to_dict() for c in found])


async def resolve(request: web.Request) -> web.Response:
    """``POST /api/events/{event}/conflicts/{conflict}/resolve``: the resolved
    conflict, who resolved it, and how many stay open."""
    ctx = event_context(request, admin_only=True)
    state = request.app[STATE]
    conflict_id = request.match_info["conflict"]
    ev = ctx.replica.event(ctx.event)
    try:
        conflict = ev.conflict(conflict_id)
    except NotFoundError:
        raise ApiError(404, "unknown_conflict", f"no open conflict {conflict_id!r}") from None
    kw = _resolution(await read_body(request, state.limits.max_body_bytes))
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
    return ok(
        {
            "resolved": conflict.to_dict(),
            "by": ctx.claims.user,
            "openConflicts": len(ctx.replica.conflicts(ctx.event)),
        },
    )


def _resolution(body: bytes) -> dict[str, Any]:
    """The keyword arguments of ``resolve_conflict`` from a request body.

    Raises:
        ApiError: 400 ``malformed_json`` (see :func:`.strictjson.loads`) /
            ``invalid_request``.
    """
    doc = strictjson.loads(body)
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
