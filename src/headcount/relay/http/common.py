"""What every handler of the API shares: the app's state and the steps of a request.

:func:`.app.create_app` stores one :class:`ApiState` under :data:`STATE`;
handlers read it with ``request.app[STATE]`` and use the steps here
(:func:`authenticate`, :func:`read_body`, :func:`event_context`) so that
every endpoint refuses the same way (see :mod:`.errors` for the JSON errors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from headcount.relay.ratelimit import RateLimit
from headcount.relay.throttle import AuditThrottle
from headcount.relay.tokens import Claims, TokenAuthority, TokenError, UserRole
from headcount.replica.replica import Replica
from headcount.store.audit import AuditLog

from .errors import ApiError

READ_CHUNK = 64 * 1024
REALM = 'Bearer realm="headcount"'


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """Bounds on what one client may send.

    ``refusal_rows`` and ``refusal_interval_s`` bound the audit rows of sync
    requests refused before authentication or by the rate limit (see
    :mod:`headcount.relay.throttle`).
    """

    rate_requests: int = 20
    rate_window_s: int = 300
    max_body_bytes: int = 1024 * 1024
    max_records: int = 500
    refusal_rows: int = 60
    refusal_interval_s: int = 60


class ApiObserver(Protocol):
    """Counts what the API sees (:class:`.ops.Metrics` is one)."""

    def observe_sync(
        self, status: int, seconds: float, *, records: int, body_bytes: int
    ) -> None: ...

    def observe_unauthenticated(self, route: str, reason: str) -> None:
        """A request of ``route`` refused with 401 ``reason``."""
        ...

    def observe_audit_skipped(self, reason: str) -> None:
        """A refusal of ``reason`` that got no audit row (throttled)."""
        ...


@dataclass(slots=True)
class ApiState:
    """Everything the handlers of one app share.

    ``rate`` is the per-user limit of sync requests and ``refusals`` the
    throttle of refusals' audit rows, both made from ``limits``.
    """

    replica: Replica
    tokens: TokenAuthority
    limits: ApiLimits
    clock: Callable[[], int]
    audit: AuditLog | None
    metrics: ApiObserver | None = None
    on_write: Callable[[str], None] | None = None
    rate: RateLimit = field(init=False)
    refusals: AuditThrottle = field(init=False)

    def __post_init__(self) -> None:
        self.rate = RateLimit(self.limits.rate_requests, self.limits.rate_window_s * 1000)
        interval_ms = self.limits.refusal_interval_s * 1000
        self.refusals = AuditThrottle(interval_ms, self.limits.refusal_rows)


STATE = web.AppKey("headcount_relay_state", ApiState)
# The authenticated user, for access logs (see :mod:`.ops`).
# aiohttp >= 3.12 wants typed request keys; older versions take strings.
USER_KEY: Any = web.RequestKey("user", str) if hasattr(web, "RequestKey") else "user"


def route_name(request: web.Request) -> str:
    """The request's route template (a bounded metric label), or ``unmatched``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def authenticate_request(request: web.Request, now_ms: int) -> Claims:
    """:func:`authenticate` the request's bearer token; count a refusal by
    route and reason (cheap: no audit row, no disk) and name the user for the
    access log.

    Raises:
        ApiError: as :func:`authenticate`.
    """
    state = request.app[STATE]
    try:
        claims = authenticate(state.tokens, request.headers.get("Authorization"), now_ms)
    except ApiError as exc:
        if state.metrics is not None:
            state.metrics.observe_unauthenticated(route_name(request), exc.code)
        raise
    request[USER_KEY] = claims.user
    return claims


def int_param(request: web.Request, name: str, low: int, high: int) -> int | None:
    """The query parameter ``name``: ASCII digits, from ``low`` to ``high``
    (None when absent or empty).

    Raises:
        ApiError: 400 ``invalid_parameter`` for anything else (signs, spaces,
            other digits than 0-9, out of range).
    """
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    limit = len(str(high))
    if len(raw) > limit or not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer from {low} to {high}")
    return int(raw)


def authenticate(tokens: TokenAuthority, header: str | None, now_ms: int) -> Claims:
    """The claims of a request's bearer token.

    Args:
        tokens: verifies the token.
        header: the ``Authorization`` header, if any.
        now_ms: wall time, for the token's expiry.

    Raises:
        ApiError: 401 ``missing_token`` / ``invalid_token`` / ``token_expired``,
            with ``WWW-Authenticate``.
    """
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "missing_token", "a bearer token is required", {"WWW-Authenticate": REALM}
        )
    try:
        return tokens.verify(token.strip(), now_s=now_ms // 1000)
    except TokenError as exc:
        challenge = f'{REALM}, error="invalid_token"'
        raise ApiError(401, exc.code, exc.message, {"WWW-Authenticate": challenge}) from None


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused as soon as it exceeds ``limit`` bytes.

    Raises:
        ApiError: 413 ``body_too_large``.
    """
    too_large = ApiError(413, "body_too_large", f"the body exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def iso(ms: int) -> str:
    """``ms`` since the epoch as ISO 8601 UTC with milliseconds and ``Z``."""
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def ok(data: Any, **extra: Any) -> web.Response:
    """A success body: ``{"success": true, "data": data, **extra}``."""
    return web.json_response({"success": True, "data": data, **extra})


# -- the event of a read -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventContext:
    """An authenticated request for one event the relay holds."""

    replica: Replica
    claims: Claims
    event: str
    now_ms: int

    @property
    def admin(self) -> bool:
        return self.claims.role is UserRole.ADMIN


def event_context(request: web.Request, *, admin_only: bool = False) -> EventContext:
    """Authenticate, authorise the route's ``{event}`` (and role), check it exists.

    The event is checked against the token before any existence check, so a
    token cannot probe for other events.

    Raises:
        ApiError: 401, 403 ``event_forbidden`` / ``forbidden``, 404 ``unknown_event``.
    """
    state = request.app[STATE]
    now = state.clock()
    claims = authenticate_request(request, now)
    event = request.match_info["event"]
    if not claims.may_access(event):
        raise ApiError(403, "event_forbidden", f"the token does not grant {event!r}")
    if admin_only and claims.role is not UserRole.ADMIN:
        raise ApiError(403, "forbidden", "this endpoint needs an admin token")
    if event not in state.replica.events():
        raise ApiError(404, "unknown_event", f"no event {event!r}")
    return EventContext(state.replica, claims, event, now)
