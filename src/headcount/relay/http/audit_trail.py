"""``GET /api/audit?user=&outcome=&from=&to=&limit=``: who synced what, when,
from which devices, with which outcome (admin tokens only; times in epoch
milliseconds, ``from`` inclusive, ``to`` exclusive). The trail itself is
written by :mod:`.sync_handler` into :class:`headcount.store.audit.AuditLog`.
"""

from __future__ import annotations

from aiohttp import web

from headcount.relay.tokens import UserRole

from .common import STATE, authenticate, ok
from .errors import ApiError
from .paging import page_limit


async def audit_trail(request: web.Request) -> web.Response:
    """The audit records matching the query, oldest first.

    Raises:
        ApiError: 401; 403 ``forbidden`` (not an admin token); 404
            ``no_audit`` (the relay keeps no trail); 400 ``invalid_parameter``.
    """
    state = request.app[STATE]
    claims = authenticate(state.tokens, request.headers.get("Authorization"), state.clock())
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
        limit=page_limit(request),
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
    return ok(data)
