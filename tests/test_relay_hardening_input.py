"""Hostile input to every JSON endpoint of the relay's HTTP API (issue 11).

Deeply nested JSON, numbers JSON has no place for (``NaN``, ``Infinity``,
``1e400``, integers of thousands of digits), non-scalar values where a scalar
is expected, wrong types in every field, and out-of-range or oddly written
numeric query parameters: each is a 4xx with the API's JSON error body, never
a 500, and a refused write leaves the stored data as it was.

The hypothesis tests generate JSON as *text* (so they can write what
``json.dumps`` cannot: deep nesting, ``NaN``, huge integers) and send it to a
real server on 127.0.0.1; hypothesis prints the failing example and a
reproduction blob. Deterministic cases that used to answer 500 come first.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from headcount import Replica, Role
from headcount.relay import ApiLimits

from .support.clock import T0, FakeClock
from .support.relay_api import (
    EVENT,
    ApiHarness,
    LiveApi,
    assert_error,
    assert_error_shape,
    iso,
    post_records,
    record,
)
from .support.sync import sync

BASE = f"/api/events/{EVENT}"
SYNC = "/api/attendance/sync"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def h(make_replica: Callable[..., Replica], clock: FakeClock) -> ApiHarness:
    replica = make_replica("relay", role=Role.ADMIN)
    replica.create_event(EVENT)
    replica.create_event("e2")
    people = [{"id": f"p{i}", "name": f"N{i}", "allergies": "none"} for i in range(5)]
    replica.import_participants(EVENT, people)
    replica.check_in(EVENT, "p0")
    clock.advance(10)
    return ApiHarness(replica, clock, ApiLimits(rate_requests=1_000_000))  # never the limit


@pytest.fixture
def hc(h: ApiHarness, make_replica: Callable[..., Replica]) -> ApiHarness:
    """``h`` with one open conflict (two gates edited a critical field)."""
    north, south = make_replica("north"), make_replica("south")
    sync(h.replica, north)
    sync(h.replica, south)
    north.upsert_participant(EVENT, "p1", {"allergies": "nuts"})
    south.upsert_participant(EVENT, "p1", {"allergies": "fish"})
    sync(north, h.replica)
    sync(south, h.replica)
    assert len(h.replica.conflicts(EVENT)) == 1
    return h


def snapshot(replica: Replica) -> dict[str, Any]:
    """What a write would change: per event, the log, scans, conflicts, participants."""
    out: dict[str, Any] = {}
    for event in sorted(replica.events()):
        ev = replica.event(event)
        out[event] = (
            replica.version_vector(event),
            replica.store.log_count(event),
            sorted(ev.doc.scans),
            sorted(c.id for c in ev.conflicts()),
            [p.to_dict() for p in ev.participants(include_deleted=True)],
        )
    return out


async def send(
    client: TestClient, method: str, target: str, token: str | None, data: bytes | None = None
) -> tuple[int, Any]:
    """One request with a pre-encoded path and query; the status and the JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    url = URL(f"http://127.0.0.1:{client.port}{target}", encoded=True)
    resp = await client.session.request(method, url, data=data, headers=headers)
    assert resp.status < 500, (resp.status, await resp.text())
    assert resp.content_type == "application/json", await resp.text()
    return resp.status, await resp.json()


def _conflict_id(h: ApiHarness) -> str:
    [conflict] = h.replica.conflicts(EVENT)
    return conflict.id


# -- known cases ---------------------------------------------------------------------

DEEP_LIST = "[" * 1000 + "]" * 1000
DEEP_DICT = '{"a":' * 1000 + "1" + "}" * 1000


