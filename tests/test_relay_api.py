"""Contract tests of ``POST /api/attendance/sync`` (reference 004_1e7dd788cc7acd62).

A real aiohttp server on 127.0.0.1 over a replica on the fake clock; every
request-level failure also checks that the replica's scans did not change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from headcount import Replica, Role
from headcount.relay import ApiLimits, TokenAuthority
from headcount.relay.http.common import STATE

from .support.clock import T0, FakeClock
from .support.relay_api import EVENT, ApiHarness, assert_error, iso, post_records, record


@pytest.fixture
def h(make_replica: Callable[..., Replica], clock: FakeClock) -> ApiHarness:
    replica = make_replica("relay", role=Role.ADMIN)
    replica.create_event(EVENT)
    replica.create_event("e2")
    replica.import_participants(EVENT, [{"id": "p1", "name": "Ada"}, {"id": "p2", "name": "Bo"}])
    return ApiHarness(replica, clock)


def refused(h: ApiHarness, payload: Any, status: int, code: str, **kw: Any) -> dict[str, Any]:
    """POST, expect a request-level error, and check that nothing was written."""
    token = kw.pop("token", h.token())
    before = h.scans()
    out: dict[str, Any] = {}

    async def body(client: TestClient) -> None:
        st, headers, data = await post_records(client, token, payload, **kw)
        assert_error(st, data, status, code)
        out.update(headers=headers, body=data)

    h.run(body)
    assert h.scans() == before
    return out


# -- the contract -----------------------------------------------------------------


def test_happy_path_has_the_contract_shape(h: ApiHarness) -> None:
    recs = [record(), record(clockOut=None, deviceId="device_9", clockIn=iso(T0 - 1000))]

    async def body(client: TestClient) -> None:
        st, headers, data = await post_records(
            client, h.token(), {"records": recs}, headers={"X-Request-Id": "req-42"}
        )
        assert st == 200
        assert headers["X-Request-Id"] == "req-42"
        assert data == {
            "success": True,
            "synced": 2,
            "conflicts": 0,
            "errors": 0,
            "timestamp": iso(T0).replace("Z", "").split(".")[0] + ".000Z",
            "data": {
                "synced": [{"id": r["id"], "action": "created"} for r in recs],
                "conflicts": [],
                "errors": [],
            },
        }

    h.run(body)
    att = h.replica.event(EVENT).attendance("p1")
    assert len(att.scans) == 3
    assert {s.device for s in att.scans} == {"device_123", "device_9"}
    [row] = h.audit.query(user="p1")
    assert (row.request_id, row.records, row.synced, row.outcome) == ("req-42", 2, 2, "ok")
    assert row.devices == ("device_123", "device_9")


def test_resend_with_same_ids_is_a_duplicate(h: ApiHarness) -> None:
    recs = [record(), record(clockIn=iso(T0 - 500), clockOut=None, deviceId="d2")]

    async def body(client: TestClient) -> None:
        await post_records(client, h.token(), {"records": recs})
        before = h.scans()
        st, _, data = await post_records(client, h.token(), {"records": recs})
        assert st == 200 and data["synced"] == 2
        assert [s["action"] for s in data["data"]["synced"]] == ["duplicate", "duplicate"]
        assert h.scans() == before

    h.run(body)


def test_clock_out_added_later_is_an_update(h: ApiHarness) -> None:
    rec = record(clockOut=None)

    async def body(client: TestClient) -> None:
        await post_records(client, h.token(), {"records": [rec]})
        _, _, data = await post_records(
            client, h.token(), {"records": [{**rec, "clockOut": iso(T0)}]}
        )
        assert data["data"]["synced"] == [{"id": rec["id"], "action": "updated"}]

    h.run(body)
    assert len(h.replica.event(EVENT).attendance("p1").scans) == 2


def test_duplicate_by_device_and_client_timestamp(h: ApiHarness) -> None:
    without_id = record()
    del without_id["id"]

    async def body(client: TestClient) -> None:
        _, _, first = await post_records(client, h.token(), {"records": [without_id]})
        before = h.scans()
        _, _, again = await post_records(client, h.token(), {"records": [without_id]})
        assert again["data"]["synced"][0]["action"] == "duplicate"
        assert again["data"]["synced"][0]["id"] == first["data"]["synced"][0]["id"]
        # a fresh id for the same device and times is still a repeat
        _, _, fresh = await post_records(
            client, h.token(), {"records": [{**without_id, "id": str(uuid.uuid4())}]}
        )
        assert fresh["data"]["synced"][0]["action"] == "duplicate"
        assert h.scans() == before

    h.run(body)


def test_admin_writes_for_another_user(h: ApiHarness) -> None:
    async def body(client: TestClient) -> None:
        token = h.token("boss", "admin", "*")
        _, _, data = await post_records(client, token, {"records": [record(userId="p2")]})
        assert data["synced"] == 1

    h.run(body)
    assert len(h.replica.event(EVENT).attendance("p2").scans) == 2


def test_another_users_record_id_is_a_conflict(h: ApiHarness) -> None:
    rec = record()

    async def body(client: TestClient) -> None:
        await post_records(client, h.token("p1"), {"records": [rec]})
        before = h.scans()
        st, _, data = await post_records(client, h.token("p2"), {"records": [rec]})
        assert st == 200 and data["synced"] == 0 and data["conflicts"] == 1
        assert data["data"]["conflicts"][0]["resolution"] == "server_wins"
        assert h.scans() == before

    h.run(body)
    assert h.replica.event(EVENT).attendance("p2").scans == ()


def test_unknown_event_and_participant_are_per_record_errors(h: ApiHarness) -> None:
    recs = [record(facilityId="nope"), record(), record(facilityId="e2")]

    async def body(client: TestClient) -> None:
        st, _, data = await post_records(client, h.token(events="*"), {"records": recs})
        assert st == 200 and (data["synced"], data["errors"]) == (1, 2)
        codes = [(e["index"], e["code"]) for e in data["data"]["errors"]]
        assert codes == [(0, "unknown_event"), (2, "unknown_participant")]

    h.run(body)
    assert h.scans() == 2


def test_future_timestamp_is_rejected_per_record(h: ApiHarness) -> None:
    future = record(clockIn=iso(T0 - 1000), clockOut=iso(T0 + 3_600_000))

    async def body(client: TestClient) -> None:
        _, _, data = await post_records(client, h.token(), {"records": [future, record()]})
        assert data["synced"] == 1
        assert data["data"]["errors"][0]["code"] == "future_timestamp"

    h.run(body)
    assert h.scans() == 2  # the future record wrote neither its check-in nor its check-out


# -- request-level failures ---------------------------------------------------------------


def test_no_token(h: ApiHarness) -> None:
    out = refused(h, {"records": [record()]}, 401, "missing_token", token=None)
    assert out["headers"]["WWW-Authenticate"].startswith("Bearer")


def test_expired_token(h: ApiHarness) -> None:
    old = h.token(now_s=h.clock.now // 1000 - 7200, ttl_s=3600)
    out = refused(h, {"records": [record()]}, 401, "token_expired", token=old)
    assert 'error="invalid_token"' in out["headers"]["WWW-Authenticate"]


def test_forged_token(h: ApiHarness) -> None:
    forged = TokenAuthority(b"x" * 32).issue("p1", "admin", "*", now_s=T0 // 1000, ttl_s=60)

    async def body(client: TestClient) -> None:
        for token in (forged, "not.a.jwt"):
            st, headers, data = await post_records(client, token, {"records": [record()]})
            assert_error(st, data, 401, "invalid_token")
            assert 'error="invalid_token"' in headers["WWW-Authenticate"]

    h.run(body)
    assert h.scans() == 0


def test_user_role_cannot_write_another_users_record(h: ApiHarness) -> None:
    recs = [record(), record(userId="p2")]
    refused(h, {"records": recs}, 403, "forbidden")


def test_event_not_in_token(h: ApiHarness) -> None:
    refused(h, {"records": [record(), record(facilityId="e2")]}, 403, "event_forbidden")


def test_malformed_json(h: ApiHarness) -> None:
    refused(h, b'{"records": [', 400, "malformed_json")


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"records": {}},
        {"records": [1]},
        {"records": [record(), record(clockIn="yesterday")]},
        {"records": [record(clockIn="2026-01-01T08:00:00")]},  # no timezone
        {"records": [record(id="1234")]},
        {"records": [record(deviceId=7)]},
        {"records": [record(syncVersion="1")]},
        {"records": [record(clockOut=iso(T0 - 7_200_000))]},  # before clockIn
    ],
)
def test_wrong_shapes(h: ApiHarness, payload: Any) -> None:
    code = "invalid_request" if "records" not in str(payload) or "{}" in str(payload) else None
    out = refused(h, payload, 400, code or "invalid_record")
    assert out["body"]["error"]["message"]


def test_oversize_body(make_replica: Callable[..., Replica], clock: FakeClock) -> None:
    replica = make_replica("small", role=Role.ADMIN)
    replica.create_event(EVENT)
    h = ApiHarness(replica, clock, ApiLimits(max_body_bytes=2000))
    refused(h, {"records": [record() for _ in range(20)]}, 413, "body_too_large")


def test_too_many_records(h: ApiHarness) -> None:
    refused(h, {"records": [record() for _ in range(501)]}, 413, "too_many_records")


def test_rate_limit(make_replica: Callable[..., Replica], clock: FakeClock) -> None:
    replica = make_replica("limited", role=Role.ADMIN)
    replica.create_event(EVENT)
    h = ApiHarness(replica, clock, ApiLimits(rate_requests=3, rate_window_s=300))

    async def body(client: TestClient) -> None:
        for _ in range(3):
            st, _, _ = await post_records(client, h.token(), {"records": []})
            assert st == 200
        h.clock.advance(100_000)
        st, headers, data = await post_records(client, h.token(), {"records": []})
        assert_error(st, data, 429, "rate_limited")
        assert headers["Retry-After"] == "200"
        st, _, _ = await post_records(client, h.token("p2"), {"records": []})
        assert st == 200  # per user
        h.clock.advance(200_000)
        st, _, _ = await post_records(client, h.token(), {"records": []})
        assert st == 200

    h.run(body)
    assert [r.outcome for r in h.audit.query(user="p1")] == ["ok"] * 3 + ["rate_limited", "ok"]


def test_rate_limit_forgets_idle_users(
    make_replica: Callable[..., Replica], clock: FakeClock
) -> None:
    """The sync handler's own requests forget the users idle for a window
    (no timer, no other caller): the limiter stays bounded by the users of
    the last window, and a user within it keeps their count."""
    replica = make_replica("limited", role=Role.ADMIN)
    replica.create_event(EVENT)
    h = ApiHarness(replica, clock, ApiLimits(rate_requests=3, rate_window_s=300))
    rate = h.app[STATE].rate

    async def body(client: TestClient) -> None:
        for user in ("p2", "idle-1", "idle-2"):
            st, _, _ = await post_records(client, h.token(user), {"records": []})
            assert st == 200
        h.clock.advance(100_000)
        for _ in range(3):
            st, _, _ = await post_records(client, h.token("p1"), {"records": []})
            assert st == 200
        assert len(rate) == 4
        h.clock.advance(200_000)  # the first three users: idle for a whole window
        st, headers, data = await post_records(client, h.token("p1"), {"records": []})
        assert_error(st, data, 429, "rate_limited")
        assert headers["Retry-After"] == "100"  # p1 kept all three requests
        assert len(rate) == 1 and "p1" in rate and "p2" not in rate
        h.clock.advance(100_000)  # now p1 is idle too
        st, _, _ = await post_records(client, h.token("p2"), {"records": []})
        assert st == 200
        assert len(rate) == 1 and "p2" in rate and "p1" not in rate
        for _ in range(3):  # a forgotten user starts afresh
            st, _, _ = await post_records(client, h.token("p1"), {"records": []})
            assert st == 200

    h.run(body)


def test_unknown_route_and_bad_request_id_are_json(h: ApiHarness) -> None:
    async def body(client: TestClient) -> None:
        resp = await client.get("/api/attendance/sync", headers={"X-Request-Id": "bad id!"})
        data = await resp.json()
        assert_error(resp.status, data, 405, "method_not_allowed")
        assert resp.headers["X-Request-Id"] == data["requestId"] != "bad id!"

    h.run(body)
