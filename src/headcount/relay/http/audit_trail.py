"""``GET /api/audit?user=&outcome=&from=&to=&limit=``: who synced what, when,
from which devices, with which outcome (admin tokens only; times in epoch
milliseconds from 0 to 2^53 - 1, ``from`` inclusive, ``to`` exclusive). The
trail itself is written by :mod:`.sync_handler` into
:class:`headcount.store.audit.AuditLog`.

An admin token sees the rows of the events it grants: a row whose events are
all granted. A token granting every event (``"*"``) sees every row, including
the rows tied to no event (requests refused before authentication, and those
of a ``"*"`` token that named no event); a token granting a list of events
never sees those.
"""

from __future__ import annotations

from aiohttp import web

from headcount.relay.tokens import UserRole

from .common import STATE, authenticate_request, int_param, ok
from .errors import ApiError
from .paging import page_limit

MAX_MS = 2**53 - 1  # the largest time a JSON client reads exactly


async def audit_trail(request: web.Request) -> web.Response:
    """The audit records matching the query and the token's events, oldest first.

    Raises:
        ApiError: 401; 403 ``forbidden`` (not an admin token); 404
            ``no_audit`` (the relay keeps no trail); 400 ``invalid_parameter``.
    """
    state = request.app[STATE]
    claims = authenticate_request(request, state.clock())
    if claims.role is not UserRole.ADMIN:
        raise ApiError(403, "forbidden", "the audit trail needs an admin token")
    if state.audit is None:
        raise ApiError(404, "no_audit", "this relay keeps no audit trail")
    query = request.query
    rows = state.audit.query(
        user=query.get("user"),
        outcome=query.get("outcome"),
        since_ms=int_param(request, "from", 0, MAX_MS),
        until_ms=int_param(request, "to", 0, MAX_MS),
        events=claims.events,
        limit=page_limit(request),
    )
    data = [
        {
            "requestId": r.request_id,
            "at": r.at_ms,
            "user": r.user,
            "role": r.role,
            "devices": list(r.devices),
            "events": list(r.events),
            "records": r.records,
            "synced": r.synced,
            "conflicts": r.conflicts,
            "errors": r.errors,
            "status": r.status,
            "outcome": r.outcome,
            "source": r.source,
        }
        for r in rows
    ]
    return ok(data)
