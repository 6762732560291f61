"""The wire format: versioned msgpack messages in length-prefixed frames.

A frame is a 4-byte big-endian length followed by that many bytes of
msgpack: ``[WIRE_VERSION, type, ...fields]``, ``type`` being the message's
number in :data:`MESSAGE_TYPES`. Every message is a frozen dataclass.
:class:`FrameDecoder` turns received bytes into messages and raises
:class:`RemoteProtocolError` for anything malformed: oversize lengths are
refused before their bytes are buffered, msgpack limits bound every
container, and every field's type is checked.

A segment travels as ``[device, head_seq, head_hash, signature, first_prev,
[[hlc, update], ...]]``: the event is the message's, sequence numbers follow
from the head, and every ``prev`` but the first is implied by the chain (the
receiver recomputes the hashes anyway).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, assert_never

import msgpack

from headcount.core.chain import HASH_SIZE, Head, Segment, with_digest
from headcount.core.errors import LocalProtocolError, RemoteProtocolError
from headcount.core.model import LogEntry

WIRE_VERSION = 1
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB
MAX_ENTRIES_PER_MESSAGE = 50_000  # checked before any entry is hashed
MAX_ACK_COUNT = 1 << 16  # messages one acknowledgement may cover
MAX_REVOCATIONS_PER_MESSAGE = 256
MAX_REVOCATION_BODY = 1024  # a record's signed body
MAX_REVOCATION_CERT = 16_384  # its signer's certificate (DER)
_LEN = struct.Struct(">I")
# A frame's type number is its 7th byte: the length, the fixarray header and
# the version (a positive fixint) come first.
_TYPE_AT = _LEN.size + 2


@dataclass(frozen=True, slots=True)
class Hello:
    """First message each side sends: who it claims to be and what it speaks."""

    device: str
    events: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Summary:
    """What the sender holds of an event. ``reply`` asks the receiver to
    answer with its own summary (push-pull); a reply never asks again."""

    event: str
    vv: Mapping[str, int]
    reply: bool


@dataclass(frozen=True, slots=True)
class Segments:
    """Entries the receiver lacks, as verified-signed segments."""

    event: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """The receiver's version vector after applying ``count`` ``Segments``
    messages (acknowledgements may be delayed and cumulative)."""

    event: str
    vv: Mapping[str, int]
    count: int = 1


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    nonce: int


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Sent before closing; ``code`` is stable, ``message`` for humans."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class SnapshotPart:
    """A piece of an event's snapshot, for a peer behind the compaction
    horizon. Parts arrive in order; the first carries the origins' signed
    heads at the horizon."""

    event: str
    offset: int
    total: int
    data: bytes
    heads: tuple[Head, ...]


@dataclass(frozen=True, slots=True)
class Directory:
    """Certificates of devices the sender trusts (DER), so that the receiver
    can verify entries relayed from devices it never met."""

    certs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RevocationRecord:
    """One signed revocation record as it travels: the signed ``body``, its
    Ed25519 signature and the signer's certificate (DER; empty when the
    organisation CA signed). Opaque here: the log verifies it."""

    body: bytes
    sig: bytes
    cert: bytes = b""


@dataclass(frozen=True, slots=True)
class Revocations:
    """Signed revocation records of the organisation (not of one event),
    sent after ``Hello`` and whenever the sender learns new ones."""

    records: tuple[RevocationRecord, ...]


Message = (
    Hello
    | Summary
    | Segments
    | Ack
    | Ping
    | Pong
    | Goodbye
    | SnapshotPart
    | Directory
    | Revocations
)

# The one table of message type numbers. A number is part of the wire format:
# never reuse or renumber one. Numbers stay below 128 so that each encodes as
# a single byte (a msgpack positive fixint), which :func:`peek_message_type`
# relies on.
MESSAGE_TYPES: Final[Mapping[int, type[Message]]] = MappingProxyType(
    {
        1: Hello,
        2: Summary,
        3: Segments,
        4: Ack,
        5: Ping,
        6: Pong,
        7: Goodbye,
        8: SnapshotPart,
        9: Directory,
        10: Revocations,
    }
)
TYPE_NUMBERS: Final[Mapping[type[Message], int]] = MappingProxyType(
    {cls: number for number, cls in MESSAGE_TYPES.items()}
)


# -- encoding -------------------------------------------------------------------


def encode(message: Message, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One frame holding ``message``.

    Raises:
        LocalProtocolError: the frame would exceed ``max_frame``.
    """
    body: bytes = msgpack.packb([WIRE_VERSION, TYPE_NUMBERS[type(message)], *_fields(message)])
    if len(body) > max_frame:
        raise LocalProtocolError(f"message of {len(body)} bytes exceeds the frame limit")
    return _LEN.pack(len(body)) + body


def segment_wire_size(seg: Segment) -> int:
    """Bytes this segment adds to a ``Segments`` frame (for batching)."""
    return len(msgpack.packb(_segment(seg)))


