"""Operations of the relay: /metrics, /healthz, /readyz, JSON access logs and
gauges collected from a node and a replica."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from headcount import Replica, Role
from headcount.protocol.session import PeerStatus
from headcount.relay import ApiLimits, TokenAuthority, create_app
from headcount.relay.http.ops import (
    LOADS_PER_COLLECTION,
    JsonFormatter,
    Metrics,
    collect_from_node,
    install,
    node_serving,
    operations_app,
    replica_open,
)

from .support.clock import FakeClock
from .support.devices import enrolled_replica
from .support.nodes import effect_pulse, tls_node
from .support.relay_api import EVENT, SECRET, record
from .support.wait import await_until

Call = Callable[[TestClient], Awaitable[None]]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def run(app: web.Application, body: Call) -> None:
    async def main() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await body(client)

    asyncio.run(main())


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    logger = logging.getLogger("headcount.relay.access")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.fixture
def replica(make_replica: Callable[..., Replica]) -> Replica:
    replica = make_replica("relay", role=Role.ADMIN)
    replica.create_event(EVENT)
    replica.import_participants(EVENT, [{"id": "p1", "name": "Ada"}])
    return replica


def relay_app(
    replica: Replica, clock: FakeClock, checks: dict[str, Callable[[], bool]] | None = None
) -> tuple[web.Application, Metrics, TokenAuthority]:
    tokens = TokenAuthority(SECRET)
    metrics = Metrics()
    limits = ApiLimits(rate_requests=2, rate_window_s=60)
    app = create_app(replica, tokens, limits=limits, clock=clock, metrics=metrics)
    install(app, metrics, checks if checks is not None else {"replica": replica_open(replica)})
    return app, metrics, tokens


def test_metrics_move_after_sync_requests(replica: Replica, clock: FakeClock) -> None:
    app, metrics, tokens = relay_app(replica, clock)
    ops = operations_app(metrics, {"replica": replica_open(replica)})
    token = tokens.issue("p1", "user", [EVENT], now_s=clock.now // 1000, ttl_s=3600)
    auth = {"Authorization": f"Bearer {token}"}
    texts: list[str] = []

    async def main() -> None:
        async with (
            TestClient(TestServer(app, host="127.0.0.1")) as client,
            TestClient(TestServer(ops, host="127.0.0.1")) as operator,
        ):
            resp = await operator.get("/metrics")  # on the operations listener only
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            texts.append(await resp.text())
            ok = await client.post(
                "/api/attendance/sync", json={"records": [record()]}, headers=auth
            )
            assert ok.status == 200, await ok.text()
            bad = await client.post("/api/attendance/sync", data=b"{", headers=auth)
            assert bad.status == 400
            limited = await client.post("/api/attendance/sync", json={"records": []}, headers=auth)
            assert limited.status == 429
            assert (await client.post("/api/attendance/sync", json={})).status == 401
            assert (await client.get("/metrics")).status == 404  # not on the API's port
            texts.append(await (await operator.get("/metrics")).text())

    asyncio.run(main())
    before, after = texts
    names = {f.name for f in text_string_to_metric_families(after)}
    for name in (
        "headcount_sync_requests",
        "headcount_sync_attempts",
        "headcount_sync_successes",
        "headcount_sync_duration_seconds",
        "headcount_entries_in",
        "headcount_bytes_in",
        "headcount_connected_devices",
        "headcount_rate_limit_rejections",
        "headcount_http_requests",
        "headcount_http_request_duration_seconds",
    ):
        assert name in names, name
    assert value(before, "headcount_sync_attempts_total") == 0
    assert value(after, "headcount_sync_attempts_total") == 4
    assert value(after, "headcount_sync_successes_total") == 1
    assert value(after, "headcount_sync_requests_total", outcome="success") == 1
    assert value(after, "headcount_sync_requests_total", outcome="failure") == 3
    assert value(after, "headcount_sync_duration_seconds_count") == 4
    assert value(after, "headcount_rate_limit_rejections_total") == 1
    assert value(after, "headcount_entries_in_total", source="http") == 1
    assert value(after, "headcount_bytes_in_total", source="http") > 1
    route = {"route": "/api/attendance/sync", "method": "POST"}
    assert value(after, "headcount_http_requests_total", status="200", **route) == 1
    assert value(after, "headcount_http_requests_total", status="429", **route) == 1
    assert value(after, "headcount_http_requests_total", status="401", **route) == 1
    get_metrics = {"route": "/metrics", "method": "GET", "status": "200"}
    assert value(after, "headcount_http_requests_total", **get_metrics) == 1
    assert value(after, "headcount_http_request_duration_seconds_count", **route) == 4


def test_registries_are_separate() -> None:
    a, b = Metrics(), Metrics()  # would raise on a shared registry
    a.rate_limited.inc()
    assert value(a.exposition().decode(), "headcount_rate_limit_rejections_total") == 1
    assert value(b.exposition().decode(), "headcount_rate_limit_rejections_total") == 0


def test_healthz_and_readyz(replica: Replica, clock: FakeClock) -> None:
    flags = {"node": True}
    checks = {"replica": replica_open(replica), "node": lambda: flags["node"]}
    app, _, _ = relay_app(replica, clock, checks)
    seen: list[tuple[int, Any]] = []

    async def body(client: TestClient) -> None:
        for _ in range(3):
            for path in ("/healthz", "/readyz"):
                resp = await client.get(path)
                seen.append((resp.status, await resp.json()))
            if flags["node"]:
                flags["node"] = False
            else:
                replica.close()

    run(app, body)
    assert seen[0] == (200, {"status": "ok"})
    assert seen[1] == (200, {"status": "ready"})
    assert seen[2] == (200, {"status": "ok"})
    assert seen[3][0] == 503
    assert seen[3][1]["failed"] == ["node"] and "node" in seen[3][1]["reason"]
    assert seen[4] == (200, {"status": "ok"})
    assert seen[5][0] == 503 and seen[5][1]["failed"] == ["replica", "node"]


def test_readyz_check_that_raises_is_not_ready(replica: Replica, clock: FakeClock) -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    app, _, _ = relay_app(replica, clock, {"store": broken})
    out: list[Any] = []

    async def body(client: TestClient) -> None:
        resp = await client.get("/readyz")
        out.append((resp.status, await resp.json()))

    run(app, body)
    assert out[0][0] == 503 and out[0][1]["failed"] == ["store"]


def test_json_access_log_lines(replica: Replica, clock: FakeClock, capture: Capture) -> None:
    app, _, tokens = relay_app(replica, clock)
    token = tokens.issue("p1", "user", [EVENT], now_s=clock.now // 1000, ttl_s=3600)

    async def body(client: TestClient) -> None:
        headers = {"Authorization": f"Bearer {token}", "X-Request-Id": "req-42"}
        resp = await client.post(
            "/api/attendance/sync", json={"records": [record()]}, headers=headers
        )
        assert resp.status == 200
        assert (await client.get("/nowhere")).status == 404

    run(app, body)
    lines = [json.loads(line) for line in capture.lines]
    assert len(lines) == 2
    sync, missing = lines
    for line in lines:
        for key in ("timestamp", "level", "request_id", "method", "route", "status"):
            assert key in line, key
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["level"] == "INFO"
    assert sync["request_id"] == "req-42"
    assert sync["route"] == "/api/attendance/sync" and sync["method"] == "POST"
    assert sync["status"] == 200 and sync["user"] == "p1"
    assert missing["route"] == "unmatched" and missing["status"] == 404
    assert missing["user"] is None and missing["request_id"]  # generated by the API


def test_json_formatter_extra_and_exception() -> None:
    fmt = JsonFormatter()
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        rec = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "hi %s", ("there",), sys.exc_info()
        )
    rec.__dict__.update(custom={"a": 1}, obj=object())
    out = json.loads(fmt.format(rec))
    assert out["message"] == "hi there" and out["level"] == "ERROR" and out["logger"] == "x"
    assert out["custom"] == {"a": 1} and isinstance(out["obj"], str)
    assert "ValueError: bad" in out["exception"]
    assert "\n" not in fmt.format(rec)


# -- collect_from_node ---------------------------------------------------------


@dataclass
class FakeSession:
    status: PeerStatus


@dataclass
class FakePeer:
    session: FakeSession


@dataclass
class FakeLink:
    peer: FakePeer
    duplicate: bool = False


@dataclass
class FakeNode:
    links: list[FakeLink] = field(default_factory=list)


@dataclass(frozen=True)
class FakeConflict:
    id: str


@dataclass
class FakeReplica:
    open: dict[str, list[FakeConflict]]
    behind: set[str] = field(default_factory=set)  # loaded, not caught up
    unloaded: set[str] = field(default_factory=set)

    def events(self) -> list[str]:
        return list(self.open)

    def conflicts(self, event: str) -> list[FakeConflict]:
        self.unloaded.discard(event)  # reading loads it
        return self.open[event]

    def is_loaded(self, event: str) -> bool:
        return event not in self.unloaded

    def is_current(self, event: str) -> bool:
        return self.is_loaded(event) and event not in self.behind


def link(device: str | None, pending: int, **counts: int) -> FakeLink:
    return FakeLink(
        FakePeer(FakeSession(PeerStatus(peer=device, pending_entries=pending, **counts)))
    )


def test_collect_from_node() -> None:
    m = Metrics()
    a = link("gate-a", 3, entries_received=5, entries_sent=2, bytes_received=100, bytes_sent=40)
    b = link("gate-b", 0)
    node = FakeNode([a, b, link("gate-a", 9), link(None, 7)])
    node.links[2].duplicate = True
    rep = FakeReplica({"e1": [FakeConflict("c1"), FakeConflict("c2")], "e2": []})
    collect_from_node(m, node, rep)
    text = m.exposition().decode()
    assert value(text, "headcount_connected_devices") == 2
    assert value(text, "headcount_device_lag_entries", device="gate-a") == 3
    assert value(text, "headcount_device_lag_entries", device="gate-b") == 0
    assert value(text, "headcount_entries_in_total", source="peer") == 5
    assert value(text, "headcount_entries_out_total", source="peer") == 2
    assert value(text, "headcount_bytes_in_total", source="peer") == 100
    assert value(text, "headcount_bytes_out_total", source="peer") == 40
    assert value(text, "headcount_conflicts_open", event="e1") == 2
    assert value(text, "headcount_conflicts_open", event="e2") == 0

    # Progress is counted once; a gone device's lag series disappears;
    # a conflict that is no longer open counts as resolved.
    a.peer.session.status.entries_received = 8
    a.peer.session.status.pending_entries = 1
    node.links.remove(b)
    rep.open["e1"] = [FakeConflict("c2"), FakeConflict("c3")]
    collect_from_node(m, node, rep)
    collect_from_node(m, node, rep)
    text = m.exposition().decode()
    assert value(text, "headcount_connected_devices") == 1
    assert value(text, "headcount_device_lag_entries", device="gate-a") == 1
    assert ("headcount_device_lag_entries", (("device", "gate-b"),)) not in samples(text)
    assert value(text, "headcount_entries_in_total", source="peer") == 8
    assert value(text, "headcount_conflicts_open", event="e1") == 2
    assert value(text, "headcount_conflicts_resolved_total", event="e1") == 1

    collect_from_node(m, None, FakeReplica({}))
    text = m.exposition().decode()
    assert ("headcount_conflicts_open", (("event", "e1"),)) not in samples(text)


def test_collect_from_real_idle_node_and_replica(replica: Replica) -> None:
    from types import SimpleNamespace

    m = Metrics()
    collect_from_node(m, SimpleNamespace(links=[]), replica)
    text = m.exposition().decode()
    assert value(text, "headcount_connected_devices") == 0
    assert value(text, "headcount_conflicts_open", event=EVENT) == 0


def test_collect_from_real_nodes_over_tls(tmp_path, clock: FakeClock) -> None:
    from headcount.pki.org import init_org

    org = init_org(tmp_path / "org", "Example Events")
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    gate = enrolled_replica(tmp_path, org, "gate", Role.GATE, clock)
    admin.create_event("ev", "Conf")
    admin.import_participants("ev", [{"id": f"p{i}", "name": f"N{i}"} for i in range(5)])
    m = Metrics()
    seen: dict[str, Any] = {}

    async def main() -> None:
        a = tls_node(admin, [])
        seen["before"] = node_serving(a)()
        await a.start()
        g = tls_node(gate, [("127.0.0.1", a.port)])
        at_gate = effect_pulse(g)
        await g.start()
        await await_until(
            lambda: "ev" in gate.events() and gate.status("ev").participants == 5,
            10,
            "the event reached the gate",
            pulse=at_gate,
        )
        collect_from_node(m, a, admin)
        seen["serving"] = node_serving(a)()
        await g.stop()
        await a.stop()
        seen["stopped"] = node_serving(a)()

    asyncio.run(asyncio.wait_for(main(), 20))
    text = m.exposition().decode()
    assert seen == {"before": False, "serving": True, "stopped": False}
    assert value(text, "headcount_connected_devices") == 1
    assert ("headcount_device_lag_entries", (("device", gate.device_id),)) in samples(text)
    assert value(text, "headcount_entries_out_total", source="peer") > 0
    assert value(text, "headcount_bytes_out_total", source="peer") > 0
    assert value(text, "headcount_conflicts_open", event="ev") == 0
    for r in (admin, gate):
        r.close()


def test_conflict_gauges_never_force_a_relay_to_catch_up() -> None:
    """An event whose document is behind (lazily accepted entries not yet
    applied) keeps its last count; events not loaded yet are loaded a few
    per collection, not all at once."""
    m = Metrics()
    events = {f"e{i}": [FakeConflict(f"c{i}")] for i in range(10)}
    rep = FakeReplica(events, unloaded=set(events))
    collect_from_node(m, None, rep)
    assert len(rep.unloaded) == 10 - LOADS_PER_COLLECTION
    rep.unloaded.clear()
    collect_from_node(m, None, rep)
    assert value(m.exposition().decode(), "headcount_conflicts_open", event="e0") == 1
    rep.behind.add("e0")
    rep.open["e0"] = [FakeConflict("c0"), FakeConflict("x")]  # not read while behind
    collect_from_node(m, None, rep)
    assert value(m.exposition().decode(), "headcount_conflicts_open", event="e0") == 1
    rep.behind.clear()
    collect_from_node(m, None, rep)
    assert value(m.exposition().decode(), "headcount_conflicts_open", event="e0") == 2
