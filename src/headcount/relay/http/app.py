"""The cloud bridge HTTP API: an aiohttp application over a :class:`Replica`.

Only ``POST /api/attendance/sync`` for now (see :mod:`.sync` for how
records become scans). Every request goes through one middleware that gives
it a request id and turns every failure into a JSON body::

    {"success": false, "error": {"code": "...", "message": "..."}, "requestId": "..."}

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
writes. Every request that reaches the handler is written to the audit
trail, refused or not.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from headcount.relay.ratelimit import RateLimit
from headcount.relay.tokens import Claims, TokenAuthority, TokenError
from headcount.replica.replica import Replica, wall_clock_ms
from headcount.store.audit import AuditLog, AuditRecord

from .sync import ApiError, SyncRecord, apply, authorize, parse_request

if TYPE_CHECKING:
    from .ops import Metrics

SYNC_PATH = "/api/attendance/sync"
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_READ_CHUNK = 64 * 1024
_REALM = 'Bearer realm="headcount"'

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """Bounds on what one client may send."""

    rate_requests: int = 20
    rate_window_s: int = 300
    max_body_bytes: int = 1024 * 1024
    max_records: int = 500


@dataclass(slots=True)
class _State:
    replica: Replica
    tokens: TokenAuthority
    limits: ApiLimits
    clock: Callable[[], int]
    audit: AuditLog | None
    metrics: Metrics | None = None
    on_write: Callable[[str], None] | None = None
    rate: RateLimit = field(init=False)

    def __post_init__(self) -> None:
        self.rate = RateLimit(self.limits.rate_requests, self.limits.rate_window_s * 1000)


_STATE = web.AppKey("headcount_relay_state", _State)
# aiohttp >= 3.12 wants typed request keys; older versions take strings.
_RID: Any = web.RequestKey("request_id", str) if hasattr(web, "RequestKey") else "request_id"
# The authenticated user, for access logs (see :mod:`.ops`).
USER_KEY: Any = web.RequestKey("user", str) if hasattr(web, "RequestKey") else "user"


def create_app(
    replica: Replica,
    tokens: TokenAuthority,
    *,
    limits: ApiLimits | None = None,
    audit: AuditLog | None = None,
    clock: Callable[[], int] = wall_clock_ms,
    metrics: Metrics | None = None,
    on_write: Callable[[str], None] | None = None,
) -> web.Application:
    """The HTTP API application.

    Args:
        replica: an open, writable replica holding the events.
        tokens: verifies bearer tokens.
        limits: rate limit and size bounds (defaults: 20 requests / 300 s per
            user, 1 MiB bodies, 500 records).
        audit: where sync requests are recorded (None: not recorded).
        clock: wall time in ms (token expiry, rate limit, timestamps).
        metrics: counts sync outcomes, latency and rate-limit rejections
            (:class:`.ops.Metrics`; None: not counted).
        on_write: called with each event that received new scans (the relay
            pushes them to the connected devices at once).
    """
    limits = limits or ApiLimits()
    # aiohttp's own bound is a backstop; the handler enforces the real one.
    app = web.Application(middlewares=[_envelope], client_max_size=limits.max_body_bytes + 1)
    app[_STATE] = _State(replica, tokens, limits, clock, audit, metrics, on_write)
    app.router.add_post(SYNC_PATH, _sync)
    from .reads import add_read_routes  # late: reads imports this module

    add_read_routes(app)
    return app


# -- middleware --------------------------------------------------------------


@web.middleware
async def _envelope(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Attach the request id to the response; turn every failure into JSON."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    request[_RID] = rid
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _error(exc, rid)
    except web.HTTPException as exc:  # the router's 404 and 405
        code = exc.reason.lower().replace(" ", "_")
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        response = _error(ApiError(exc.status, code, exc.reason, allow), rid)
    except Exception:
        log.exception("unhandled error", extra={"request_id": rid})
        response = _error(ApiError(500, "internal_error", "internal server error"), rid)
    response.headers[REQUEST_ID_HEADER] = rid
    log.info(
        "%s %s -> %d",
        request.method,
        request.path,
        response.status,
        extra={"request_id": rid},
    )
    return response


def _error(exc: ApiError, rid: str) -> web.Response:
    body = {"success": False, "error": {"code": exc.code, "message": exc.message}}
    return web.json_response({**body, "requestId": rid}, status=exc.status, headers=exc.headers)


# -- the handler ---------------------------------------------------------------


async def _sync(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    now = state.clock()
    claims: Claims | None = None
    records: list[SyncRecord] = []
    body = b""
    status = 500
    started = time.perf_counter()
    try:
        claims = _authenticate(state.tokens, request.headers.get("Authorization"), now)
        request[USER_KEY] = claims.user
        wait = state.rate.take(claims.user, now)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"more than {state.limits.rate_requests} requests in "
                f"{state.limits.rate_window_s} s; retry in {wait} s",
                {"Retry-After": str(wait)},
            )
        body = await _read_body(request, state.limits.max_body_bytes)
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
    return web.json_response(result.to_json(_iso(now)))


def _authenticate(tokens: TokenAuthority, header: str | None, now_ms: int) -> Claims:
    """The claims of the request's bearer token.

    Raises:
        ApiError: 401 with ``WWW-Authenticate``.
    """
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "missing_token", "a bearer token is required", {"WWW-Authenticate": _REALM}
        )
    try:
        return tokens.verify(token.strip(), now_s=now_ms // 1000)
    except TokenError as exc:
        challenge = f'{_REALM}, error="invalid_token"'
        raise ApiError(401, exc.code, exc.message, {"WWW-Authenticate": challenge}) from None


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused as soon as it exceeds ``limit`` bytes.

    Raises:
        ApiError: 413 ``body_too_large``.
    """
    too_large = ApiError(413, "body_too_large", f"the body exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _audit(
    state: _State,
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
    state.audit.record(
        AuditRecord(
            request_id=request[_RID],
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
        )
    )


def _iso(ms: int) -> str:
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