def _fields(m: Message) -> list[Any]:
    if isinstance(m, Hello):
        return [m.device, list(m.events)]
    if isinstance(m, Summary):
        return [m.event, dict(m.vv), m.reply]
    if isinstance(m, Segments):
        return [m.event, [_segment(s) for s in m.segments]]
    if isinstance(m, Ack):  # the count only when it is not 1: the version 1 encoding
        return [m.event, dict(m.vv)] + ([m.count] if m.count != 1 else [])
    if isinstance(m, Ping | Pong):
        return [m.nonce]
    if isinstance(m, Directory):
        return [list(m.certs)]
    if isinstance(m, SnapshotPart):
        heads = [[h.device, h.seq, h.hash, h.sig] for h in m.heads]
        return [m.event, m.offset, m.total, m.data, heads]
    if isinstance(m, Goodbye):
        return [m.code, m.message]
    if isinstance(m, Revocations):
        return [[[r.body, r.sig, r.cert] for r in m.records]]
    assert_never(m)


def _segment(seg: Segment) -> list[Any]:
    h = seg.head
    return [
        h.device,
        h.seq,
        h.hash,
        h.sig,
        seg.entries[0].prev,
        [[e.hlc, e.update] for e in seg.entries],
    ]


# -- decoding -------------------------------------------------------------------


