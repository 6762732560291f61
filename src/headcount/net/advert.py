"""What a device advertises over mDNS, and which addresses discovery may use.

Pure functions and values (no sockets, no zeroconf): the TXT properties of
a ``_headcount._tcp.local.`` advert, their checks, and the network scope
rules of :mod:`headcount.net.discovery`.

TXT properties (RFC 6763 key=value strings):

========  ============================================================
device    the device id (:func:`headcount.core.identity.is_device_id`)
events    the event ids it holds, comma-separated, at most
          :data:`MAX_EVENTS_TXT` bytes (a hint only: sync decides)
more      ``1`` when the events list was cut to fit
proto     the wire protocol version (:data:`headcount.wire.WIRE_VERSION`)
role      ``gate``, ``relay`` or ``admin``
========  ============================================================
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from headcount.core.errors import InputError
from headcount.core.identity import is_device_id
from headcount.protocol.wire import WIRE_VERSION

SERVICE_TYPE = "_headcount._tcp.local."
DEFAULT_INTERFACES: tuple[str, ...] = ("127.0.0.1",)
MAX_EVENTS_TXT = 200  # bytes of the events value; one TXT string holds at most 255

# TXT keys (short, as RFC 6763 section 6.4 recommends)
TXT_DEVICE = "device"
TXT_EVENTS = "events"
TXT_MORE = "more"  # "1": the events list was cut to fit
TXT_PROTO = "proto"
TXT_ROLE = "role"

_ROLE = re.compile(r"[a-z]{1,16}")


@dataclass(frozen=True, slots=True)
class Advert:
    """What a peer advertised, once resolved and checked."""

    device_id: str
    host: str
    port: int
    role: str
    events: tuple[str, ...]
    events_complete: bool


class MalformedAdvert(ValueError):
    """An advert from another device that we cannot use (its fault, not ours)."""


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def check_interfaces(interfaces: Iterable[str]) -> tuple[str, ...]:
    """Validate the configured interfaces.

    Returns:
        the addresses, normalised.

    Raises:
        InputError: empty, not an IPv4 address, or an address that does not
            name one interface (unspecified ``0.0.0.0``, multicast, broadcast).
    """
    out = []
    for text in interfaces:
        try:
            address = ipaddress.IPv4Address(text)
        except (ipaddress.AddressValueError, TypeError, ValueError):
            raise InputError(f"discovery interface {text!r} is not an IPv4 address") from None
        if address.is_unspecified or address.is_multicast or address == _BROADCAST:
            raise InputError(f"discovery interface {text} does not name one interface")
        out.append(str(address))
    if not out:
        raise InputError("discovery needs at least one interface address")
    return tuple(dict.fromkeys(out))


def in_scope(address: str, interfaces: Iterable[str]) -> bool:
    """May discovery send to, or hand out, ``address``? Any address once a
    LAN interface is configured; with loopback interfaces only, only
    loopback addresses (so nothing can make us send traffic off the machine)."""
    if not all(ipaddress.ip_address(i).is_loopback for i in interfaces):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def instance_name(device_id: str, service_type: str = SERVICE_TYPE) -> str:
    """The fully qualified service instance name of a device."""
    return f"hc-{device_id}.{service_type}"


def encode_properties(device_id: str, events: Iterable[str], role: str) -> dict[str, str]:
    """The TXT properties advertised for a device.

    Events are joined with commas, sorted, up to :data:`MAX_EVENTS_TXT`
    bytes; events that do not fit (or contain a comma) are left out and
    ``more=1`` says so. The list is a hint: sync decides what is exchanged.
    """
    kept: list[str] = []
    size, complete = 0, True
    for event in sorted(set(events)):
        cost = len(event.encode()) + (1 if kept else 0)
        if "," in event or size + cost > MAX_EVENTS_TXT:
            complete = False
            continue
        kept.append(event)
        size += cost
    props = {
        TXT_DEVICE: device_id,
        TXT_EVENTS: ",".join(kept),
        TXT_PROTO: str(WIRE_VERSION),
        TXT_ROLE: role,
    }
    if not complete:
        props[TXT_MORE] = "1"
    return props


def decode_advert(
    props: Mapping[bytes, bytes | None],
    port: object,
    hosts: Iterable[str],
    interfaces: Iterable[str],
) -> Advert:
    """Check another device's resolved advert.

    Args:
        props: its TXT properties (raw).
        port: its SRV port.
        hosts: its IPv4 addresses; the first one :func:`in_scope` is used.
        interfaces: our configured interfaces.

    Raises:
        MalformedAdvert: see :func:`decode_properties`; a bad port; no IPv4
            address in scope.
    """
    device_id, role, events, complete = decode_properties(props)
    if type(port) is not int or not 0 < port < 65536:
        raise MalformedAdvert(f"bad port {port!r}")
    usable = [h for h in hosts if in_scope(h, interfaces)]
    if not usable:
        raise MalformedAdvert(f"no IPv4 address in scope among {list(hosts)[:4]}")
    return Advert(device_id, usable[0], port, role, events, complete)


def decode_properties(
    props: Mapping[bytes, bytes | None],
) -> tuple[str, str, tuple[str, ...], bool]:
    """Check another device's TXT properties.

    Returns:
        (device_id, role, events, events_complete).

    Raises:
        MalformedAdvert: missing or malformed fields, or another protocol
            version (the message then starts with ``protocol``).
    """
    text: dict[str, str] = {}
    for key, value in props.items():
        try:
            text[key.decode("ascii")] = "" if value is None else value.decode("utf-8")
        except (UnicodeDecodeError, AttributeError):
            raise MalformedAdvert("TXT key or value is not text") from None
    proto = text.get(TXT_PROTO)
    if proto != str(WIRE_VERSION):
        raise MalformedAdvert(f"protocol version {proto!r}, we speak {WIRE_VERSION}")
    device_id, role = text.get(TXT_DEVICE, ""), text.get(TXT_ROLE, "")
    if not is_device_id(device_id):
        raise MalformedAdvert(f"bad device id {device_id[:64]!r}")
    if not _ROLE.fullmatch(role):
        raise MalformedAdvert(f"bad role {role[:64]!r}")
    raw_events = text.get(TXT_EVENTS, "")
    events = tuple(e for e in raw_events.split(",") if e) if raw_events else ()
    return device_id, role, events, text.get(TXT_MORE) != "1"