@pytest.mark.parametrize(
    "payload, code",
    [
        (DEEP_LIST.encode(), "malformed_json"),
        (b'{"records": ' + DEEP_LIST.encode() + b"}", "malformed_json"),
        (
            json.dumps({"records": [{"x": 1}], "junk": "NaN"}).replace('"NaN"', "NaN"),
            "malformed_json",
        ),
        (b'{"records": [], "x": 1e400}', "malformed_json"),
        (b'{"records": [], "x": ' + b"9" * 5000 + b"}", "malformed_json"),
        (json.dumps({"records": [record(conflictResolutionStrategy=["server_wins"])]}), None),
        (json.dumps({"records": [record(conflictResolutionStrategy={"a": 1})]}), None),
        (json.dumps({"records": [record(id={"uuid": "x"})]}), None),
        (json.dumps({"records": [record(id=["a" * 100_000])]}), None),
        (json.dumps({"records": [record(userId=["p1"])]}), None),
        (json.dumps({"records": [record(syncVersion=10**30)]}), "ok"),
        (json.dumps({"records": [record(syncVersion=1.5)]}), None),
        (
            json.dumps({"records": [record(clockIn="9999-12-31T23:59:59-23:59", clockOut=None)]}),
            "ok",
        ),
    ],
)
def test_hostile_sync_bodies_are_refused_with_400(
    h: ApiHarness, payload: bytes | str, code: str | None
) -> None:
    before = snapshot(h.replica)
    token = h.token(role="admin", events="*")

    async def body(client: TestClient) -> None:
        status, _, data = await post_records(client, token, payload)
        if code == "ok":  # valid, if odd: answered per record, never 500
            assert status == 200, data
            return
        assert_error(status, data, 400, code or data["error"]["code"])
        if code is None:
            assert data["error"]["code"] in {"invalid_record", "invalid_request"}, data
        assert len(json.dumps(data)) < 2_000  # a client's value is not echoed back whole

    h.run(body)
    if code != "ok":
        assert snapshot(h.replica) == before


@pytest.mark.parametrize(
    "field", ["facilityId", "deviceId", "userId", "id", "clockIn", "conflictResolutionStrategy"]
)
def test_a_lone_surrogate_in_any_string_is_refused_before_it_reaches_the_document(
    h: ApiHarness, field: str
) -> None:
    """JSON may escape a lone surrogate (``"\\ud800"``); no UTF-8 encoder takes
    it, and pycrdt panics (a BaseException) when a scan carries one."""
    before = snapshot(h.replica)
    token = h.token(role="admin", events="*")
    payload = json.dumps({"records": [record(**{"userId": "p3", field: "x\ud800"})]})
    assert "\\ud800" in payload

    async def body(client: TestClient) -> None:
        status, _, data = await post_records(client, token, payload)
        assert_error(status, data, 400, "malformed_json")
        status, _, data = await post_records(client, token, {"records": [record(userId="p3")]})
        assert status == 200 and data["synced"] == 1  # and the relay still serves

    h.run(body)
    after = snapshot(h.replica)
    assert after[EVENT][2] != before[EVENT][2]  # only the valid record's scans were added
    assert after["e2"] == before["e2"]


@pytest.mark.parametrize("header", [b"Bearer a\xff\xfe.b.c", b"Bearer \xc3\x28", b"\xff\xff"])
def test_an_authorization_header_that_is_not_utf8_is_a_401(h: ApiHarness, header: bytes) -> None:
    async def body(client: TestClient) -> None:
        for method, path in (("POST", SYNC), ("GET", "/api/audit"), ("GET", f"{BASE}/devices")):
            status, data = await raw_request(client.port, method, path, header)
            assert_error_shape(status, data)
            assert status == 401, data

    h.run(body)


