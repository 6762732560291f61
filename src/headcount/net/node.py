"""A node: one replica serving and dialling peers over mutual TLS.

The node accepts TLS 1.3 connections and dials known addresses; after each
handshake it checks the peer's certificate against the organisation
(:func:`~headcount.pki_verify.verify_peer_certificate`), adds the peer's key to
the replica's directory, and runs a :class:`~headcount.session.Session` over
the connection (:class:`~headcount.net.stream.StreamPeer`). Entries applied
from one peer are pushed on to the others at once; every ``gossip_interval``
a few random peers get an anti-entropy summary; failing addresses are retried
with exponential backoff and jitter, and :meth:`Node.retry_now` skips the
wait.

The node enforces the organisation's revocations: the signed records its
log verified and stored (:meth:`ReplicaLog.use_revocations`) decide which
certificates it refuses, at every handshake and for certificates peers
share; when the list grows (from a peer, or :meth:`Node.learn_revocations`)
links to newly revoked devices are closed and every other peer is told at
once. Refusals (revocation records, snapshots, peers) are logged and counted
in :attr:`Node.refusals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509

from headcount.core.errors import HeadcountError
from headcount.pki.revocation import RevocationList
from headcount.pki.revocation_book import RevocationBook
from headcount.pki.revocation_record import SignedRevocation
from headcount.pki.verify import PeerIdentity, verify_peer_certificate
from headcount.protocol.logview import RevocationIntake
from headcount.protocol.session import (
    Applied,
    Effect,
    EntryRefused,
    PeerIdentified,
    RevocationRefused,
    RevocationsLearnt,
    Session,
    SessionConfig,
    SnapshotBudget,
    SnapshotRefused,
)
from headcount.protocol.wire import RevocationRecord
from headcount.replica.log import ReplicaLog
from headcount.replica.replica import Replica

from .driver import EffectHandler
from .groupcommit import GroupCommit
from .preverify import PreVerifier
from .stream import StreamPeer
from .websocket import WebSocketPeer, dial, sync_app

HANDSHAKE_TIMEOUT = 10.0
DEFAULT_SNAPSHOT_BUDGET = 128 * 1024 * 1024  # incoming snapshot bytes, all sessions together

log = logging.getLogger(__name__)


@dataclass(slots=True)
class NodeConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    peers: list[tuple[str, int]] = field(default_factory=list)
    ws_port: int | None = None  # also serve WebSocket (wss://host:port/sync); 0 picks a port
    ws_peers: list[str] = field(default_factory=list)  # wss:// URLs to keep connected
    gossip_interval: float = 5.0
    fanout: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_connections: int = 256
    session: SessionConfig = field(default_factory=SessionConfig)
    snapshot_budget: int = DEFAULT_SNAPSHOT_BUDGET
    """Bytes of incoming snapshots buffered at once, over every session
    (each session also keeps within ``session.max_snapshot``)."""


@dataclass(slots=True)
class Link:
    """One connection and what we know about it."""

    peer: StreamPeer | WebSocketPeer
    outbound: bool
    address: tuple[str, int] | None
    identity: PeerIdentity | None = None
    duplicate: bool = False  # closed because another link to the same peer was kept


@dataclass(slots=True)
class Dialer:
    """A known address: connection attempts, failures, next try."""

    address: tuple[str, int]
    failures: int = 0
    last_error: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Node:
    """Args:
    replica: the local replica (opened for writing).
    server_ctx / client_ctx: TLS contexts (``pki_device.ssl_context``).
    org_ca: the organisation CA certificate; revocation records are
        verified against it and kept in the replica's store.

    Observers (append before or after :meth:`start`): ``effect_observers``
    are called with ``(driver, effect)`` for every application effect of
    every link (``Applied``, ``PeerIdentified``, ...), after the node has
    acted on it; ``link_observers`` with every new :class:`Link`, before its
    session runs. They must not block.
    """

    def __init__(
        self,
        replica: Replica,
        config: NodeConfig,
        server_ctx: ssl.SSLContext,
        client_ctx: ssl.SSLContext,
        org_ca: x509.Certificate,
        rng: random.Random | None = None,
        own_identity: PeerIdentity | None = None,
    ) -> None:
        self.replica = replica
        self.group = GroupCommit(replica.store)
        self.preverify = PreVerifier(replica.store.public_key)
        self.log = ReplicaLog(
            replica,
            verify=self.preverify.verify,
            vouch=self._vouch,
            group_commit=self.group.schedule,
        )
        self.config = config
        self.server_ctx = server_ctx
        self.client_ctx = client_ctx
        self.org_ca = org_ca
        self.log.use_revocations(RevocationBook(org_ca))
        # The list in force (verified records, from the store and from peers).
        self.revocations: Callable[[], RevocationList | None] = self.log.revocation_list
        self.snapshot_budget = SnapshotBudget(config.snapshot_budget)
        self.refusals: Counter[str] = Counter()  # "revocation:<code>", "snapshot:<code>", ...
        self.rng = rng or random.Random()
        self.own_identity: PeerIdentity | None = own_identity
        self.links: list[Link] = []
        self.dialers: dict[tuple[str, int], Dialer] = {}
        self.rejected: list[tuple[str, str]] = []  # (address, reason) of refused peers
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._unlinked = asyncio.Event()  # set whenever a link ends
        self._by_event: dict[str, list[Link]] = {}  # links whose scope allows the event
        self._ws_runner: web.AppRunner | None = None
        self.ws_port: int | None = None
        self._pending_ws: dict[int, PeerIdentity] = {}
        self.effect_observers: list[EffectHandler] = []
        self.link_observers: list[Callable[[Link], None]] = []

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept,
            self.config.listen_host,
            self.config.listen_port,
            ssl=self.server_ctx,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.config.ws_port is not None:
            await self._serve_websocket()
        for address in self.config.peers:
            self.add_peer(*address)
        for url in self.config.ws_peers:
            self._spawn(self._maintain_ws(url))
        self._spawn(self._gossip())

    @property
    def serving(self) -> bool:
        """True while the node's own listener accepts peers (started, not stopping)."""
        return self._server is not None and self._server.is_serving() and not self._stopping

    async def stop(self) -> None:
        """Close every session cleanly and stop serving."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.peer.close(), 2.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._ws_runner is not None:
            await self._ws_runner.cleanup()
        self.group.close()
        self.preverify.close()

    def add_peer(self, host: str, port: int) -> None:
        """Keep a connection to ``host:port`` (static peer or discovered)."""
        if (host, port) not in self.dialers and not self._stopping:
            dialer = self.dialers[(host, port)] = Dialer((host, port))
            self._spawn(self._maintain(dialer))

    def retry_now(self) -> None:
        """Manual retry: every failing address is tried again at once."""
        for dialer in self.dialers.values():
            dialer.wake.set()

    def local_write(self, event: str) -> None:
        """Call after a local write: push it to every connected peer."""
        self._push(event)

    def _push(self, event: str, skip: object = None) -> None:
        """Ask the links that may carry ``event`` to push it (each link
        coalesces requests that arrive while it is busy)."""
        for link in self._links_for(event):
            if link.peer is not skip:
                link.peer.request_push(event)

    def _links_for(self, event: str) -> list[Link]:
        """The links whose scope allows ``event``, cached until links change:
        with a thousand links, checking every scope per applied batch would
        cost more than the sync itself."""
        links = self._by_event.get(event)
        if links is None:
            links = self._by_event[event] = [
                link
                for link in self.links
                if link.peer.session.scope is None or link.peer.session.scope(event)
            ]
        return links

    def _add_link(self, link: Link) -> None:
        link.peer.before_send = self.group.durable
        if isinstance(link.peer, WebSocketPeer):
            link.peer.prepare = self.preverify.prepare
        self.links.append(link)
        self._by_event.clear()
        for observe in self.link_observers:
            observe(link)

    def _remove_link(self, link: Link) -> None:
        if link in self.links:
            self.links.remove(link)
            self._by_event.clear()
            if not self.links and not self._stopping:
                self._spawn(self._release_memory())
        self._unlinked.set()

    async def _release_memory(self) -> None:
        """After the last link closed (a relay whose gates all went away),
        give the memory their sessions held back to the operating system:
        Python keeps freed memory for reuse, so without this a relay that
        once served a thousand gates would stay that size."""
        await asyncio.sleep(1.0)  # let the closing tasks finish first
        if not self.links:
            release_memory()

    def status(self) -> list[dict[str, Any]]:
        out = []
        for link in self.links:
            s = link.peer.session.status
            out.append(
                {
                    "peer": s.peer,
                    "address": link.address,
                    "outbound": link.outbound,
                    "status": s.status.value,
                    "pending_entries": s.pending_entries,
                    "last_sync": s.last_sync,
                    "retries": s.retries,
                    "error": s.error,
                }
            )
        for dialer in self.dialers.values():
            if dialer.failures:
                out.append(
                    {
                        "address": dialer.address,
                        "status": "failed",
                        "failures": dialer.failures,
                        "error": dialer.last_error,
                    }
                )
        return out

    # -- connections --------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.links) >= self.config.max_connections:
            writer.close()
            return
        await self._run_link(reader, writer, outbound=False, address=None)

    async def _maintain(self, dialer: Dialer) -> None:
        while not self._stopping:
            host, port = dialer.address
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, ssl=self.client_ctx, server_hostname=""),
                    HANDSHAKE_TIMEOUT,
                )
                link = await self._run_link(reader, writer, outbound=True, address=dialer.address)
                if link is not None and link.duplicate:
                    # The peer also dialled us and that link was kept: not a
                    # failure. Dial again only once no link to it remains.
                    dialer.failures = 0
                    await self._until_unlinked(link.peer.session.status.peer)
                    continue
                synced = link is not None and link.peer.session.status.last_sync is not None
                dialer.failures = 0 if synced else dialer.failures + 1
            except (OSError, ssl.SSLError, TimeoutError, HeadcountError) as exc:
                # anything a session or the store raises fails this attempt,
                # never the dialer (it would not redial until a restart)
                dialer.failures += 1
                dialer.last_error = f"{type(exc).__name__}: {exc}"
            if self._stopping:
                break
            delay = min(self.config.backoff_max, self.config.backoff_base * 2**dialer.failures)
            delay *= self.rng.uniform(0.5, 1.5)  # jitter: do not retry in lockstep
            dialer.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dialer.wake.wait(), delay)

    async def _run_link(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        outbound: bool,
        address: tuple[str, int] | None,
    ) -> Link | None:
        """Authenticate the peer, then run the session until it ends; the
        link, or None if the peer was refused."""
        try:
            identity = self._authenticate(writer)
        except HeadcountError as exc:
            self._refused_peer(str(writer.get_extra_info("peername")), exc)
            writer.close()
            return None
        session = Session(
            self.log,
            time.monotonic(),
            self.config.session,
            expect_peer=identity.device_id,
            scope=self._scope(identity),
            snapshot_budget=self.snapshot_budget,
        )
        link = Link(
            StreamPeer(session, reader, writer, self._on_effect), outbound, address, identity
        )
        self._add_link(link)
        try:
            await link.peer.run()
        finally:
            self._remove_link(link)
        return link

    def _authenticate(self, writer: asyncio.StreamWriter) -> PeerIdentity:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        return self._admit(der)

    def _scope(self, peer: PeerIdentity) -> Callable[[str], bool]:
        """Events both certificates allow: nothing else crosses this link."""
        own = self.own_identity
        return lambda event: peer.may_serve(event) and (own is None or own.may_serve(event))

    def _admit(self, der: bytes | None) -> PeerIdentity:
        """Check a peer certificate (any transport) and trust the device.

        Raises:
            HeadcountError: refused (the code says why).
        """
        identity = verify_peer_certificate(
            der, self.org_ca, int(time.time() * 1000), self.revocations()
        )
        if identity.device_id == self.replica.device_id:
            raise HeadcountError("connected to ourselves", code="self")
        self.replica.trust(identity.device_id, identity.public_key_raw, identity.role, der)
        return identity

    def _refused_peer(self, where: str, exc: HeadcountError) -> None:
        self.rejected.append((where, exc.code))
        self.refusals[f"peer:{exc.code}"] += 1
        log.warning("refused a peer (%s): %s: %s", where, exc.code, exc.message)

    def _vouch(self, der: bytes) -> tuple[str, bytes, str]:
        """A certificate a peer shared: trusted only if our organisation issued it."""
        peer = verify_peer_certificate(
            der, self.org_ca, int(time.time() * 1000), self.revocations()
        )
        return peer.device_id, peer.public_key_raw, peer.role.value

    # -- WebSocket ----------------------------------------------------------------

    def websocket_routes(self, app: web.Application, path: str = "/sync") -> None:
        """Serve this node's WebSocket sync on another aiohttp application
        (the relay puts it beside its HTTP API on one TLS port)."""
        sync = sync_app(self._ws_session, self._on_effect, self._on_ws_inbound, path=path)
        for route in sync.router.routes():
            app.router.add_route(route.method, path, route.handler)

    async def _serve_websocket(self) -> None:
        app = sync_app(self._ws_session, self._on_effect, self._on_ws_inbound)
        self._ws_runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._ws_runner.setup()
        site = web.TCPSite(
            self._ws_runner,
            self.config.listen_host,
            self.config.ws_port,
            ssl_context=self.server_ctx,
        )
        await site.start()
        self.ws_port = self._ws_runner.addresses[0][1]

    def _ws_session(self, der: bytes | None) -> Session | None:
        """A session for a WebSocket peer whose certificate verifies, else None."""
        if len(self.links) >= self.config.max_connections:
            return None
        try:
            identity = self._admit(der)
        except HeadcountError as exc:
            self._refused_peer("websocket", exc)
            return None
        session = Session(
            self.log,
            time.monotonic(),
            self.config.session,
            expect_peer=identity.device_id,
            scope=self._scope(identity),
            snapshot_budget=self.snapshot_budget,
        )
        self._pending_ws[id(session)] = identity
        return session

    def _on_ws_inbound(self, peer: WebSocketPeer) -> None:
        self._on_ws_peer(peer, outbound=False)

    def _on_ws_peer(self, peer: WebSocketPeer, outbound: bool) -> Link:
        identity = self._pending_ws.pop(id(peer.session), None)
        link = Link(peer, outbound, None, identity)
        self._add_link(link)

        async def cleanup() -> None:
            await peer.closed.wait()
            self._remove_link(link)

        self._spawn(cleanup())
        return link

    async def _maintain_ws(self, url: str) -> None:
        failures = 0
        while not self._stopping:
            try:
                peer = await dial(
                    url,
                    self._ws_session,
                    self._on_effect,
                    ssl_context=self.client_ctx,
                    max_frame=self.config.session.max_frame,
                )
                if peer is not None:
                    self._on_ws_peer(peer, outbound=True)
                    await peer.run()
                    failures = 0 if peer.session.status.last_sync is not None else failures + 1
                else:
                    failures += 1
            except (OSError, ssl.SSLError, TimeoutError, aiohttp.ClientError, HeadcountError):
                failures += 1
            if self._stopping:
                break
            delay = min(self.config.backoff_max, self.config.backoff_base * 2**failures)
            await asyncio.sleep(delay * self.rng.uniform(0.5, 1.5))

    # -- effects and gossip ---------------------------------------------------

    def _on_effect(self, source: StreamPeer, effect: Effect) -> None:
        if isinstance(effect, Applied):
            self._push(effect.event, skip=source)  # forward at once (relays, multi-hop LANs)
        elif isinstance(effect, PeerIdentified):
            self._drop_duplicate(source, effect.device)
        elif isinstance(effect, RevocationsLearnt):
            self._revocations_grew(skip=source)
        elif isinstance(effect, RevocationRefused | SnapshotRefused):
            self._count_refusal(source, effect)
        for observe in self.effect_observers:
            observe(source, effect)

    def _count_refusal(self, source: Any, effect: RevocationRefused | SnapshotRefused) -> None:
        peer = source.session.status.peer
        if isinstance(effect, RevocationRefused):
            self.refusals[f"revocation:{effect.code}"] += 1
            log.warning(
                "refused a revocation record from %s: %s: %s", peer, effect.code, effect.detail
            )
        else:
            self.refusals[f"snapshot:{effect.code}"] += 1
            log.warning(
                "refused a snapshot of %s (%d bytes) from %s: %s",
                effect.event,
                effect.total,
                peer,
                effect.code,
            )

    # -- revocations ----------------------------------------------------------

    def learn_revocations(self, records: Sequence[SignedRevocation]) -> RevocationIntake:
        """Verify and keep revocation records (signed here, or imported from a
        file); on news, close links to the devices now revoked and tell every
        peer. Refused records are logged and counted, as a peer's are."""
        wire = [RevocationRecord(r.body, r.sig, r.cert) for r in records]
        intake = self.log.learn_revocations(wire)
        for code, detail in intake.refused:
            self.refusals[f"revocation:{code}"] += 1
            log.warning("refused a revocation record: %s: %s", code, detail)
        if intake.added:
            self._revocations_grew(skip=None)
        return intake

    def _revocations_grew(self, skip: object) -> None:
        """The list in force may have grown: cut the devices it now revokes
        off, and start a gossip round on every other link (it carries the
        new records)."""
        self.enforce_revocations()
        for link in self.links:
            if link.peer is not skip:
                self._spawn(link.peer.anti_entropy())

    def _drop_duplicate(self, source: StreamPeer, device: str) -> None:
        """Two connections to one peer (both dialled): keep the one dialled by
        the smaller device id, the same choice on both sides."""
        same = [link for link in self.links if link.peer.session.status.peer == device]
        if len(same) < 2:
            return
        mine_smaller = self.replica.device_id < device
        for link in same:
            if link.outbound != mine_smaller:
                link.duplicate = True
                self._spawn(link.peer.close())

    async def _until_unlinked(self, device: str | None) -> None:
        """Wait until no link to ``device`` remains (or we stop)."""
        while not self._stopping and any(
            link.peer.session.status.peer == device for link in self.links
        ):
            self._unlinked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unlinked.wait(), self.config.backoff_max)

    def enforce_revocations(self) -> int:
        """Close links to peers that have been revoked since they connected;
        returns how many were closed. (Revoked peers cannot reconnect: every
        handshake is checked against the current list.)"""
        revoked = self.revocations()
        if revoked is None:
            return 0
        closed = 0
        for link in list(self.links):
            ident = link.identity
            if ident is not None and revoked.find(ident.device_id, ident.serial) is not None:
                self.rejected.append((ident.device_id, "revoked"))
                self.refusals["peer:revoked"] += 1
                log.warning("closing the link to %s: its certificate was revoked", ident.device_id)
                self._spawn(link.peer.close())
                closed += 1
        return closed

    async def _gossip(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.gossip_interval)
            self.enforce_revocations()
            with contextlib.suppress(HeadcountError):
                self.replica.store.save_acks()  # compaction input; advisory
            links = list(self.links)
            for link in self.rng.sample(links, min(self.config.fanout, len(links))):
                self._spawn(link.peer.anti_entropy())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def release_memory() -> None:
    """Collect garbage and return free heap pages to the OS (glibc's
    ``malloc_trim``; elsewhere only the collection)."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def refusal_metrics(registry: Any) -> EffectHandler:
    """An effect observer (``Node.effect_observers``) that counts what peers
    sent and the node refused, in a Prometheus counter of ``registry``:
    ``headcount_refusals{kind="entry"|"revocation"|"snapshot", code=...}``."""
    from prometheus_client import Counter as PromCounter

    refused = PromCounter(
        "headcount_refusals",
        "Log entries, revocation records and snapshots refused from peers, by kind and reason.",
        ["kind", "code"],
        registry=registry,
    )

    def observe(_source: Any, effect: Effect) -> None:
        if isinstance(effect, RevocationRefused):
            refused.labels("revocation", effect.code).inc()
        elif isinstance(effect, SnapshotRefused):
            refused.labels("snapshot", effect.code).inc()
        elif isinstance(effect, EntryRefused):
            refused.labels("entry", effect.reason).inc()

    return observe
