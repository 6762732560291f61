"""Operations for the relay: Prometheus metrics, JSON access logs, health probes.

Wiring, for a driver::

    metrics = Metrics()
    checks = {"replica": replica_open(replica), "node": node_serving(node)}
    app = create_app(replica, tokens, metrics=metrics)
    install(app, metrics, checks)          # probes and access logs on the API's port
    ops = operations_app(metrics, checks)  # /metrics too: serve it on 127.0.0.1
    # every few seconds:
    collect_from_node(metrics, node, replica)

``/metrics`` is served only by :func:`operations_app`, which the relay runs
on a listener of its own (``ops`` in relay.toml, 127.0.0.1 by default): the
public port never tells who is connected, how far behind, or the events'
names.

Every metric lives in the :class:`Metrics` object's own registry, never in
``prometheus_client``'s global one, so several apps (and tests) never clash.
Counters fed from sessions (entries and bytes of peer sync) advance by what
each live session reports between two collections; what a session does
after the last collection before it closes is not counted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from headcount.replica.replica import Replica

from .common import USER_KEY, route_name
from .envelope import REQUEST_ID_HEADER

if TYPE_CHECKING:
    from headcount.net.node import Node

access_log = logging.getLogger("headcount.relay.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadyChecks = Mapping[str, Callable[[], bool]]

# LogRecord attributes that are not ``extra`` fields.
_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, every
    ``extra`` field, and the formatted exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class Metrics:
    """The relay's metrics, in a registry of their own (``self.registry``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.sync_requests = Counter(
            "headcount_sync_requests", "Sync requests by outcome.", ["outcome"], registry=r
        )
        self.sync_attempts = Counter(
            "headcount_sync_attempts", "Sync requests (success rate denominator).", registry=r
        )
        self.sync_successes = Counter(
            "headcount_sync_successes", "Successful sync requests (numerator).", registry=r
        )
        self.sync_latency = Histogram(
            "headcount_sync_duration_seconds",
            "Sync request handling time.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.entries_in = Counter(
            "headcount_entries_in", "Entries or records received.", ["source"], registry=r
        )
        self.entries_out = Counter(
            "headcount_entries_out", "Entries sent to peers.", ["source"], registry=r
        )
        self.bytes_in = Counter("headcount_bytes_in", "Bytes received.", ["source"], registry=r)
        self.bytes_out = Counter("headcount_bytes_out", "Bytes sent.", ["source"], registry=r)
        self.connected_devices = Gauge(
            "headcount_connected_devices", "Devices with a live sync session.", registry=r
        )
        self.device_lag = Gauge(
            "headcount_device_lag_entries",
            "Entries not yet acknowledged by a connected device.",
            ["device"],
            registry=r,
        )
        self.conflicts_open = Gauge(
            "headcount_conflicts_open", "Open manual-merge conflicts.", ["event"], registry=r
        )
        self.conflicts_resolved = Counter(
            "headcount_conflicts_resolved", "Conflicts seen open, then gone.", ["event"], registry=r
        )
        self.rate_limited = Counter(
            "headcount_rate_limit_rejections", "Requests refused by the rate limit.", registry=r
        )
        self.http_requests = Counter(
            "headcount_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.unauthenticated = Counter(
            "headcount_http_unauthenticated_requests",
            "API requests refused for want of a valid token, by route and reason.",
            ["route", "reason"],
            registry=r,
        )
        self.audit_skipped = Counter(
            "headcount_audit_rows_skipped",
            "Refused sync requests left out of the audit trail (throttled), by reason.",
            ["reason"],
            registry=r,
        )
        self.header_timeouts = Counter(
            "headcount_http_header_timeouts",
            "Connections closed for not sending a request's headers in time, by listener.",
            ["listener"],
            registry=r,
        )
        self.http_latency = Histogram(
            "headcount_http_request_duration_seconds",
            "HTTP request handling time.",
            ["route", "method"],
            registry=r,
        )
        # collect_from_node state: last totals per live session, open conflict ids.
        self._sessions: dict[int, tuple[Any, tuple[int, int, int, int]]] = {}
        self._lag_devices: set[str] = set()
        self._open: dict[str, set[str]] = {}

    def observe_sync(self, status: int, seconds: float, *, records: int, body_bytes: int) -> None:
        """Count one sync request (called by the API's handler)."""
        ok = status == 200
        self.sync_requests.labels("success" if ok else "failure").inc()
        self.sync_attempts.inc()
        if ok:
            self.sync_successes.inc()
            self.entries_in.labels("http").inc(records)
        if status == 429:
            self.rate_limited.inc()
        self.bytes_in.labels("http").inc(body_bytes)
        self.sync_latency.observe(seconds)

    def observe_unauthenticated(self, route: str, reason: str) -> None:
        """Count one request refused with 401 (called by the API)."""
        self.unauthenticated.labels(route, reason).inc()

    def observe_audit_skipped(self, reason: str) -> None:
        """Count one refusal that got no audit row (called by the API)."""
        self.audit_skipped.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# -- collection ----------------------------------------------------------------


