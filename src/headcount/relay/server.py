"""``headcount relay``: the store-and-forward hub and cloud bridge.

One relay process holds a replica (role ``relay``) and serves, on one TLS
port, both the WebSocket sync endpoint that gates and other relays connect to
(mutual TLS with organisation certificates) and the HTTP API for systems that
do not speak the peer protocol (JWT bearer tokens, no client certificate
needed). It can also accept peer-protocol TCP connections and dial other
relays, so relays chain. Every entry is stored durably and forwarded
unchanged. Prometheus metrics are served on a second, plain HTTP listener for
operators (``ops``, 127.0.0.1 by default), never on the TLS port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from headcount.archive.schedule import ArchiveSchedule
from headcount.backup.schedule import BackupSchedule
from headcount.core.errors import InputError
from headcount.net.node import Node, NodeConfig, refusal_metrics
from headcount.pki.device import load_device_certificate, ssl_context
from headcount.pki.verify import verify_peer_certificate
from headcount.protocol.session import DEFAULT_ACK_DELAY, SessionConfig
from headcount.relay.http.app import ApiLimits, create_app
from headcount.relay.http.listener import DEFAULT_HEADER_TIMEOUT, listen, runner
from headcount.relay.http.ops import (
    Metrics,
    collect_from_node,
    install,
    node_serving,
    operations_app,
    replica_open,
)
from headcount.replica.replica import Replica
from headcount.service.config import parse_address, read_toml, toml_list
from headcount.service.housekeeping import CompactionSchedule, Housekeeping, parse_sections
from headcount.service.periodic import job_metrics
from headcount.service.runner import stop_on_signals
from headcount.store.audit import AuditLog

from .tokens import TokenAuthority, load_secret_file

DEFAULT_OPS = ("127.0.0.1", 7702)
CATCH_UP_SLICE = 64  # lazily accepted entries applied per turn of the event loop
CATCH_UP_IDLE_S = 0.1


@dataclass(slots=True)
class RelayConfig:
    data_dir: Path
    https: tuple[str, int] = ("127.0.0.1", 8443)
    tcp: tuple[str, int] | None = None
    peers: list[tuple[str, int]] = field(default_factory=list)
    ws_peers: list[str] = field(default_factory=list)
    token_secret: Path | None = None
    rate_limit: int = 20
    rate_window_s: int = 300
    max_body_bytes: int = 1 << 20
    gossip_interval: float = 5.0
    ack_delay: float = DEFAULT_ACK_DELAY
    max_connections: int = 4096
    # the operations listener (/metrics, /healthz, /readyz); None: not served
    ops: tuple[str, int] | None = DEFAULT_OPS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT  # seconds to send a request's headers
    backup: BackupSchedule | None = None  # [backup]: scheduled backups (None: off)
    archive: ArchiveSchedule | None = None  # [archive]: scheduled archiving (None: off)
    # [compaction]: on unless enabled = false (None: off)
    compaction: CompactionSchedule | None = field(default_factory=CompactionSchedule)


def load_relay_config(path: Path | None, data_dir: Path | None) -> RelayConfig:
    """Read ``relay.toml`` (see docs/relay.md).

    Raises:
        InputError: unreadable file, unknown keys, bad values.
    """
    raw = read_toml(path)
    known = {
        "data_dir",
        "https",
        "tcp",
        "peers",
        "ws_peers",
        "token_secret",
        "rate_limit",
        "rate_window_s",
        "max_body_bytes",
        "gossip_interval",
        "ack_delay",
        "max_connections",
        "ops",
        "header_timeout",
        "backup",
        "archive",
        "compaction",
    }
    unknown = set(raw) - known
    if unknown:
        raise InputError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    chosen = data_dir or (Path(raw["data_dir"]) if "data_dir" in raw else None)
    if chosen is None:
        raise InputError("no data directory: set data_dir in the file or pass --data-dir")
    config = RelayConfig(Path(chosen))
    if "https" in raw:
        config.https = parse_address(raw["https"], "https")
    if "tcp" in raw:
        config.tcp = parse_address(raw["tcp"], "tcp")
    if "ops" in raw:
        config.ops = None if raw["ops"] is False else parse_address(raw["ops"], "ops")
    config.peers = [parse_address(p, "peers") for p in toml_list(raw, "peers")]
    config.ws_peers = [str(u) for u in toml_list(raw, "ws_peers")]
    if "token_secret" in raw:
        config.token_secret = Path(raw["token_secret"])
    for key in ("rate_limit", "rate_window_s", "max_body_bytes", "max_connections"):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{key} must be a positive integer")
            setattr(config, key, value)
    if "gossip_interval" in raw:
        value = raw["gossip_interval"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise InputError("gossip_interval must be a positive number of seconds")
        config.gossip_interval = float(value)
    if "header_timeout" in raw:
        value = raw["header_timeout"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
            raise InputError("header_timeout must be a number of seconds from 0 to 300")
        config.header_timeout = float(value)
    if "ack_delay" in raw:
        value = raw["ack_delay"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InputError("ack_delay must be between 0 and 1 second")
        config.ack_delay = float(value)
    jobs = parse_sections(raw, config.data_dir)
    config.backup, config.archive, config.compaction = jobs.backup, jobs.archive, jobs.compaction
    return config


class Relay:
    """A running relay: replica + node + HTTPS (API and /sync)."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.replica = Replica.open(config.data_dir)
        # a relay applies far more than it writes, and reads even less
        self.replica.keep_observers = True
        self.replica.lazy_apply = True
        cert, ca = load_device_certificate(config.data_dir)
        own = verify_peer_certificate(cert, ca, self.replica.wall_clock())
        node_config = NodeConfig(
            listen_host=(config.tcp or ("127.0.0.1", 0))[0],
            listen_port=(config.tcp or ("127.0.0.1", 0))[1],
            peers=config.peers,
            ws_peers=config.ws_peers,
            gossip_interval=config.gossip_interval,
            max_connections=config.max_connections,
            session=SessionConfig(ack_delay=config.ack_delay),
        )
        client_ctx = ssl_context(config.data_dir, server_side=False)
        self.server_ctx = ssl_context(config.data_dir, server_side=True)
        self.node = Node(
            self.replica,
            node_config,
            ssl_context(config.data_dir, server_side=True),
            client_ctx,
            ca,
            own_identity=own,
        )
        # The HTTPS port serves JWT clients too: a client certificate is
        # optional there, and /sync refuses a peer without one.
        self.server_ctx.verify_mode = ssl.CERT_OPTIONAL
        tokens = None
        if config.token_secret is not None:
            tokens = TokenAuthority(load_secret_file(config.token_secret))
        limits = ApiLimits(
            rate_requests=config.rate_limit,
            rate_window_s=config.rate_window_s,
            max_body_bytes=config.max_body_bytes,
        )
        self.audit = AuditLog(config.data_dir / "audit.db")
        self.metrics = Metrics()
        self.node.effect_observers.append(refusal_metrics(self.metrics.registry))
        self.housekeeping = Housekeeping(
            self.replica,
            config.backup,
            config.archive,
            compaction=config.compaction,
            on_outcome=job_metrics(self.metrics.registry),
        )
        self.app = (
            create_app(
                self.replica,
                tokens,
                limits=limits,
                audit=self.audit,
                metrics=self.metrics,
                on_write=self.node.local_write,
            )
            if tokens is not None
            else web.Application()
        )
        self.node.websocket_routes(self.app)
        checks = {"store": replica_open(self.replica), "node": node_serving(self.node)}
        install(self.app, self.metrics, checks)
        self.ops_app = operations_app(self.metrics, checks)
        self.stopped = asyncio.Event()
        self.https_port: int | None = None
        self.ops_port: int | None = None  # None: no operations listener (or not started)
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.Server] = []

    async def run(self, ready: asyncio.Event | None = None) -> None:
        with stop_on_signals(self.stopped):
            await self._serve(ready)

    async def _serve(self, ready: asyncio.Event | None) -> None:
        try:
            await self.node.start()
            self.housekeeping.start()
            self.https_port = await self._listen(self.app, self.config.https, self.server_ctx)
            if self.config.ops is not None:
                self.ops_port = await self._listen(self.ops_app, self.config.ops, None)
            if ready is not None:
                ready.set()
            catch_up = asyncio.ensure_future(self._catch_up())
            while not self.stopped.is_set():  # refresh the gauges now and then
                collect_from_node(self.metrics, self.node, self.replica)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopped.wait(), 5.0)
            catch_up.cancel()
        finally:
            await self.shutdown()

    async def _listen(
        self, app: web.Application, address: tuple[str, int], ctx: ssl.SSLContext | None
    ) -> int:
        """Serve ``app`` on ``address`` (with the header deadline); the port bound."""
        app_runner = runner(app, self.config.header_timeout)
        await app_runner.setup()
        self._runners.append(app_runner)
        name = "https" if ctx is not None else "ops"
        server = await listen(
            app_runner,
            *address,
            header_timeout=self.config.header_timeout,
            ssl_context=ctx,
            on_timeout=self.metrics.header_timeouts.labels(name).inc,
        )
        self._servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def _catch_up(self) -> None:
        """Keep the loaded documents current between other work: entries are
        accepted at once (lazy_apply) and applied here in slices of
        ``CATCH_UP_SLICE``, one turn of the event loop each."""
        while True:
            done = self.replica.catch_up_some(CATCH_UP_SLICE)
            await asyncio.sleep(0 if done else CATCH_UP_IDLE_S)

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.housekeeping.stop()  # a run under way ends first
        with contextlib.suppress(Exception):
            await self.node.stop()
        for server in self._servers:  # accept no more connections ...
            server.close()
        for app_runner in self._runners:  # ... and close the open ones
            with contextlib.suppress(Exception):
                await app_runner.cleanup()
        self._servers.clear()
        self._runners.clear()
        self.audit.close()
        self.replica.close()
