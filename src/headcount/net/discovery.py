"""mDNS discovery: advertise this device and find the other gates (zeroconf, IPv4).

Every device advertises ``_headcount._tcp.local.`` with an instance named after
its device id, the port of its TLS node and TXT properties (device id,
events, protocol version, role). It browses for the others, resolves each
advert it hears and hands usable ones to ``on_peer(device_id, host, port)``
(a node passes ``node.add_peer``). Discovery only suggests addresses: trust
comes from the mutual-TLS handshake, never from an advert.

Network scope (the safety rule in ``design.md``): zeroconf only ever gets an
explicit list of IPv4 unicast addresses, by default ``127.0.0.1``; there is no
way to ask for "all interfaces". With loopback-only interfaces, unicast
replies to any non-loopback address are dropped as well (zeroconf's shared
listening socket is bound to the wildcard address and would otherwise answer
a unicast query from the LAN).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zeroconf import (
    BadTypeInNameException,
    DNSOutgoing,
    IPVersion,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from headcount.core.errors import InputError, LocalProtocolError

from .advert import (
    DEFAULT_INTERFACES,
    SERVICE_TYPE,
    Advert,
    MalformedAdvert,
    check_interfaces,
    decode_advert,
    encode_properties,
    in_scope,
    instance_name,
)

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0
MAX_PEERS = 1024  # adverts tracked at once; more are ignored
MAX_IGNORED = 256  # ignored adverts remembered (oldest forgotten first)
MDNS_PORT = 5353

OnPeer = Callable[[str, str, int], None]
OnLost = Callable[[str], None]
OnIgnored = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """Where and how to discover.

    Attributes:
        interfaces: IPv4 addresses of the interfaces to use (never a
            wildcard); the default is loopback only. A deployment names its
            LAN addresses here; they are also the addresses advertised.
        resolve_timeout: seconds to wait for an advert's records.
        service_type: the mDNS service type (tests may isolate themselves
            with a private one).
    """

    interfaces: tuple[str, ...] = DEFAULT_INTERFACES
    resolve_timeout: float = 3.0
    service_type: str = SERVICE_TYPE


class _ScopedZeroconf(Zeroconf):
    """A Zeroconf that refuses unicast sends outside the configured scope.

    Multicast goes out only through the per-interface sockets (bound to the
    configured addresses); this closes the one remaining path, a unicast
    reply sent through the wildcard listening socket.
    """

    def __init__(self, interfaces: tuple[str, ...]) -> None:
        self.scope = interfaces
        self.dropped_unicast = 0
        super().__init__(interfaces=list(interfaces), ip_version=IPVersion.V4Only)

    def async_send(
        self,
        out: DNSOutgoing,
        addr: str | None = None,
        port: int = MDNS_PORT,
        v6_flow_scope: tuple[()] | tuple[int, int] = (),
        transport: Any = None,
    ) -> None:
        if addr is not None and not in_scope(addr, self.scope):
            self.dropped_unicast += 1
            return
        super().async_send(out, addr, port, v6_flow_scope, transport)


def open_zeroconf(interfaces: Iterable[str] = DEFAULT_INTERFACES) -> AsyncZeroconf:
    """The one way headcount makes a zeroconf instance: IPv4, the named
    interfaces only, unicast kept in scope. Call it in the event loop.

    Raises:
        InputError: a bad interface address (see :func:`~.advert.check_interfaces`).
        OSError: the interfaces cannot be bound.
    """
    return AsyncZeroconf(zc=_ScopedZeroconf(check_interfaces(interfaces)))


class Discovery:
    """Advertise one device and report the others it finds.

    Args:
        device_id: this device (its own advert is ignored).
        port: the TCP port of this device's TLS node.
        role: this device's role (``gate``, ``relay``, ``admin``).
        events: the events this device holds (advertised as a hint).
        on_peer: called as ``on_peer(device_id, host, port)`` when a peer
            appears or its address changes; not again for the same address.
            ``host`` is always in scope (:func:`~.advert.in_scope`): with
            loopback interfaces only, a loopback address.
        on_lost: called as ``on_lost(device_id)`` when a peer withdraws, or
            its advert changes into one that we ignore.
        on_ignored: called as ``on_ignored(instance_name, reason)`` for
            every advert that is not used (ourselves, another protocol
            version, malformed, unresolved).
        config: interfaces and timeouts.

    Callbacks run in the event loop and must not block; an exception from
    one is logged and discovery carries on. Nothing a peer advertises makes
    any method raise.

    Raises:
        InputError: a bad interface address in ``config``, or a bad port.
    """

    def __init__(
        self,
        device_id: str,
        port: int,
        *,
        role: str,
        events: Iterable[str] = (),
        on_peer: OnPeer,
        on_lost: OnLost | None = None,
        on_ignored: OnIgnored | None = None,
        config: DiscoveryConfig | None = None,
    ) -> None:
        self.config = config or DiscoveryConfig()
        self.interfaces = check_interfaces(self.config.interfaces)
        if not 0 < port < 65536:
            raise InputError(f"port {port} is not a TCP port")
        self.device_id = device_id
        self.port = port
        self.name = instance_name(device_id, self.config.service_type)
        self.properties = encode_properties(device_id, events, role)
        self.on_peer, self.on_lost, self.on_ignored = on_peer, on_lost, on_ignored
        self.peers: dict[str, Advert] = {}  # by instance name
        self.ignored: dict[str, str] = {}  # instance name -> why
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._announcing: asyncio.Future[Any] | None = None  # our announcements
        self._stopped = False

    @classmethod
    def for_node(cls, node: Node, config: DiscoveryConfig | None = None) -> Discovery:
        """Discovery for a started node: found peers are dialled with
        ``node.add_peer``.

        Raises:
            LocalProtocolError: the node has not been started (no port yet).
        """
        if node.port is None:
            raise LocalProtocolError("start the node before its discovery (no port yet)")
        replica = node.replica
        return cls(
            replica.device_id,
            node.port,
            role=replica.role.value,
            events=replica.events(),
            on_peer=lambda _device, host, port: node.add_peer(host, port),
            config=config,
        )

    @property
    def dropped_unicast(self) -> int:
        """Unicast replies refused because they would have left the scope."""
        zc = self._aiozc.zeroconf if self._aiozc is not None else None
        return zc.dropped_unicast if isinstance(zc, _ScopedZeroconf) else 0

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Browse, then advertise (returns once our name is probed unique;
        the announcements go on in the background).

        Raises:
            LocalProtocolError: started twice or after stop.
            NonUniqueNameException: another live device advertises our
                instance name (the same device id running twice).
            OSError: the interfaces cannot be bound.
        """
        if self._aiozc is not None or self._stopped:
            raise LocalProtocolError("discovery can be started once")
        self._aiozc = open_zeroconf(self.interfaces)
        try:
            self._browser = AsyncServiceBrowser(
                self._aiozc.zeroconf, self.config.service_type, handlers=[self._on_change]
            )
            self._info = AsyncServiceInfo(
                self.config.service_type,
                self.name,
                addresses=[socket.inet_aton(a) for a in self.interfaces],
                port=self.port,
                properties=self.properties,
                server=f"hc-{self.device_id}.local.",
            )
            announcing: Awaitable[Any] = await self._aiozc.async_register_service(self._info)
            self._announcing = asyncio.ensure_future(announcing)
        except (NonUniqueNameException, BadTypeInNameException, OSError):
            await self.stop()
            raise

    async def stop(self) -> None:
        """Withdraw our advert (goodbye packets), stop browsing and close
        the sockets. Idempotent; bounded by :data:`STOP_TIMEOUT` seconds."""
        if self._stopped:
            return
        self._stopped = True
        tasks: list[asyncio.Future[Any]] = list(self._resolving.values())
        if self._announcing is not None:
            tasks.append(self._announcing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._aiozc is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._shutdown(self._aiozc), STOP_TIMEOUT)

    async def _shutdown(self, aiozc: AsyncZeroconf) -> None:
        if self._browser is not None:
            await self._browser.async_cancel()
        await aiozc.async_unregister_all_services()
        await aiozc.async_close()

    # -- browsing -----------------------------------------------------------

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """Browser handler (in the event loop): resolve in a task, the latest
        change of a name replacing any resolution still running for it."""
        if self._stopped:
            return
        previous = self._resolving.pop(name, None)
        if previous is not None:
            previous.cancel()
        if state_change is ServiceStateChange.Removed:
            self._lost(name)
            return
        if name == self.name:
            self._ignore(name, "self")
            return
        if name not in self.peers and len(self.peers) >= MAX_PEERS:
            self._ignore(name, f"more than {MAX_PEERS} peers")
            return
        task = asyncio.ensure_future(self._resolve(zeroconf, service_type, name))
        self._resolving[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._resolving.get(name) is task:
            del self._resolving[name]

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        try:
            advert = await self._fetch(zeroconf, service_type, name)
            if advert.device_id == self.device_id:
                raise MalformedAdvert("self")
        except Exception as exc:  # a peer's records must never kill discovery
            reason = str(exc) if isinstance(exc, MalformedAdvert) else f"unusable: {exc!r}"
            self._lost(name)  # an advert that no longer checks out is no peer
            self._ignore(name, reason)
            return
        previous = self.peers.get(name)
        self.peers[name] = advert
        self.ignored.pop(name, None)
        if previous is None or (previous.host, previous.port) != (advert.host, advert.port):
            self._call(self.on_peer, advert.device_id, advert.host, advert.port)

    async def _fetch(self, zeroconf: Zeroconf, service_type: str, name: str) -> Advert:
        """Resolve ``name`` (bounded by ``resolve_timeout``) and check it.

        Raises:
            MalformedAdvert: unresolved in time, or unusable.
        """
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, int(self.config.resolve_timeout * 1000)):
            raise MalformedAdvert("unresolved (timeout)")
        # zeroconf decodes lazily: whatever a peer sent may surface here
        props, hosts = info.properties, info.parsed_addresses(IPVersion.V4Only)
        return decode_advert(props, info.port, hosts, self.interfaces)

    def _lost(self, name: str) -> None:
        self.ignored.pop(name, None)
        advert = self.peers.pop(name, None)
        if advert is not None and self.on_lost is not None:
            self._call(self.on_lost, advert.device_id)

    def _ignore(self, name: str, reason: str) -> None:
        self.ignored.pop(name, None)
        if len(self.ignored) >= MAX_IGNORED:  # bounded: adverts cost a peer nothing
            del self.ignored[next(iter(self.ignored))]
        self.ignored[name] = reason
        if self.on_ignored is not None:
            self._call(self.on_ignored, name, reason)

    @staticmethod
    def _call(callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("discovery callback %r failed", callback)
