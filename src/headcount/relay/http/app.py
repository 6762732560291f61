"""The cloud bridge HTTP API: an aiohttp application over a :class:`Replica`.

This module only wires: :func:`create_app` makes the shared state
(:class:`.common.ApiState`), installs the :func:`.envelope.envelope`
middleware (request ids, JSON errors) and adds the routes of :data:`ROUTES`.
The handlers live with their resource:

* :mod:`.sync_handler` -- ``POST /api/attendance/sync`` (rate limited;
  :mod:`.sync` turns its records into scans);
* :mod:`.reads` -- attendance, participants, devices (lists paginated by
  :mod:`.paging`);
* :mod:`.conflicts` -- open conflicts and their resolution;
* :mod:`.audit_trail` -- ``GET /api/audit``.

Probes (``/healthz``, ``/readyz``) are added by :func:`.ops.install`;
``/metrics`` is served only by :func:`.ops.operations_app`, on a listener
of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from headcount.relay.tokens import TokenAuthority
from headcount.replica.replica import Replica, wall_clock_ms
from headcount.store.audit import AuditLog

from .audit_trail import audit_trail
from .common import STATE, ApiLimits, ApiObserver, ApiState
from .conflicts import conflicts, resolve
from .envelope import envelope
from .reads import attendance, devices, participants
from .sync_handler import handle_sync

__all__ = ["ROUTES", "SYNC_PATH", "ApiLimits", "create_app"]

SYNC_PATH = "/api/attendance/sync"
EVENT_PATH = "/api/events/{event}"

ROUTES: tuple[web.RouteDef, ...] = (
    web.post(SYNC_PATH, handle_sync),
    web.get(f"{EVENT_PATH}/attendance", attendance),
    web.get(f"{EVENT_PATH}/participants", participants),
    web.get(f"{EVENT_PATH}/devices", devices),
    web.get(f"{EVENT_PATH}/conflicts", conflicts),
    web.post(f"{EVENT_PATH}/conflicts/{{conflict}}/resolve", resolve),
    web.get("/api/audit", audit_trail),
)
"""Every API route (a GET route answers HEAD too)."""


def create_app(
    replica: Replica,
    tokens: TokenAuthority,
    *,
    limits: ApiLimits | None = None,
    audit: AuditLog | None = None,
    clock: Callable[[], int] = wall_clock_ms,
    metrics: ApiObserver | None = None,
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
        metrics: counts sync outcomes, latency, rate-limit rejections,
            unauthenticated requests and unwritten audit rows
            (:class:`.ops.Metrics`; None: not counted).
        on_write: called with each event that received new scans (the relay
            pushes them to the connected devices at once).

    Returns:
        The application; its shared state is ``app[STATE]``
        (:data:`.common.STATE`).
    """
    limits = limits or ApiLimits()
    # aiohttp's own bound is a backstop; the handlers enforce the real one.
    app = web.Application(middlewares=[envelope], client_max_size=limits.max_body_bytes + 1)
    app[STATE] = ApiState(replica, tokens, limits, clock, audit, metrics, on_write)
    app.add_routes(ROUTES)
    return app