class FrameDecoder:
    """Incremental frame parser (``receive_data`` then ``next_message``).

    Args:
        max_frame: frames announcing more bytes than this are refused at once.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_message(self) -> Message | None:
        """The next complete message, or None if more bytes are needed.

        Raises:
            RemoteProtocolError: an oversize, malformed or unknown frame. The
                decoder is unusable afterwards (the session must close).
        """
        if len(self._buf) < _LEN.size:
            return None
        (length,) = _LEN.unpack_from(self._buf)
        if length > self.max_frame:
            raise RemoteProtocolError(f"frame of {length} bytes exceeds the limit", code="too_big")
        if len(self._buf) < _LEN.size + length:
            return None
        body = bytes(self._buf[_LEN.size : _LEN.size + length])
        del self._buf[: _LEN.size + length]
        return decode_body(body, self.max_frame)


def decode_body(body: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Message:
    """Decode one frame body.

    Raises:
        RemoteProtocolError: malformed msgpack, unknown version or type, or a
            field of the wrong type or size.
    """
    try:
        raw = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=max_frame,
            max_str_len=max_frame,
            max_array_len=max_frame // 2,
            max_map_len=max_frame // 4,
            max_ext_len=0,
        )
    except Exception as exc:
        raise RemoteProtocolError(
            f"undecodable frame: {type(exc).__name__}", code="malformed"
        ) from None
    if not isinstance(raw, list) or len(raw) < 2:
        raise _malformed("a frame must be [version, type, ...]")
    version, kind, *fields = raw
    if type(version) is not int or version != WIRE_VERSION:
        raise RemoteProtocolError(f"unsupported wire version {version!r}", code="version")
    # type() is not isinstance(): True and 5.0 equal type numbers but are not ones.
    cls = MESSAGE_TYPES.get(kind) if type(kind) is int else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {kind!r:.40}", code="malformed")
    try:
        return _DECODERS[cls](fields)
    except (TypeError, ValueError) as exc:
        raise _malformed(str(exc)) from None


def peek_message_type(frame: bytes) -> type[Message] | None:
    """The message class of one whole frame, read from its header alone.

    For drivers that label frames they pass on (the simulator's metrics);
    nothing is checked beyond the header, so a receiver must still decode.

    Returns:
        None if the frame does not start as :func:`encode` starts one (a
        fixarray holding :data:`WIRE_VERSION`, then a known type number).
    """
    if len(frame) <= _TYPE_AT or frame[_LEN.size] & 0xF0 != 0x90:
        return None
    if frame[_LEN.size + 1] != WIRE_VERSION:
        return None
    return MESSAGE_TYPES.get(frame[_TYPE_AT])


def _malformed(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed message: {why}", code="malformed")


def _str(v: Any, limit: int = 128) -> str:
    if not isinstance(v, str) or not v or len(v) > limit or not v.isprintable():
        raise ValueError("bad string field")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 1 << 64:
        raise ValueError("bad integer field")
    return v


def _bytes(v: Any, size: int | None = None) -> bytes:
    if not isinstance(v, bytes) or (size is not None and len(v) != size):
        raise ValueError("bad bytes field")
    return v


def _vv(v: Any) -> dict[str, int]:
    if not isinstance(v, dict):
        raise ValueError("version vector must be a map")
    out = {_str(k): _int(n) for k, n in v.items()}
    if any(n < 1 for n in out.values()):
        raise ValueError("version vector sequence numbers start at 1")
    return out


def _expect(fields: list[Any], n: int) -> list[Any]:
    if len(fields) != n:
        raise ValueError(f"expected {n} fields, got {len(fields)}")
    return fields


def _hello(f: list[Any]) -> Hello:
    device, events = _expect(f, 2)
    if not isinstance(events, list):
        raise ValueError("events must be a list")
    return Hello(_str(device), tuple(_str(e) for e in events))


def _summary(f: list[Any]) -> Summary:
    event, vv, reply = _expect(f, 3)
    if not isinstance(reply, bool):
        raise ValueError("reply must be a boolean")
    return Summary(_str(event), _vv(vv), reply)


def _segments(f: list[Any]) -> Segments:
    event, raw_segments = _expect(f, 2)
    event = _str(event)
    if not isinstance(raw_segments, list):
        raise ValueError("segments must be a list")
    total = sum(
        len(s[5])
        for s in raw_segments
        if isinstance(s, list) and len(s) == 6 and isinstance(s[5], list)
    )
    if total > MAX_ENTRIES_PER_MESSAGE:
        raise ValueError(f"more than {MAX_ENTRIES_PER_MESSAGE} entries in one message")
    return Segments(event, tuple(_decode_segment(event, s) for s in raw_segments))


def _decode_segment(event: str, raw: Any) -> Segment:
    if not isinstance(raw, list):
        raise ValueError("a segment must be a list")
    device, head_seq, head_hash, sig, prev, items = _expect(raw, 6)
    device, head_seq = _str(device), _int(head_seq)
    head = Head(event, device, head_seq, _bytes(head_hash, HASH_SIZE), _bytes(sig, 64))
    if not isinstance(items, list) or not items or len(items) > head_seq:
        raise ValueError("a segment needs 1..head_seq entries")
    entries: list[LogEntry] = []
    prev = _bytes(prev, HASH_SIZE)
    first = head_seq - len(items) + 1
    for i, item in enumerate(items):
        if not isinstance(item, list):
            raise ValueError("an entry must be [hlc, update]")
        hlc, update = _expect(item, 2)
        entry = with_digest(LogEntry(event, device, first + i, _int(hlc), _bytes(update), prev))
        entries.append(entry)
        prev = entry.digest
    return Segment(tuple(entries), head)


def _ack(f: list[Any]) -> Ack:
    if len(f) == 2:  # one message acknowledged
        f = [*f, 1]
    event, vv, count = _expect(f, 3)
    count = _int(count)
    if not 1 <= count <= MAX_ACK_COUNT:
        raise ValueError(f"an acknowledgement covers 1..{MAX_ACK_COUNT} messages")
    return Ack(_str(event), _vv(vv), count)


def _goodbye(f: list[Any]) -> Goodbye:
    code, message = _expect(f, 2)
    if not isinstance(message, str) or len(message) > 1024:
        raise ValueError("bad goodbye message")
    return Goodbye(_str(code, 64), message)


def _snapshot_part(f: list[Any]) -> SnapshotPart:
    event, offset, total, data, raw_heads = _expect(f, 5)
    event = _str(event)
    if not isinstance(raw_heads, list):
        raise ValueError("heads must be a list")
    heads = []
    for raw in raw_heads:
        if not isinstance(raw, list):
            raise ValueError("a head must be a list")
        device, seq, digest, sig = _expect(raw, 4)
        heads.append(
            Head(event, _str(device), _int(seq), _bytes(digest, HASH_SIZE), _bytes(sig, 64))
        )
    part = SnapshotPart(event, _int(offset), _int(total), _bytes(data), tuple(heads))
    if part.offset + len(part.data) > part.total:
        raise ValueError("snapshot part beyond its total")
    return part


def _directory(f: list[Any]) -> Directory:
    (certs,) = _expect(f, 1)
    if not isinstance(certs, list) or len(certs) > 10_000:
        raise ValueError("certs must be a list of at most 10000")
    return Directory(tuple(_bytes(c) for c in certs if len(_bytes(c)) <= 16_384))


def _revocations(f: list[Any]) -> Revocations:
    (raw,) = _expect(f, 1)
    if not isinstance(raw, list) or len(raw) > MAX_REVOCATIONS_PER_MESSAGE:
        raise ValueError(f"records must be a list of at most {MAX_REVOCATIONS_PER_MESSAGE}")
    records = []
    for item in raw:
        if not isinstance(item, list):
            raise ValueError("a revocation record must be [body, sig, cert]")
        body, sig, cert = _expect(item, 3)
        body, cert = _bytes(body), _bytes(cert)
        if not 0 < len(body) <= MAX_REVOCATION_BODY or len(cert) > MAX_REVOCATION_CERT:
            raise ValueError("revocation record body or certificate of a bad size")
        records.append(RevocationRecord(body, _bytes(sig, 64), cert))
    return Revocations(tuple(records))


def _ping(f: list[Any]) -> Ping:
    return Ping(_int(_expect(f, 1)[0]))


def _pong(f: list[Any]) -> Pong:
    return Pong(_int(_expect(f, 1)[0]))


# Keyed by class, not number: the numbers live in MESSAGE_TYPES alone.
_DECODERS: Final[Mapping[type[Message], Callable[[list[Any]], Message]]] = {
    Hello: _hello,
    Summary: _summary,
    Segments: _segments,
    Ack: _ack,
    Ping: _ping,
    Pong: _pong,
    Goodbye: _goodbye,
    SnapshotPart: _snapshot_part,
    Directory: _directory,
    Revocations: _revocations,
}
