"""The relay's HTTP API under test: a real aiohttp server on 127.0.0.1 over
one replica on the fake clock, tokens, attendance records and error checks."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from headcount import Replica
from headcount.relay import ApiLimits, AuditLog, TokenAuthority, create_app

from .clock import T0, FakeClock

SECRET = b"s" * 32
EVENT = "e1"
Call = Callable[[TestClient], Awaitable[None]]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def record(**over: Any) -> dict[str, Any]:
    base = {
        "facilityId": EVENT,
        "clockIn": iso(T0 - 3_600_000),
        "clockOut": iso(T0 - 60_000),
        "clockInLatitude": -1.9536,
        "deviceId": "device_123",
        "clientTimestamp": iso(T0 - 3_600_000),
        "syncVersion": 1,
        "conflictResolutionStrategy": "server_wins",
        "id": str(uuid.uuid4()),
    }
    return {**base, **over}


class ApiHarness:
    """The app over one replica, with tokens and an in-memory audit log."""

    def __init__(self, replica: Replica, clock: FakeClock, limits: ApiLimits | None = None):
        self.replica = replica
        self.clock = clock
        self.tokens = TokenAuthority(SECRET)
        self.audit = AuditLog(":memory:")
        self.app = create_app(replica, self.tokens, limits=limits, audit=self.audit, clock=clock)

    def token(self, user: str = "p1", role: str = "user", events: Any = (EVENT,), **kw: Any) -> str:
        now_s = kw.pop("now_s", self.clock.now // 1000)
        return self.tokens.issue(
            user,
            role,
            list(events) if events != "*" else "*",
            now_s=now_s,
            ttl_s=kw.pop("ttl_s", 3600),
        )

    def run(self, body: Call) -> None:
        async def main() -> None:
            async with TestClient(TestServer(self.app, host="127.0.0.1")) as client:
                await body(client)

        asyncio.run(main())

    def scans(self) -> int:
        return sum(len(self.replica.event(e).doc.scans) for e in self.replica.events())


async def post_records(
    client: TestClient, token: str | None, payload: Any, **kw: Any
) -> tuple[int, Mapping[str, str], Any]:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
    resp = await client.post("/api/attendance/sync", data=data, headers=headers)
    assert resp.headers["X-Request-Id"]
    assert resp.content_type == "application/json"
    return resp.status, resp.headers, await resp.json()


def assert_error(status: int, body: dict[str, Any], want_status: int, code: str) -> None:
    assert status == want_status, body
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["requestId"]


class LiveApi:
    """An app served on 127.0.0.1 by an event loop of its own that runs only
    while a request is made: for hypothesis tests, whose examples are plain
    functions (``live.call(coro)`` runs one coroutine to completion).

    Use as a context manager; the server and the loop are closed on exit.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.client: TestClient | None = None

    def __enter__(self) -> LiveApi:
        async def start() -> TestClient:
            client = TestClient(TestServer(self.app, host="127.0.0.1"))
            await client.start_server()
            return client

        self.client = self.loop.run_until_complete(start())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.loop.run_until_complete(self.client.close())
        self.loop.close()

    def call(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)


def assert_error_shape(status: int, body: Any) -> None:
    """A refusal: 4xx with the API's JSON error body (any code)."""
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict) and body.get("success") is False, body
    error = body.get("error")
    assert isinstance(error, dict), body
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str), body
    assert isinstance(body.get("requestId"), str) and body["requestId"], body
