"""``headcount run``: the gate daemon.

Runs one device: its replica, a TLS node serving and dialling peers, optional
mDNS discovery, and a local control socket through which the CLI records
check-ins and reads status while the daemon holds the data directory.
SIGTERM and Ctrl-C stop it cleanly: sessions say goodbye, the store is
flushed and closed; every acknowledged scan was already on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from headcount.archive.schedule import ArchiveSchedule
from headcount.backup.schedule import BackupSchedule
from headcount.core.errors import HeadcountError, InputError, PermissionDeniedError
from headcount.core.identity import Role
from headcount.net.node import DEFAULT_SNAPSHOT_BUDGET, Node, NodeConfig
from headcount.pki.device import load_device_certificate, ssl_context
from headcount.pki.revocation_file import record_to_dict
from headcount.pki.revocation_record import SignedRevocation, claim_for, sign_revocation
from headcount.pki.verify import verify_peer_certificate
from headcount.protocol.config import DEFAULT_MAX_SNAPSHOT
from headcount.protocol.session import DEFAULT_ACK_DELAY, SessionConfig
from headcount.replica.replica import Replica

from .config import parse_address, read_toml, toml_list
from .control import ControlServer
from .housekeeping import CompactionSchedule, Housekeeping, parse_sections
from .runner import stop_on_signals

CONTROL_SOCKET = "control.sock"


@dataclass(slots=True)
class DaemonConfig:
    """Every setting of ``headcount run`` (see docs/gate.md for the TOML file)."""

    data_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    peers: list[tuple[str, int]] = field(default_factory=list)
    discovery: bool = False
    interfaces: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    ws_port: int | None = None
    ws_peers: list[str] = field(default_factory=list)
    gossip_interval: float = 5.0
    fanout: int = 2
    batch_bytes: int = 256 * 1024
    keepalive_interval: float = 10.0
    idle_timeout: float = 30.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    ack_delay: float = DEFAULT_ACK_DELAY
    max_snapshot: int = DEFAULT_MAX_SNAPSHOT  # incoming snapshot bytes per connection
    snapshot_budget: int = DEFAULT_SNAPSHOT_BUDGET  # ... and over every connection
    backup: BackupSchedule | None = None  # [backup]: scheduled backups (None: off)
    archive: ArchiveSchedule | None = None  # [archive]: scheduled archiving (None: off)
    # [compaction]: on unless enabled = false (None: off)
    compaction: CompactionSchedule | None = field(default_factory=CompactionSchedule)

    @property
    def control_socket(self) -> Path:
        return self.data_dir / CONTROL_SOCKET


def load_config(path: Path | None, data_dir: Path | None) -> DaemonConfig:
    """Read a daemon TOML file (all keys optional); ``data_dir`` overrides it.

    Raises:
        InputError: unreadable TOML, unknown keys, or values of the wrong type.
    """
    raw = read_toml(path)
    net = _section(
        raw, "network", {"listen", "peers", "discovery", "interfaces", "websocket", "ws_peers"}
    )
    sync = _section(
        raw,
        "sync",
        {
            "gossip_interval",
            "fanout",
            "batch_bytes",
            "keepalive_interval",
            "idle_timeout",
            "backoff_base",
            "backoff_max",
            "ack_delay",
            "max_snapshot",
            "snapshot_budget",
        },
    )
    unknown = set(raw) - {"data_dir", "network", "sync", "backup", "archive", "compaction"}
    if unknown:
        raise InputError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    chosen = data_dir or (Path(raw["data_dir"]) if "data_dir" in raw else None)
    if chosen is None:
        raise InputError("no data directory: set data_dir in the file or pass --data-dir")
    host, port = parse_address(net.get("listen", "127.0.0.1:0"), "network.listen")
    config = DaemonConfig(
        data_dir=Path(chosen),
        listen_host=host,
        listen_port=port,
        peers=[parse_address(p, "network.peers") for p in toml_list(net, "peers")],
        discovery=_typed(net, "discovery", bool, False),
        interfaces=[str(i) for i in toml_list(net, "interfaces")] or ["127.0.0.1"],
        ws_peers=[str(u) for u in toml_list(net, "ws_peers")],
    )
    if "websocket" in net:
        ws_port = _typed(net, "websocket", int, 0)
        if not 0 <= ws_port <= 65535:
            raise InputError("network.websocket must be a port number (0 picks one)")
        config.ws_port = ws_port
    for url in config.ws_peers:
        if not url.startswith("wss://"):
            raise InputError(f"network.ws_peers: {url!r} is not a wss:// URL")
    for key in (
        "gossip_interval",
        "keepalive_interval",
        "idle_timeout",
        "backoff_base",
        "backoff_max",
    ):
        value = float(_typed(sync, key, (int, float), getattr(config, key)))
        if value <= 0:
            raise InputError(f"sync.{key} must be positive")
        setattr(config, key, value)
    for key in ("fanout", "batch_bytes", "max_snapshot", "snapshot_budget"):
        value = _typed(sync, key, int, getattr(config, key))
        if value < 1:
            raise InputError(f"sync.{key} must be at least 1")
        setattr(config, key, value)
    config.ack_delay = float(_typed(sync, "ack_delay", (int, float), config.ack_delay))
    if not 0 <= config.ack_delay <= 1:
        raise InputError("sync.ack_delay must be between 0 and 1 second")
    jobs = parse_sections(raw, config.data_dir)
    config.backup, config.archive, config.compaction = jobs.backup, jobs.archive, jobs.compaction
    return config


def _section(raw: dict[str, Any], name: str, keys: set[str]) -> dict[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise InputError(f"[{name}] must be a table")
    unknown = set(table) - keys
    if unknown:
        raise InputError(f"unknown keys in [{name}]: {', '.join(sorted(unknown))}")
    return table


def _typed(table: dict[str, Any], key: str, kind: Any, default: Any) -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) and kind is not bool:
        raise InputError(f"{key} must be a number, not a boolean")
    if not isinstance(value, kind):
        raise InputError(f"{key} has the wrong type ({type(value).__name__})")
    return value


class Daemon:
    """The running gate: replica + node + discovery + control socket."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.replica = Replica.open(config.data_dir)
        cert, ca = load_device_certificate(config.data_dir)
        own = verify_peer_certificate(cert, ca, self.replica.wall_clock())
        self.certificate, self.org_ca = cert, ca
        session = SessionConfig(
            batch_bytes=config.batch_bytes,
            keepalive_interval=config.keepalive_interval,
            idle_timeout=config.idle_timeout,
            anti_entropy_interval=config.gossip_interval * 4,
            ack_delay=config.ack_delay,
            max_snapshot=config.max_snapshot,
        )
        node_config = NodeConfig(
            listen_host=config.listen_host,
            listen_port=config.listen_port,
            peers=config.peers,
            gossip_interval=config.gossip_interval,
            fanout=config.fanout,
            backoff_base=config.backoff_base,
            backoff_max=config.backoff_max,
            session=session,
            ws_port=config.ws_port,
            ws_peers=config.ws_peers,
            snapshot_budget=config.snapshot_budget,
        )
        self.node = Node(
            self.replica,
            node_config,
            ssl_context(config.data_dir, server_side=True),
            ssl_context(config.data_dir, server_side=False),
            ca,
            own_identity=own,
        )
        self.housekeeping = Housekeeping(
            self.replica, config.backup, config.archive, compaction=config.compaction
        )
        self.control = _Control(self, config.control_socket)
        self.discovery: Any = None
        self.stopped = asyncio.Event()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Serve until SIGTERM/SIGINT or :meth:`stop`; always closes cleanly."""
        with stop_on_signals(self.stopped):
            await self._serve(ready)

    async def _serve(self, ready: asyncio.Event | None) -> None:
        try:
            await self.node.start()
            await self.control.start()
            self.housekeeping.start()
            if self.config.discovery:
                from headcount.net.discovery import (  # zeroconf when asked
                    Discovery,
                    DiscoveryConfig,
                )

                self.discovery = Discovery.for_node(
                    self.node, DiscoveryConfig(interfaces=tuple(self.config.interfaces))
                )
                await self.discovery.start()
            if ready is not None:
                ready.set()
            await self.stopped.wait()
        finally:
            await self.shutdown()

    def stop(self) -> None:
        self.stopped.set()

    # -- revocations (the control socket's ``revoke`` and ``import_revocations``) --

    def revoke(self, device_id: str, serial: int | None = None, reason: str = "") -> dict[str, Any]:
        """Revoke ``device_id`` (or only its certificate ``serial``): a record
        signed with this admin device's key and certificate, kept, enforced
        and gossiped to every peer at once.

        Raises:
            PermissionDeniedError: ``not_admin``: this device is not certified admin.
            InputError: a malformed device id, serial or reason.
            HeadcountError: this device's own record was refused (its
                certificate expired or was revoked: the code says which).
        """
        own = self.node.own_identity
        if own is None or own.role is not Role.ADMIN:
            role = "device with no certificate" if own is None else own.role.value
            raise PermissionDeniedError(
                f"this device ({self.replica.device_id}) is a {role}: only an admin device "
                "signs revocations. Run `headcount device revoke` against the admin's "
                "daemon, or sign with the organisation CA offline "
                "(`headcount device revoke --org-dir ORG DEVICE_ID`) and import the file "
                "on an admin (`headcount device revoke --import FILE`)",
                code="not_admin",
            )
        claim = claim_for(
            self.org_ca,
            device_id,
            at_ms=self.replica.wall_clock(),
            signer=self.replica.device_id,
            serial=serial,
            reason=reason,
        )
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        record = sign_revocation(claim, self.replica.identity.private_key, der)
        intake = self.node.learn_revocations([record])
        if intake.refused:
            code, detail = intake.refused[0]
            raise HeadcountError(f"this device's revocation was refused: {detail}", code=code)
        return {"record": record_to_dict(record), **self.revocation_status()}

    def import_revocations(self, records: list[SignedRevocation]) -> dict[str, Any]:
        """Verify and keep records signed elsewhere (by the organisation CA,
        offline, or by another admin); the valid ones are enforced and
        gossiped, each refused one is reported."""
        intake = self.node.learn_revocations(records)
        refused = [{"code": code, "detail": detail} for code, detail in intake.refused]
        return {"added": intake.added, "refused": refused, **self.revocation_status()}

    def revocation_status(self) -> dict[str, Any]:
        """How many records this device holds, the devices they revoke, and
        what it refused from peers (counts by reason)."""
        in_force = self.node.revocations()
        return {
            "records": len(self.node.log.revocations()),
            "revoked": [] if in_force is None else [e.to_dict() for e in in_force.entries],
            "refusals": dict(self.node.refusals),
        }

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.housekeeping.stop()  # a run under way ends first
        with contextlib.suppress(Exception):
            if self.discovery is not None:
                await self.discovery.stop()
        with contextlib.suppress(Exception):
            await self.control.stop()
        with contextlib.suppress(Exception):
            await self.node.stop()
        self.replica.close()


class _Control(ControlServer):
    """The control socket, whose ``status`` also reports the scheduled jobs
    (last backup, archive and compaction run, outcome, next run)."""

    daemon: Daemon

    def handle(self, line: bytes) -> dict[str, Any]:
        reply = super().handle(line)
        with contextlib.suppress(ValueError, AttributeError):
            if "error" not in reply and json.loads(line).get("op") == "status":
                reply["jobs"] = self.daemon.housekeeping.status()
        return reply