async def raw_request(
    port: int | None, method: str, path: str, authorization: bytes
) -> tuple[int, Any]:
    """A request written byte for byte (headers a client library would refuse)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: relay\r\nContent-Length: 2\r\n".encode()
        + b"Authorization: "
        + authorization
        + b"\r\nConnection: close\r\n\r\n{}"
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, content = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    is_json = b"application/json" in head
    return status, json.loads(content) if is_json else content


@pytest.mark.parametrize(
    "payload",
    [
        '{"value": "a\\ud800"}',
        '{"choose": "\\udfff"}',
        '{"value": NaN}',
        '{"value": -Infinity}',
        '{"value": 1e999}',
        '{"value": ' + DEEP_LIST + "}",
        '{"value": ' + DEEP_DICT + "}",
        '{"value": ' + "[" * 40 + "]" * 40 + "}",
        '{"value": ' + "7" * 4500 + "}",
        '{"choose": ' + DEEP_LIST + "}",
        '{"restore": ' + DEEP_DICT + "}",
        DEEP_LIST,
    ],
)
def test_hostile_resolutions_are_refused_with_400(hc: ApiHarness, payload: str) -> None:
    h = hc
    before = snapshot(h.replica)
    token = h.token(role="admin", events=[EVENT])
    target = f"{BASE}/conflicts/{_conflict_id(h)}/resolve"

    async def body(client: TestClient) -> None:
        status, data = await send(client, "POST", target, token, payload.encode())
        assert_error_shape(status, data)
        assert status == 400, data

    h.run(body)
    assert snapshot(h.replica) == before


@pytest.mark.parametrize(
    "path, query",
    [
        ("/api/audit", "from=%C2%B2"),  # a superscript two: str.isdigit() but not int()
        ("/api/audit", "to=%D9%A3"),  # an Arabic-Indic three
        ("/api/audit", "from=" + "9" * 30),  # beyond SQLite's integers
        ("/api/audit", "to=-1"),
        ("/api/audit", "limit=%2B5"),  # "+5"
        ("/api/audit", "limit=5_0"),
        ("/api/audit", "limit=" + "1" * 5000),
        (f"{BASE}/attendance", "limit=%205"),  # " 5"
        (f"{BASE}/attendance", "limit=1001"),
        (f"{BASE}/participants", "limit=0"),
        (f"{BASE}/attendance", "since=" + base64.urlsafe_b64encode(DEEP_LIST.encode()).decode()),
        (
            f"{BASE}/participants",
            "cursor="
            + base64.urlsafe_b64encode(b'{"v": 1, "k": ' + DEEP_DICT.encode() + b"}").decode(),
        ),
        (
            f"{BASE}/attendance",
            "since=" + base64.urlsafe_b64encode(b'{"v": 1, "p": [NaN, "x"]}').decode(),
        ),
        (f"{BASE}/participants", "deleted=%FF%FE"),
    ],
)
def test_bad_query_parameters_are_refused_with_400(h: ApiHarness, path: str, query: str) -> None:
    token = h.token(role="admin", events="*")

    async def body(client: TestClient) -> None:
        status, data = await send(client, "GET", f"{path}?{query}", token)
        assert_error_shape(status, data)
        assert status == 400, data

    h.run(body)


def test_in_range_audit_bounds_still_work(h: ApiHarness) -> None:
    token = h.token(role="admin", events="*")

    async def body(client: TestClient) -> None:
        status, _, _ = await post_records(client, h.token("p2"), {"records": [record(userId="p2")]})
        assert status == 200
        for query, rows in (
            (f"from={T0 - 1}", 1),
            (f"to={T0}", 0),
            ("from=0&to=9007199254740991", 1),
        ):
            status, data = await send(client, "GET", f"/api/audit?{query}", token)
            assert status == 200 and len(data["data"]) == rows, (query, data)

    h.run(body)


# -- generated input -----------------------------------------------------------------

# JSON as text: scalars, including what json.dumps would not write.
scalars = st.one_of(
    st.sampled_from(["null", "true", "false", "0", "-0", "1", "-1", "0.5", "1e3", "[]", "{}"]),
    st.integers().map(str),
    st.integers(min_value=17, max_value=6_000).map(lambda n: "9" * n),  # 2^53 .. past 4300 digits
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E-400"]),
    st.text(max_size=12).map(json.dumps),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3).map(json.dumps),  # "\ud800"
    st.sampled_from([json.dumps(iso(T0)), '"2026-13-45T99:00:00Z"', '"server_wins"']),
)


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(items: dict[str, str]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in items.items()) + "}"


def _nest(depth: int, kind: str, inner: str) -> str:
    if kind == "list":
        return "[" * depth + inner + "]" * depth
    return '{"k":' * depth + inner + "}" * depth


deep = st.builds(_nest, st.integers(1, 1000), st.sampled_from(["list", "dict"]), scalars)
values = st.recursive(
    st.one_of(scalars, deep),
    lambda kids: st.one_of(
        st.lists(kids, max_size=4).map(_array),
        st.dictionaries(st.text(max_size=6), kids, max_size=4).map(_object),
    ),
    max_leaves=8,
)

FIELDS = (
    "facilityId",
    "deviceId",
    "userId",
    "clockIn",
    "clockOut",
    "clientTimestamp",
    "syncVersion",
    "conflictResolutionStrategy",
    "id",
    "clockInLatitude",
)


@st.composite
def sync_bodies(draw: st.DrawFn) -> bytes:
    """A sync body: a record with some fields replaced by hostile values, or
    hostile values in place of the record, the list or the whole body."""
    fields = {k: json.dumps(v) for k, v in record(userId="p3").items()}
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4, unique=True)):
        fields[name] = draw(values)
    shape = draw(st.sampled_from(["record", "records", "body", "item", "bytes"]))
    if shape == "record":
        text = _object({"records": _array([_object(fields)])})
    elif shape == "records":
        text = _object({"records": draw(values)})
    elif shape == "item":
        text = _object({"records": _array([_object(fields), draw(values)])})
    elif shape == "body":
        text = draw(values)
    else:
        return draw(st.binary(max_size=64))
    return text.encode()


def test_generated_sync_bodies_never_500(h: ApiHarness) -> None:
    """Property: any body answers < 500; a refusal has the error body's shape
    and changes no stored data (a 200 reports every record's outcome)."""
    token = h.token(role="admin", events="*")
    with LiveApi(h.app) as live:

        @FUZZ
        @given(payload=sync_bodies())
        def check(payload: bytes) -> None:
            before = snapshot(h.replica)
            assert live.client is not None
            status, data = live.call(send(live.client, "POST", SYNC, token, payload))
            if status == 200:
                assert data["success"] is True
                data_items = data["data"]
                assert data["synced"] == len(data_items["synced"])
            else:
                assert_error_shape(status, data)
                assert snapshot(h.replica) == before

        check()


@st.composite
def resolutions(draw: st.DrawFn) -> bytes:
    """A resolve body that must be refused: hostile ``choose``/``restore``,
    a ``value`` JSON has no place for, extra keys, or a hostile whole body."""
    kind = draw(st.sampled_from(["choose", "restore", "value", "extra", "body", "bytes"]))
    if kind == "choose":
        text = _object({"choose": draw(values.filter(lambda v: not v.startswith('"')))})
    elif kind == "restore":
        text = _object({"restore": draw(values.filter(lambda v: v not in ("true", "false")))})
    elif kind == "value":
        bad = st.one_of(
            st.builds(_nest, st.integers(33, 1000), st.sampled_from(["list", "dict"]), scalars),
            st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"]),
            st.integers(4301, 6000).map(lambda n: "9" * n),
        )
        text = _object({"value": draw(bad)})
    elif kind == "extra":
        text = _object({"choose": '"x"', "restore": draw(values)})
    elif kind == "body":
        text = draw(values.filter(lambda v: not v.startswith("{")))
    else:
        return draw(st.binary(max_size=64))
    return text.encode()


def test_generated_resolutions_never_500(hc: ApiHarness) -> None:
    """Property: a hostile resolution is a 4xx with the error body and
    resolves nothing."""
    h = hc
    token = h.token(role="admin", events=[EVENT])
    target = f"{BASE}/conflicts/{_conflict_id(h)}/resolve"
    before = snapshot(h.replica)
    with LiveApi(h.app) as live:

        @FUZZ
        @given(payload=resolutions())
        def check(payload: bytes) -> None:
            assert live.client is not None
            status, data = live.call(send(live.client, "POST", target, token, payload))
            assert_error_shape(status, data)

        check()
    assert snapshot(h.replica) == before


QUERY_NAMES = (
    "limit",
    "offset",
    "since",
    "cursor",
    "from",
    "to",
    "participant",
    "deleted",
    "user",
    "outcome",
)
GET_PATHS = (
    f"{BASE}/attendance",
    f"{BASE}/participants",
    f"{BASE}/devices",
    f"{BASE}/conflicts",
    "/api/audit",
)
printable = st.text(st.characters(blacklist_categories=["Cs"]), max_size=16)
param_values = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.integers(17, 5_000).map(lambda n: "9" * n),
    st.floats().map(repr),
    st.sampled_from(["", "NaN", "-0", "+5", " 5", "5_0", "0x10", "\u00b2", "\u0663", "1e3"]),
    printable,
    values.map(lambda v: base64.urlsafe_b64encode(v.encode()).decode()),
    values.map(lambda v: base64.urlsafe_b64encode(b'{"v":1,"p":' + v.encode() + b"}").decode()),
)


