"""The handler of ``POST /api/attendance/sync`` (see :mod:`.sync` for how
records become scans).

A request is handled in this order, each step answering on failure:

1. authentication: ``Authorization: Bearer <jwt>`` (401 ``missing_token``,
   ``invalid_token``, ``token_expired``, with ``WWW-Authenticate``);
2. the per-user rate limit (429 ``rate_limited`` with ``Retry-After`` in
   whole seconds; refused requests do not count);
3. the body, read up to ``max_body_bytes`` (413 ``body_too_large``);
4. parsing (400 ``malformed_json``, ``invalid_request``, ``invalid_record``;
   more than ``max_records`` records: 413 ``too_many_records``);
5. authorisation of every record (403 ``forbidden``, ``event_forbidden``);
6. the writes, record by record (per-record errors are in the 200 body).

Steps 1-5 write nothing. The replica is synchronous: step 6 runs on the
event loop without awaiting, so concurrent requests never interleave their
writes.

Every request that passes steps 1 and 2 is written to the audit trail
(one durable row), refused later or not; the rate limit bounds how many a
user can cause. A refusal at step 1 or 2 costs its sender nothing, so it
gets a row only as :class:`headcount.relay.throttle.AuditThrottle` admits:
at most one per client address (step 1) or user (step 2) and reason per
interval, and a bounded number in all; the metrics count every refusal and
every row left out. A row names the events of the request's records or,
when there are none, those its token grants (none for a ``"*"`` token or no
token); the audit trail shows a row to the admins whose tokens grant all of
them (see :mod:`.audit_trail`).
"""

from __future__ import annotations

import time

from aiohttp import web

from headcount.relay.tokens import Claims
from headcount.store.audit import AuditRecord

from .common import STATE, ApiState, authenticate_request, iso, read_body
from .envelope import REQUEST_ID_KEY
from .errors import ApiError
from .sync import SyncRecord, apply, authorize, parse_request

# Authenticated refusals whose rows are throttled too (keyed by user): a user
# over the rate limit must not buy a durable write per request either.
THROTTLED_OUTCOMES = frozenset({"rate_limited"})


async def handle_sync(request: web.Request) -> web.Response:
    """``POST /api/attendance/sync``: the contract's response body.

    Raises:
        ApiError: steps 1-5 above (nothing written).
    """
    state = request.app[STATE]
    now = state.clock()
    claims: Claims | None = None
    records: list[SyncRecord] = []
    body = b""
    status = 500
    started = time.perf_counter()
    try:
        claims = authenticate_request(request, now)
        wait = state.rate.take(claims.user, now)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"more than {state.limits.rate_requests} requests in "
                f"{state.limits.rate_window_s} s; retry in {wait} s",
                {"Retry-After": str(wait)},
            )
        body = await read_body(request, state.limits.max_body_bytes)
        records = parse_request(body, state.limits.max_records)
        records = authorize(records, claims)
        result = apply(state.replica, records)
        status = 200
        if state.on_write is not None:  # push the new scans to connected devices now
            for event in sorted({r.event for r in records}):
                state.on_write(event)
    except ApiError as exc:
        status = exc.status
        _audit(state, request, now, claims, records, exc.status, exc.code)
        raise
    finally:
        if state.metrics is not None:
            elapsed = time.perf_counter() - started
            state.metrics.observe_sync(status, elapsed, records=len(records), body_bytes=len(body))
    counts = (len(result.synced), len(result.conflicts), len(result.errors))
    _audit(state, request, now, claims, records, 200, "ok", counts)
    return web.json_response(result.to_json(iso(now)))


def _audit(
    state: ApiState,
    request: web.Request,
    now: int,
    claims: Claims | None,
    records: list[SyncRecord],
    status: int,
    outcome: str,
    counts: tuple[int, int, int] = (0, 0, 0),
) -> None:
    if state.audit is None:
        return
    source = request.remote or "unknown"
    if not _admitted(state, source, claims, outcome, now):
        return
    if records:
        events: tuple[str, ...] = tuple(sorted({r.event for r in records}))
    else:
        events = tuple(sorted(claims.events)) if claims and claims.events else ()
    state.audit.record(
        AuditRecord(
            request_id=request[REQUEST_ID_KEY],
            at_ms=now,
            user=claims.user if claims else None,
            role=claims.role.value if claims else None,
            devices=tuple(sorted({r.device for r in records})),
            records=len(records),
            synced=counts[0],
            conflicts=counts[1],
            errors=counts[2],
            status=status,
            outcome=outcome,
            events=events,
            source=source,
        )
    )


def _admitted(state: ApiState, source: str, claims: Claims | None, outcome: str, now: int) -> bool:
    """Whether this request's row is written: always for an authenticated
    request, except the throttled outcomes; a refusal before authentication
    or a throttled one as :attr:`.common.ApiState.refusals` admits (counted
    in the metrics when not)."""
    if claims is not None and outcome not in THROTTLED_OUTCOMES:
        return True
    who = source if claims is None else f"user:{claims.user}"
    if state.refusals.admit(who, outcome, now):
        return True
    if state.metrics is not None:
        state.metrics.observe_audit_skipped(outcome)
    return False