def collect_from_node(metrics: Metrics, node: Any, replica: Replica | None = None) -> None:
    """Refresh gauges (and session-fed counters) from a :class:`Node` and a replica.

    ``node`` needs ``links``, each with ``peer.session.status`` (a
    :class:`PeerStatus`) and optionally ``duplicate``; None skips it.
    """
    if node is not None:
        _collect_links(metrics, [link for link in node.links if not getattr(link, "duplicate", 0)])
    if replica is not None:
        _collect_conflicts(metrics, replica)


def _collect_links(metrics: Metrics, links: Iterable[Any]) -> None:
    lag: dict[str, int] = {}
    seen: dict[int, tuple[Any, tuple[int, int, int, int]]] = {}
    for link in links:
        session = link.peer.session
        st = session.status
        totals = (st.entries_received, st.entries_sent, st.bytes_received, st.bytes_sent)
        prev = metrics._sessions.get(id(session))
        before = prev[1] if prev is not None and prev[0] is session else (0, 0, 0, 0)
        deltas = [max(0, now - then) for now, then in zip(totals, before, strict=True)]
        metrics.entries_in.labels("peer").inc(deltas[0])
        metrics.entries_out.labels("peer").inc(deltas[1])
        metrics.bytes_in.labels("peer").inc(deltas[2])
        metrics.bytes_out.labels("peer").inc(deltas[3])
        seen[id(session)] = (session, totals)
        if st.peer is not None:
            lag[st.peer] = lag.get(st.peer, 0) + st.pending_entries
    metrics._sessions = seen
    metrics.connected_devices.set(len(lag))
    for device in metrics._lag_devices - lag.keys():
        metrics.device_lag.remove(device)
    for device, pending in lag.items():
        metrics.device_lag.labels(device).set(pending)
    metrics._lag_devices = set(lag)


LOADS_PER_COLLECTION = 4  # events a collection loads from the store, at most


def _collect_conflicts(metrics: Metrics, replica: Replica) -> None:
    """Open conflicts per event, from the events whose documents are current
    (plus a few not loaded yet): refreshing a gauge must not make a relay
    apply every lazily accepted entry at once (see lazyapply.py); the others
    keep their last count until the relay caught up."""
    now: dict[str, set[str]] = {}
    loads = 0
    for event in replica.events():
        readable = replica.is_current(event)
        if not replica.is_loaded(event) and loads < LOADS_PER_COLLECTION:
            loads += 1
            readable = True
        if readable:
            now[event] = {c.id for c in replica.conflicts(event)}
        elif event in metrics._open:
            now[event] = metrics._open[event]
    for event, ids in now.items():
        gone = metrics._open.get(event, set()) - ids
        if gone:
            metrics.conflicts_resolved.labels(event).inc(len(gone))
        metrics.conflicts_open.labels(event).set(len(ids))
    for event in metrics._open.keys() - now.keys():
        metrics.conflicts_open.remove(event)
    metrics._open = now


# -- readiness checks ------------------------------------------------------------


def replica_open(replica: Replica) -> Callable[[], bool]:
    """A ready check: the replica's store is open."""
    return lambda: not replica.closed


def node_serving(node: Node) -> Callable[[], bool]:
    """A ready check: the node listens and is not stopping."""
    return lambda: node.serving


# -- HTTP ------------------------------------------------------------------------


def metrics_handler(metrics: Metrics) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return handle


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


def readyz_handler(checks: ReadyChecks) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        failed: list[str] = []
        for name, check in checks.items():
            try:
                ok = bool(check())
            except Exception as exc:  # a broken check means not ready
                access_log.warning("ready check %s failed", name, extra={"error": repr(exc)})
                ok = False
            if not ok:
                failed.append(name)
        if failed:
            body = {"status": "unavailable", "reason": f"not ready: {', '.join(failed)}"}
            return web.json_response({**body, "failed": failed}, status=503)
        return web.json_response({"status": "ready"})

    return handle


def access_middleware(metrics: Metrics) -> Any:
    """Count and time every request by route and status; log one JSON-able line."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = route_name(request)
            metrics.http_requests.labels(route, request.method, str(status)).inc()
            metrics.http_latency.labels(route, request.method).observe(elapsed)
            rid = (response.headers.get(REQUEST_ID_HEADER) if response is not None else None) or (
                request.headers.get(REQUEST_ID_HEADER)
            )
            access_log.info(
                "%s %s %d",
                request.method,
                route,
                status,
                extra={
                    "request_id": rid,
                    "method": request.method,
                    "route": route,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "user": request.get(USER_KEY),
                },
            )

    return middleware


def install(app: web.Application, metrics: Metrics, ready_checks: ReadyChecks) -> None:
    """Add ``/healthz``, ``/readyz`` and the access middleware (outermost, so
    it sees the final status and request id) to ``app``, the public one:
    no ``/metrics`` (see :func:`operations_app`)."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz_handler(ready_checks))
    app.middlewares.insert(0, access_middleware(metrics))


def operations_app(metrics: Metrics, ready_checks: ReadyChecks) -> web.Application:
    """The application of the operations listener: ``/metrics``, ``/healthz``
    and ``/readyz``, counted and logged like the API's requests.

    It has no authentication: serve it where only operators reach it
    (the relay binds it to 127.0.0.1 unless told otherwise).
    """
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics))
    install(app, metrics, ready_checks)
    return app
