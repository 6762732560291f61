"""Every transport passes the same conformance suite (tests/support/transport_conformance/),
plus the checks only the asyncio drivers' durability hook (``before_send``)
and the WebSocket transport's framing need."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from headcount.protocol.session import SessionConfig, SyncStatus

from .support.protocol import make_devices
from .support.transport_conformance import (
    EV,
    HARNESSES,
    SUITE,
    Harness,
    MemoryHarness,
    TcpHarness,
    WebSocketHarness,
    delayed_ack_is_sent_on_time_while_replies_wait_for_durability,
    fill,
    one_turn,
    run_case,
)


@pytest.fixture(params=sorted(HARNESSES))
def transport(request: pytest.FixtureRequest) -> Callable[[], Harness]:
    return HARNESSES[request.param]


@pytest.mark.parametrize("case", SUITE, ids=lambda case: case.__name__)
def test_transport_conformance(transport, case):
    asyncio.run(asyncio.wait_for(run_case(transport, case), 25))


# -- the asyncio drivers' durability hook -----------------------------------------------


ASYNCIO = [MemoryHarness, TcpHarness, WebSocketHarness]


@pytest.mark.parametrize("make", ASYNCIO, ids=lambda make: make.name)
def test_timers_are_on_time_while_every_turn_waits_for_durability(make):
    """``before_send`` (the node's group commit) makes a driver wait within
    its turns; the session's timers must not wait for the link to go quiet."""

    def durable() -> Harness:
        h = make()
        h.before_send = one_turn
        return h

    case = delayed_ack_is_sent_on_time_while_replies_wait_for_durability
    asyncio.run(asyncio.wait_for(run_case(durable, case), 25))


# -- WebSocket framing: what a byte stream cannot express ------------------------------


def _ws_case(body: Callable[[WebSocketHarness], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(run_case(WebSocketHarness, body), 25))  # type: ignore[arg-type]


async def _victim_with_raw_client(h: WebSocketHarness, config: SessionConfig):
    (victim,) = make_devices(1)
    fill(victim, 4)
    end, _raw = await h.connect_raw(victim, config)
    _http, ws = h.clients[-1]
    return victim, end, ws


def test_websocket_text_message_is_a_protocol_error():
    async def body(h: WebSocketHarness) -> None:
        victim, end, ws = await _victim_with_raw_client(h, SessionConfig())
        before = victim.version_vector(EV)
        await ws.send_str("hello")
        await h.wait_until(lambda: end.closed, 5)
        assert end.closes == ["malformed"]
        assert end.session.status.status is SyncStatus.FAILED
        assert victim.version_vector(EV) == before

    _ws_case(body)


def test_websocket_oversized_message_is_refused_and_closes():
    config = SessionConfig(max_frame=4_096)

    async def body(h: WebSocketHarness) -> None:
        victim, end, ws = await _victim_with_raw_client(h, config)
        await ws.send_bytes(struct.pack(">I", 8_000) + b"\x00" * 8_000)
        await h.wait_until(lambda: end.closed, 5)
        assert end.closes == ["too_big"]
        msg = await asyncio.wait_for(ws.receive(), 5)  # the victim's Hello, then its close
        while msg.type is aiohttp.WSMsgType.BINARY:
            msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert victim.entry_count(EV) == 4

    _ws_case(body)


def test_websocket_message_must_end_on_a_frame_boundary():
    async def body(h: WebSocketHarness) -> None:
        _victim, end, ws = await _victim_with_raw_client(h, SessionConfig())
        await ws.send_bytes(struct.pack(">I", 100) + b"\x00" * 10)  # half a frame
        await h.wait_until(lambda: end.closed, 5)
        assert end.closes == ["malformed"]

    _ws_case(body)