MAX_QUERY = 7_000  # aiohttp's parser refuses a request line over 8190 bytes (plain 400)


@st.composite
def queries(draw: st.DrawFn) -> str:
    """A query string: generated values, percent-encoded, plus raw bytes
    (invalid UTF-8 included) percent-encoded as they are; a parameter that
    would make it longer than :data:`MAX_QUERY` is left out, so every request
    reaches the application."""
    parts: list[str] = []
    size = 0
    for name in draw(st.lists(st.sampled_from(QUERY_NAMES), max_size=4)):
        if draw(st.booleans()):
            value = quote(draw(param_values), safe="")
        else:
            value = "".join(f"%{b:02X}" for b in draw(st.binary(max_size=8)))
        part = f"{name}={value}"
        if size + len(part) + 1 <= MAX_QUERY:
            parts.append(part)
            size += len(part) + 1
    return "&".join(parts)


def test_generated_query_parameters_never_500(hc: ApiHarness) -> None:
    """Property: any query to any read endpoint answers 200 or a 4xx with the
    error body, and changes nothing."""
    h = hc
    tokens = [h.token(role="admin", events="*"), h.token(role="admin"), h.token("p1")]
    before = snapshot(h.replica)
    with LiveApi(h.app) as live:

        @FUZZ
        @given(path=st.sampled_from(GET_PATHS), query=queries(), who=st.integers(0, 2))
        def check(path: str, query: str, who: int) -> None:
            assert live.client is not None
            status, data = live.call(send(live.client, "GET", f"{path}?{query}", tokens[who]))
            if status == 200:
                assert data["success"] is True and isinstance(data["data"], list)
            else:
                assert_error_shape(status, data)

        check()
    assert snapshot(h.replica) == before


def test_generated_authorization_headers_never_500(h: ApiHarness) -> None:
    """Property: any bytes in the Authorization header answer < 500; what the
    application answers (JSON) is a 401 with the error body."""
    with LiveApi(h.app) as live:
        assert live.client is not None
        port = live.client.port

        @FUZZ
        @given(
            scheme=st.sampled_from([b"Bearer ", b"bearer ", b"", b"Basic "]),
            token=st.binary(max_size=64).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
            target=st.sampled_from(
                [("POST", SYNC), ("GET", "/api/audit"), ("GET", f"{BASE}/attendance")]
            ),
        )
        def check(scheme: bytes, token: bytes, target: tuple[str, str]) -> None:
            status, data = live.call(raw_request(port, *target, scheme + token))
            assert status < 500, (status, data)
            if isinstance(data, dict):
                assert_error_shape(status, data)
                assert status == 401, data

        check()
