"""The relay's audit trail under attack (issue 11).

1. Refusals that cost the sender nothing (no token, a bad token, the rate
   limit) cost the relay a bounded number of audit rows, hence of fsyncs:
   at most one per source (or user) and reason per interval and a bounded
   number in all, whatever the request rate; the metrics count every one.
2. Authenticated requests keep their audit rows, one per request.
3. The trail is scoped to the events an admin's token grants.
4. An audit file of the first release is upgraded on open.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from headcount import Replica, Role
from headcount.relay import ApiLimits, AuditLog, AuditRecord, TokenAuthority, create_app
from headcount.relay.http.ops import Metrics
from headcount.relay.throttle import AuditThrottle

from .support.clock import FakeClock
from .support.relay_api import EVENT, SECRET, record

SYNC = "/api/attendance/sync"
E2 = "e2"


class CountingAudit(AuditLog):
    """An audit log that counts its durable writes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes = 0

    def record(self, row: AuditRecord) -> None:
        self.writes += 1
        super().record(row)


class Relay:
    """The API over one replica with a file-backed audit log and metrics."""

    def __init__(self, replica: Replica, clock: FakeClock, audit: CountingAudit, **limits: Any):
        self.clock = clock
        self.audit = audit
        self.tokens = TokenAuthority(SECRET)
        self.metrics = Metrics()
        self.app = create_app(
            replica,
            self.tokens,
            limits=ApiLimits(**limits),
            audit=audit,
            clock=clock,
            metrics=self.metrics,
        )

    def token(self, user: str, role: str = "user", events: Any = (EVENT,)) -> str:
        grant = "*" if events == "*" else list(events)
        return self.tokens.issue(user, role, grant, now_s=self.clock.now // 1000, ttl_s=86_400)

    def metric(self, name: str, **labels: str) -> float:
        text = self.metrics.exposition().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return s.value
        return 0.0

    def run(self, body: Callable[[TestClient], Any]) -> None:
        async def main() -> None:
            async with TestClient(TestServer(self.app, host="127.0.0.1")) as client:
                await body(client)

        asyncio.run(main())


@pytest.fixture
def relay(
    make_replica: Callable[..., Replica], clock: FakeClock, tmp_path: Path
) -> Iterator[Relay]:
    replica = make_replica("relay", role=Role.ADMIN)
    for event in (EVENT, E2):
        replica.create_event(event)
        replica.import_participants(event, [{"id": f"p{i}", "name": f"N{i}"} for i in range(3)])
    audit = CountingAudit(tmp_path / "audit.db")
    yield Relay(replica, clock, audit, rate_requests=5, rate_window_s=60)
    audit.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- 1. refusals cost a bounded number of rows ----------------------------------------


def test_a_flood_of_bad_tokens_writes_one_row_per_reason_and_interval(relay: Relay) -> None:
    forged = relay.token("p1")[:-4] + "AAAA"
    expired = relay.tokens.issue("p1", "user", [EVENT], now_s=relay.clock.now // 1000 - 10, ttl_s=5)

    async def body(client: TestClient) -> None:
        for i in range(300):
            headers = [{}, auth(forged), auth(expired), {"Authorization": "Basic x"}][i % 4]
            resp = await client.post(SYNC, json={"records": [record()]}, headers=headers)
            assert resp.status == 401
        relay.clock.advance(60_000)  # the next interval: one more row per reason
        for headers in ({}, auth(forged), auth(forged)):
            assert (await client.post(SYNC, json={}, headers=headers)).status == 401
        for path in (f"/api/events/{EVENT}/attendance", "/api/audit"):  # reads: counted
            assert (await client.get(path, headers=auth(forged))).status == 401

    relay.run(body)
    rows = relay.audit.query(limit=1000)
    assert relay.audit.writes == len(rows) == 5
    assert sorted(r.outcome for r in rows) == sorted(
        ["missing_token", "invalid_token", "token_expired", "missing_token", "invalid_token"]
    )
    assert all(r.user is None and r.events == () and r.source == "127.0.0.1" for r in rows)
    metric = "headcount_http_unauthenticated_requests_total"
    assert relay.metric(metric, route=SYNC, reason="missing_token") == 150 + 1
    assert relay.metric(metric, route=SYNC, reason="invalid_token") == 75 + 2
    assert relay.metric(metric, route=SYNC, reason="token_expired") == 75
    attendance = "/api/events/{event}/attendance"
    assert relay.metric(metric, route=attendance, reason="invalid_token") == 1
    assert relay.metric(metric, route="/api/audit", reason="invalid_token") == 1
    skipped = "headcount_audit_rows_skipped_total"
    assert relay.metric(skipped, reason="missing_token") == 150 + 1 - 2
    assert relay.metric(skipped, reason="invalid_token") == 75 + 2 - 2


def test_many_sources_cannot_buy_more_rows_than_the_bound(
    make_replica: Callable[..., Replica], clock: FakeClock, tmp_path: Path
) -> None:
    """Requests from 8 loopback addresses: one row each while the interval's
    budget (3 rows) lasts, then none."""
    replica = make_replica("relay", role=Role.ADMIN)
    audit = CountingAudit(tmp_path / "audit.db")
    relay = Relay(replica, clock, audit, refusal_rows=3, refusal_interval_s=60)

    async def body(client: TestClient) -> None:
        url = client.make_url(SYNC)
        for n in range(2, 10):
            connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{n}", 0))
            async with aiohttp.ClientSession(connector=connector) as session:
                for _ in range(5):
                    async with session.post(url, json={}) as resp:
                        assert resp.status == 401

    relay.run(body)
    rows = audit.query(limit=100)
    assert audit.writes == len(rows) == 3
    assert len({r.source for r in rows}) == 3
    assert relay.metric("headcount_audit_rows_skipped_total", reason="missing_token") == 40 - 3
    audit.close()


def test_rate_limited_requests_are_throttled_per_user(relay: Relay) -> None:
    token = relay.token("p1")

    async def body(client: TestClient) -> None:
        statuses = []
        for _ in range(50):
            resp = await client.post(SYNC, json={"records": []}, headers=auth(token))
            statuses.append(resp.status)
        assert statuses == [200] * 5 + [429] * 45

    relay.run(body)
    outcomes = [r.outcome for r in relay.audit.query(user="p1", limit=100)]
    assert outcomes == ["ok"] * 5 + ["rate_limited"]
    assert relay.metric("headcount_audit_rows_skipped_total", reason="rate_limited") == 44


# -- 2. authenticated requests keep their rows -----------------------------------------


def test_authenticated_requests_keep_one_row_each(relay: Relay) -> None:
    admin = relay.token("boss", "admin", "*")

    async def body(client: TestClient) -> None:
        answers = [
            await client.post(SYNC, json={"records": [record(userId="p1")]}, headers=auth(admin)),
            await client.post(SYNC, data=b"[" * 5000, headers=auth(admin)),
            await client.post(SYNC, json={"records": [{"x": 1}]}, headers=auth(admin)),
            await client.post(
                SYNC, json={"records": [record(facilityId=E2, userId="p2")]}, headers=auth(admin)
            ),
        ]
        assert [a.status for a in answers] == [200, 400, 400, 200]

    relay.run(body)
    rows = relay.audit.query(user="boss", limit=100)
    assert relay.audit.writes == 4
    assert [(r.status, r.outcome) for r in rows] == [
        (200, "ok"),
        (400, "malformed_json"),
        (400, "invalid_record"),
        (200, "ok"),
    ]
    assert [r.events for r in rows] == [(EVENT,), (), (), (E2,)]  # a "*" token names none
    assert rows[0].synced == 1 and rows[0].devices == ("device_123",)


# -- 3. the trail is scoped to the token's events ---------------------------------------


def test_the_audit_trail_shows_an_admin_only_the_events_it_grants(relay: Relay) -> None:
    seen: dict[str, list[str]] = {}

    async def body(client: TestClient) -> None:
        writers = {
            "w1": relay.token("w1", "admin", [EVENT]),
            "w2": relay.token("w2", "admin", [E2]),
            "both": relay.token("both", "admin", [EVENT, E2]),
        }
        await client.post(
            SYNC, json={"records": [record(userId="p1")]}, headers=auth(writers["w1"])
        )
        await client.post(
            SYNC,
            json={"records": [record(facilityId=E2, userId="p1")]},
            headers=auth(writers["w2"]),
        )
        both = [record(userId="p2"), record(facilityId=E2, userId="p2")]
        await client.post(SYNC, json={"records": both}, headers=auth(writers["both"]))
        await client.post(SYNC, data=b"{", headers=auth(writers["w1"]))  # no records: its grant
        await client.post(SYNC, json={})  # no token: tied to no event
        readers = {
            "e1": relay.token("r1", "admin", [EVENT]),
            "e2": relay.token("r2", "admin", [E2]),
            "e1+e2": relay.token("r3", "admin", [EVENT, E2]),
            "*": relay.token("r4", "admin", "*"),
        }
        for name, token in readers.items():
            resp = await client.get("/api/audit", headers=auth(token))
            assert resp.status == 200
            data = (await resp.json())["data"]
            seen[name] = [f"{row['user']}:{row['outcome']}" for row in data]
            for row in data:
                assert set(row["events"]) <= ({EVENT, E2} if name in ("*", "e1+e2") else {name})
        resp = await client.get("/api/audit", headers=auth(relay.token("p1", "user", "*")))
        assert resp.status == 403

    relay.run(body)
    assert seen["e1"] == ["w1:ok", "w1:malformed_json"]
    assert seen["e2"] == ["w2:ok"]
    assert seen["e1+e2"] == ["w1:ok", "w2:ok", "both:ok", "w1:malformed_json"]
    assert seen["*"] == [*seen["e1+e2"], "None:missing_token"]


# -- 4. upgrade ------------------------------------------------------------------------

FIRST_RELEASE = """
CREATE TABLE sync_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, at_ms INTEGER NOT NULL,
    user TEXT, role TEXT, devices TEXT NOT NULL, records INTEGER NOT NULL,
    synced INTEGER NOT NULL, conflicts INTEGER NOT NULL, errors INTEGER NOT NULL,
    status INTEGER NOT NULL, outcome TEXT NOT NULL
);
INSERT INTO sync_audit (request_id, at_ms, user, role, devices, records, synced, conflicts,
    errors, status, outcome) VALUES ('old', 5, 'p1', 'user', '["d"]', 1, 1, 0, 0, 200, 'ok');
"""


def test_an_audit_file_of_the_first_release_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE)
    db.close()
    log = AuditLog(path)
    log.record(AuditRecord("new", 6, "p2", "user", (), 0, 0, 0, 0, 200, "ok", (EVENT,), "::1"))
    assert [(r.request_id, r.events, r.source) for r in log.query()] == [
        ("old", (), None),
        ("new", (EVENT,), "::1"),
    ]
    assert [r.request_id for r in log.query(events={EVENT})] == ["new"]  # old rows: "*" only
    assert log.query(events={E2}) == []
    log.close()
    AuditLog(path).close()  # opening again adds nothing twice


# -- the throttle's invariant ---------------------------------------------------------


@settings(max_examples=300, deadline=None, print_blob=True)
@given(
    interval=st.integers(1, 50),
    max_rows=st.integers(1, 6),
    steps=st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from("abcdefgh"), st.sampled_from("xy")),
        max_size=200,
    ),
)
def test_the_throttle_admits_exactly_what_its_bounds_allow(
    interval: int, max_rows: int, steps: list[tuple[int, str, str]]
) -> None:
    """Against a brute-force model: a refusal is admitted iff its key had no
    row in the last interval and fewer than ``max_rows`` rows were admitted
    in it; the table never holds more than ``max_rows`` keys."""
    throttle = AuditThrottle(interval, max_rows)
    admitted: list[tuple[int, tuple[str, str]]] = []
    now = 0
    for dt, source, reason in steps:
        now += dt
        recent = [key for at, key in admitted if at > now - interval]
        expected = (source, reason) not in recent and len(recent) < max_rows
        assert throttle.admit(source, reason, now) is expected
        if expected:
            admitted.append((now, (source, reason)))
        assert len(throttle) <= max_rows
