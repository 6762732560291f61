"""Contract tests of the relay's read endpoints and conflict resolution.

A real aiohttp server on 127.0.0.1 over a replica on the fake clock (the
harness of ``support.relay_api``); conflicts are made by two gates editing a
critical field concurrently and syncing into the relay replica.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from headcount import Replica, Role

from .support.clock import FakeClock
from .support.relay_api import EVENT, ApiHarness, assert_error, post_records, record
from .support.sync import sync

BASE = f"/api/events/{EVENT}"
N = 23


@pytest.fixture
def h(make_replica: Callable[..., Replica], clock: FakeClock) -> ApiHarness:
    replica = make_replica("relay", role=Role.ADMIN)
    replica.create_event(EVENT)
    replica.create_event("e2")
    people = [{"id": f"p{i:02d}", "name": f"N{i}", "allergies": "none"} for i in range(N)]
    replica.import_participants(EVENT, people)
    for i in range(N):
        if i % 3 != 2:  # every third participant never scans
            replica.check_in(EVENT, f"p{i:02d}")
            clock.advance(10)
    return ApiHarness(replica, clock)


async def get(client: TestClient, token: str | None, path: str, **params: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    query = {k: str(v) for k, v in params.items()}
    resp = await client.get(path, params=query, headers=headers)
    assert resp.headers["X-Request-Id"]
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def post(client: TestClient, token: str | None, path: str, data: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    raw = data if isinstance(data, str | bytes) else json.dumps(data)
    resp = await client.post(path, data=raw, headers=headers)
    assert resp.headers["X-Request-Id"]
    return resp.status, await resp.json()


async def walk(client: TestClient, token: str, path: str, limit: int, **params: Any) -> list[Any]:
    """Every page of a listing; checks the change token is the same on each."""
    items: list[Any] = []
    cursor = None
    tokens = set()
    while True:
        extra = {"cursor": cursor} if cursor else {}
        st, body = await get(client, token, path, limit=limit, **params, **extra)
        assert st == 200, body
        assert body["success"] is True and len(body["data"]) <= limit
        items.extend(body["data"])
        tokens.add(body["changes"]["next"])
        cursor = body["page"]["nextCursor"]
        if cursor is None:
            break
    assert len(tokens) == 1
    return items


def make_conflict(h: ApiHarness, make_replica: Callable[..., Replica]) -> str:
    north, south = make_replica("north"), make_replica("south")
    sync(h.replica, north)
    sync(h.replica, south)
    north.upsert_participant(EVENT, "p00", {"allergies": "nuts"})
    south.upsert_participant(EVENT, "p00", {"allergies": "fish"})
    sync(north, h.replica)
    sync(south, h.replica)
    [c] = h.replica.conflicts(EVENT)
    return c.id


# -- authentication and authorisation ---------------------------------------------


@pytest.mark.parametrize(
    "path", ["attendance", "participants", "devices", "conflicts", "conflicts/x/resolve"]
)
def test_every_route_needs_a_token_and_the_event(h: ApiHarness, path: str) -> None:
    async def body(client: TestClient) -> None:
        call = post if path.endswith("resolve") else get
        args = ({"choose": "a:1"},) if call is post else ()
        st, data = await call(client, None, f"{BASE}/{path}", *args)
        assert_error(st, data, 401, "missing_token")
        st, data = await call(client, "forged.token.here", f"{BASE}/{path}", *args)
        assert_error(st, data, 401, "invalid_token")
        other = h.token(role="admin", events=["e2"])
        st, data = await call(client, other, f"{BASE}/{path}", *args)
        assert_error(st, data, 403, "event_forbidden")
        star = h.token(role="admin", events="*")
        st, data = await call(client, star, f"/api/events/nope/{path}", *args)
        assert_error(st, data, 404, "unknown_event")

    h.run(body)


def test_user_sees_only_their_own_records(h: ApiHarness) -> None:
    async def body(client: TestClient) -> None:
        user = h.token(user="p01")
        st, data = await get(client, user, f"{BASE}/attendance")
        assert st == 200 and [a["participant"] for a in data["data"]] == ["p01"]
        st, data = await get(client, user, f"{BASE}/participants")
        assert st == 200 and [p["id"] for p in data["data"]] == ["p01"]
        st, data = await get(client, user, f"{BASE}/attendance", participant="p01")
        assert st == 200 and len(data["data"]) == 1
        for what in ("attendance", "participants"):
            st, data = await get(client, user, f"{BASE}/{what}", participant="p03")
            assert_error(st, data, 403, "forbidden")
        for what in ("devices", "conflicts"):
            st, data = await get(client, user, f"{BASE}/{what}")
            assert_error(st, data, 403, "forbidden")
        # a user who never scanned has no attendance record, but a participant one
        st, data = await get(client, h.token(user="p02"), f"{BASE}/attendance")
        assert st == 200 and data["data"] == []

    h.run(body)


# -- attendance and participants ------------------------------------------------------


def test_attendance_admin_sees_all_with_scans(h: ApiHarness) -> None:
    async def body(client: TestClient) -> None:
        st, data = await get(client, h.token(role="admin"), f"{BASE}/attendance")
        assert st == 200
        ids = [a["participant"] for a in data["data"]]
        assert ids == sorted(f"p{i:02d}" for i in range(N) if i % 3 != 2)
        first = data["data"][0]
        assert first["checkIn"]["kind"] == "in" and first["checkOut"] is None
        assert [s["id"] for s in first["scans"]] == [first["checkIn"]["id"]]
        assert data["page"]["nextCursor"] is None and data["changes"]["next"]
        st, data = await get(client, h.token(role="admin"), f"{BASE}/attendance", participant="p04")
        assert [a["participant"] for a in data["data"]] == ["p04"]

    h.run(body)


@pytest.mark.parametrize("what", ["attendance", "participants"])
def test_pagination_walk_has_no_duplicates_or_gaps(h: ApiHarness, what: str) -> None:
    async def body(client: TestClient) -> None:
        admin = h.token(role="admin")
        st, whole = await get(client, admin, f"{BASE}/{what}", limit=1000)
        assert st == 200 and whole["page"]["nextCursor"] is None
        key = "participant" if what == "attendance" else "id"
        want = [x[key] for x in whole["data"]]
        assert len(want) == (N if what == "participants" else N - N // 3)
        for limit in (1, 4, 7, len(want)):
            got = [x[key] for x in await walk(client, admin, f"{BASE}/{what}", limit)]
            assert got == want

    h.run(body)


def test_changes_since_a_token(h: ApiHarness) -> None:
    async def body(client: TestClient) -> None:
        admin = h.token(role="admin")
        st, data = await get(client, admin, f"{BASE}/attendance")
        since = data["changes"]["next"]
        st, data = await get(client, admin, f"{BASE}/attendance", since=since)
        assert st == 200 and data["data"] == [] and data["changes"]["next"] == since
        h.clock.advance(1000)
        h.replica.check_in(EVENT, "p02")  # new record
        h.replica.check_out(EVENT, "p00")  # changed record
        h.clock.advance(1000)
        got = await walk(client, admin, f"{BASE}/attendance", 1, since=since)
        assert [a["participant"] for a in got] == ["p00", "p02"]
        assert got[0]["checkOut"]["kind"] == "out" and len(got[0]["scans"]) == 2
        st, data = await get(client, admin, f"{BASE}/attendance", since=since)
        later = data["changes"]["next"]
        assert later != since
        st, data = await get(client, admin, f"{BASE}/attendance", since=later)
        assert data["data"] == []
        # participants: an edit shows up after the token, nothing else
        st, data = await get(client, admin, f"{BASE}/participants")
        psince = data["changes"]["next"]
        h.replica.upsert_participant(EVENT, "p07", {"name": "New"})
        st, data = await get(client, admin, f"{BASE}/participants", since=psince)
        assert [(p["id"], p["name"]) for p in data["data"]] == [("p07", "New")]
        # a user's feed is restricted too
        user = h.token(user="p02")
        st, data = await get(client, user, f"{BASE}/attendance", since=since)
        assert [a["participant"] for a in data["data"]] == ["p02"]

    h.run(body)


def test_bad_parameters(h: ApiHarness) -> None:
    async def body(client: TestClient) -> None:
        admin = h.token(role="admin")
        for bad in ("0", "1001", "x", "-3"):
            st, data = await get(client, admin, f"{BASE}/attendance", limit=bad)
            assert_error(st, data, 400, "invalid_parameter")
        for param in ("cursor", "since"):
            st, data = await get(client, admin, f"{BASE}/attendance", **{param: "!!notbase64"})
            assert_error(st, data, 400, "invalid_cursor")
        st, data = await get(client, admin, f"{BASE}/participants", limit=2)
        cursor = data["page"]["nextCursor"]
        st, data = await get(client, admin, f"{BASE}/attendance", cursor=cursor)
        assert_error(st, data, 400, "invalid_cursor")  # a participants cursor
        st, data = await get(client, admin, f"{BASE}/participants", deleted="maybe")
        assert_error(st, data, 400, "invalid_parameter")

    h.run(body)


# -- devices ------------------------------------------------------------------------------


def test_device_status(h: ApiHarness) -> None:
    me = h.replica.device_id
    vv = h.replica.version_vector(EVENT)
    total = sum(vv.values())
    h.replica.store.record_ack("gate-a", EVENT, {me: vv[me] - 3}, h.clock.now - 5000)
    h.replica.store.record_ack("gate-b", EVENT, dict(vv), h.clock.now - 1000)

    async def body(client: TestClient) -> None:
        st, data = await get(client, h.token(role="admin"), f"{BASE}/devices")
        assert st == 200, data
        assert data["relay"] == {
            "device": me,
            "entries": total,
            "versionVector": vv,
            "logCount": h.replica.store.log_count(EVENT),
        }
        by = {d["device"]: d for d in data["data"]}
        assert set(by) == {"gate-a", "gate-b"}
        a, b = by["gate-a"], by["gate-b"]
        assert a["acknowledged"] and a["pending"] == 3 and a["pendingByAuthor"] == {me: 3}
        assert a["has"] == total - 3 and a["lagMs"] == 5000 and a["lastAckAt"].endswith("Z")
        assert b["pending"] == 0 and b["has"] == total and b["lagMs"] == 1000
        assert a["authored"] == 0

    h.run(body)


def test_device_that_never_acknowledged_lacks_everything(
    h: ApiHarness, make_replica: Callable[..., Replica]
) -> None:
    make_conflict(h, make_replica)  # north and south authored entries

    async def body(client: TestClient) -> None:
        st, data = await get(client, h.token(role="admin"), f"{BASE}/devices")
        total = data["relay"]["entries"]
        assert st == 200 and len(data["data"]) == 2
        for d in data["data"]:
            assert d["authored"] == 1 and not d["acknowledged"]
            assert d["pending"] == total and d["lastAckAt"] is None and d["lagMs"] is None

    h.run(body)


# -- conflicts ------------------------------------------------------------------------------


def test_conflicts_list_and_resolve_by_choice(
    h: ApiHarness, make_replica: Callable[..., Replica]
) -> None:
    cid = make_conflict(h, make_replica)
    admin = h.token(role="admin")
    path = f"{BASE}/conflicts/{cid}/resolve"

    async def body(client: TestClient) -> None:
        st, data = await get(client, admin, f"{BASE}/conflicts")
        assert st == 200
        [c] = data["data"]
        assert c["id"] == cid and c["participant"] == "p00" and c["field"] == "allergies"
        values = {x["value"]: x["dot"] for x in c["candidates"]}
        assert set(values) == {"nuts", "fish"}
        st, data = await post(client, h.token(user="p00"), path, {"choose": values["fish"]})
        assert_error(st, data, 403, "forbidden")
        st, data = await post(client, admin, path, {"choose": "nobody:9"})
        assert_error(st, data, 400, "unknown_candidate")
        st, data = await post(client, admin, path, {"choose": values["fish"]})
        assert st == 200 and data["success"] and data["data"]["openConflicts"] == 0
        assert data["data"]["resolved"]["id"] == cid
        st, data = await get(client, admin, f"{BASE}/conflicts")
        assert data["data"] == []
        st, data = await post(client, admin, path, {"choose": values["fish"]})
        assert_error(st, data, 404, "unknown_conflict")

    h.run(body)
    assert h.replica.participant(EVENT, "p00").fields["allergies"] == "fish"


def test_resolve_with_a_new_value(h: ApiHarness, make_replica: Callable[..., Replica]) -> None:
    cid = make_conflict(h, make_replica)

    async def body(client: TestClient) -> None:
        path = f"{BASE}/conflicts/{cid}/resolve"
        st, data = await post(client, h.token(role="admin"), path, {"restore": True})
        assert_error(st, data, 400, "invalid_resolution")  # not a deletion conflict
        st, data = await post(client, h.token(role="admin"), path, {"value": "nuts, fish"})
        assert st == 200, data

    h.run(body)
    assert h.replica.participant(EVENT, "p00").fields["allergies"] == "nuts, fish"


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        "[]",
        {},
        {"choose": "a:1", "value": 3},
        {"choose": 5},
        {"restore": "yes"},
        {"value": 1, "extra": 2},
    ],
)
def test_resolve_malformed_body_is_400(
    h: ApiHarness, make_replica: Callable[..., Replica], payload: Any
) -> None:
    cid = make_conflict(h, make_replica)

    async def body(client: TestClient) -> None:
        path = f"{BASE}/conflicts/{cid}/resolve"
        st, data = await post(client, h.token(role="admin"), path, payload)
        assert st == 400 and data["error"]["code"] in ("malformed_json", "invalid_request")
        assert data["success"] is False and data["requestId"]

    h.run(body)
    assert len(h.replica.conflicts(EVENT)) == 1


def test_resolve_unknown_conflict_is_404(h: ApiHarness) -> None:
    async def body(client: TestClient) -> None:
        path = f"{BASE}/conflicts/nope/resolve"
        st, data = await post(client, h.token(role="admin"), path, {"choose": "a:1"})
        assert_error(st, data, 404, "unknown_conflict")

    h.run(body)


def test_the_audit_trail_is_queryable_by_admins_only(h) -> None:
    async def body(client) -> None:
        st, _, _ = await post_records(
            client, h.token("p01"), {"records": [record()]}, headers={"X-Request-Id": "audit-1"}
        )
        assert st == 200
        admin = {"Authorization": f"Bearer {h.token('boss', role='admin', events='*')}"}
        resp = await client.get("/api/audit?user=p01", headers=admin)
        data = (await resp.json())["data"]
        assert resp.status == 200
        assert [(r["requestId"], r["user"], r["synced"], r["outcome"]) for r in data] == [
            ("audit-1", "p01", 1, "ok")
        ]
        resp = await client.get("/api/audit", headers={"Authorization": f"Bearer {h.token()}"})
        assert resp.status == 403
        resp = await client.get("/api/audit?from=yesterday", headers=admin)
        assert resp.status == 400

    h.run(body)
