"""The relay's listeners under attack (issue 11).

1. Slow-header connections are dropped: a client that sends its request
   line a byte at a time is disconnected ``header_timeout`` after it
   connected (first request) or after the last response (kept alive),
   on the TLS port and the operations port alike.
2. ``/metrics`` is served only on the operations listener (127.0.0.1 by
   default); the public TLS port answers 404 there.
3. The configuration keys ``ops`` and ``header_timeout``.

Slowness is driven by the test's own pacing: it sends one byte, then waits
(up to ``TRICKLE_S``) for the server to close the connection, which is both
the pace and the explicit event awaited.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from headcount import InputError, Role
from headcount.pki.org import init_org
from headcount.relay.http.listener import listen, runner
from headcount.relay.server import DEFAULT_OPS, Relay, load_relay_config
from headcount.relay.tokens import TokenAuthority, create_secret_file
from headcount.replica.replica import wall_clock_ms

from .support.devices import enrolled_replica

TIMEOUT_S = 0.6  # the header deadline under test
TRICKLE_S = 0.05  # a byte every TRICKLE_S at most
BOUND_S = TIMEOUT_S + 2.0  # the server must have closed by then
SLOW_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Padding: " + b"a" * 10_000


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    """Send :data:`SLOW_REQUEST` a byte at a time until the server closes the
    connection; the seconds it took. Fails if it is still open after
    :data:`BOUND_S` or the server answers instead."""
    started = time.monotonic()
    for i in range(len(SLOW_REQUEST)):
        assert time.monotonic() - started < BOUND_S, "the slow client is still connected"
        try:
            writer.write(SLOW_REQUEST[i : i + 1])
            await writer.drain()
            data = await asyncio.wait_for(reader.read(1024), TRICKLE_S)
        except TimeoutError:
            continue  # still open: the next byte
        except (ConnectionError, ssl.SSLError):
            break  # reset by the server
        assert data == b"", f"the server answered a request it never fully got: {data!r}"
        break  # closed by the server
    else:
        raise AssertionError("the whole slow request was sent")
    writer.close()
    return time.monotonic() - started


async def fetch_once_then_trickle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> float:
    """One complete request on a kept-alive connection, then a slow one."""
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    await asyncio.wait_for(reader.readexactly(length), 5)
    return await trickle(reader, writer)


def hello_app() -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/echo", echo)
    return app


@asynccontextmanager
async def served(app: web.Application, on_timeout: Callable[[], None]) -> AsyncIterator[int]:
    app_runner = runner(app, TIMEOUT_S)
    await app_runner.setup()
    server = await listen(
        app_runner, "127.0.0.1", 0, header_timeout=TIMEOUT_S, on_timeout=on_timeout
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await app_runner.cleanup()


def test_a_slow_header_client_is_dropped_and_a_normal_one_served() -> None:
    timeouts: list[int] = []

    async def main() -> tuple[float, float]:
        async with served(hello_app(), lambda: timeouts.append(1)) as port:
            first = await trickle(*await asyncio.open_connection("127.0.0.1", port))
            kept = await fetch_once_then_trickle(*await asyncio.open_connection("127.0.0.1", port))
            async with aiohttp.ClientSession() as http:  # a normal client is unaffected
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 200 and await resp.json() == {"status": "ok"}
            return first, kept

    first, kept = asyncio.run(asyncio.wait_for(main(), 30))
    assert TIMEOUT_S * 0.8 <= first < BOUND_S  # closed by the deadline, not before
    assert TIMEOUT_S * 0.8 <= kept < BOUND_S
    assert timeouts == [1]  # the first request's deadline (the later one is aiohttp's)


def test_a_quiet_websocket_outlives_the_header_deadline() -> None:
    """The deadline bounds the headers only: a WebSocket session (a gate's
    /sync) that stays quiet for several deadlines is still open."""
    timeouts: list[int] = []

    async def main() -> str:
        async with served(hello_app(), lambda: timeouts.append(1)) as port:
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(f"http://127.0.0.1:{port}/echo") as ws:
                    with pytest.raises(TimeoutError):  # nothing comes for 3 deadlines ...
                        await ws.receive(timeout=TIMEOUT_S * 3)
                    await ws.send_str("still here")  # ... and the session is alive
                    reply = await ws.receive(timeout=5)
                    return str(reply.data)

    assert asyncio.run(asyncio.wait_for(main(), 30)) == "still here"
    assert timeouts == []


# -- the relay ------------------------------------------------------------------------


def _client_ctx(org_dir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(org_dir / "org.crt"))
    ctx.check_hostname = False  # devices are named by id, not host name
    return ctx


def test_the_relay_serves_metrics_only_to_operators_and_drops_slow_headers(tmp_path: Path) -> None:
    org = init_org(tmp_path / "org", "Example Events")
    enrolled_replica(tmp_path, org, "relay", Role.RELAY, wall_clock_ms).close()
    secret = tmp_path / "jwt.secret"
    tokens = TokenAuthority(create_secret_file(secret))
    toml = tmp_path / "relay.toml"
    toml.write_text(
        f'https = "127.0.0.1:0"\nops = "127.0.0.1:0"\nheader_timeout = {TIMEOUT_S}\n'
        f'token_secret = "{secret}"\n'
    )
    config = load_relay_config(toml, tmp_path / "relay")
    assert config.ops == ("127.0.0.1", 0) and config.header_timeout == TIMEOUT_S
    relay = Relay(config)
    ctx = _client_ctx(tmp_path / "org")
    out: dict[str, object] = {}

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(relay.run(ready))
        await asyncio.wait_for(ready.wait(), 10)
        public = f"https://127.0.0.1:{relay.https_port}"
        ops = f"http://127.0.0.1:{relay.ops_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{public}/metrics", ssl=ctx) as resp:
                out["public"] = (resp.status, (await resp.json())["error"]["code"])
            async with http.get(f"{public}/healthz", ssl=ctx) as resp:
                out["public_health"] = resp.status
            async with http.post(f"{public}/api/attendance/sync", json={}, ssl=ctx) as resp:
                out["refused"] = resp.status
            out["tls"] = await trickle(
                *await asyncio.open_connection("127.0.0.1", relay.https_port, ssl=ctx)
            )
            out["plain_on_ops"] = await trickle(
                *await asyncio.open_connection("127.0.0.1", relay.ops_port)
            )
            async with http.get(f"{ops}/metrics") as resp:
                out["ops"] = resp.status
                out["text"] = await resp.text()
            async with http.get(f"{ops}/readyz") as resp:
                out["ops_ready"] = resp.status
        relay.stopped.set()
        await asyncio.wait_for(task, 15)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert out["public"] == (404, "not_found")
    assert out["public_health"] == 200 and out["refused"] == 401
    assert out["ops"] == 200 and out["ops_ready"] == 200
    for key in ("tls", "plain_on_ops"):
        elapsed = out[key]
        assert isinstance(elapsed, float) and TIMEOUT_S * 0.8 <= elapsed < BOUND_S, (key, elapsed)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(str(out["text"]))
        for s in family.samples
    }
    route = (("reason", "missing_token"), ("route", "/api/attendance/sync"))
    assert samples[("headcount_http_unauthenticated_requests_total", route)] == 1
    assert samples[("headcount_http_header_timeouts_total", (("listener", "https"),))] == 1
    assert samples[("headcount_http_header_timeouts_total", (("listener", "ops"),))] == 1
    assert tokens.issue("p1", "user", ["e1"], now_s=int(time.time()), ttl_s=60)  # secret in use


# -- configuration --------------------------------------------------------------------


def test_ops_and_header_timeout_configuration(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    default = load_relay_config(None, tmp_path)
    assert default.ops == DEFAULT_OPS and DEFAULT_OPS[0] == "127.0.0.1"
    assert default.header_timeout == 10.0
    path.write_text('ops = "0.0.0.0:9100"\nheader_timeout = 2.5\n')
    config = load_relay_config(path, tmp_path)
    assert config.ops == ("0.0.0.0", 9100) and config.header_timeout == 2.5
    path.write_text("ops = false\n")
    assert load_relay_config(path, tmp_path).ops is None


@pytest.mark.parametrize(
    "text, message",
    [
        ('ops = "nowhere"', "HOST:PORT"),
        ("ops = true", "HOST:PORT"),
        ("header_timeout = 0", "header_timeout"),
        ("header_timeout = 1000", "header_timeout"),
        ('header_timeout = "10"', "header_timeout"),
    ],
)
def test_bad_ops_configuration(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(text + "\n")
    with pytest.raises(InputError, match=message):
        load_relay_config(path, tmp_path)


def test_route_labels_stay_bounded() -> None:
    """Route labels are templates: a flood of distinct paths adds no series."""
    from headcount.relay.http.ops import Metrics, install

    metrics = Metrics()
    app = web.Application()
    install(app, metrics, {})

    async def main() -> None:
        app_runner = runner(app, TIMEOUT_S)
        await app_runner.setup()
        server = await listen(app_runner, "127.0.0.1", 0, header_timeout=TIMEOUT_S)
        port = server.sockets[0].getsockname()[1]
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                async with http.get(f"http://127.0.0.1:{port}/x/{uuid.uuid4()}") as resp:
                    assert resp.status == 404
        server.close()
        await app_runner.cleanup()

    asyncio.run(asyncio.wait_for(main(), 30))
    text = metrics.exposition().decode()
    routes = {
        s.labels.get("route")
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "headcount_http_requests_total"
    }
    assert routes == {"unmatched"}
