"""A strict decoder of Y (Yjs / Yrs) **v1 updates**: what an update does,
read before it touches a document. Pure: the standard library only.

pycrdt applies an update but cannot list what is in it, so a receiver that
must check which items a peer inserts, under which client ids, and what it
deletes reads the bytes itself. The format is lib0's (``writeVarUint``,
``writeVarString``, ``writeAny``) as Yjs' ``UpdateEncoderV1`` lays it out::

    update  = varUint(#blocks) block* deleteSet
    block   = varUint(#structs) varUint(client) varUint(clock) struct*
    struct  = info:u8 ...   (info & 0x1f: 0 GC, 10 Skip, else an Item's content ref)

*Strict* means the decoder accepts only what an encoder writes, and only
what yrs (the engine that applies the update afterwards) reads the same
way. A validator is only as good as that agreement: if the decoder and yrs
parsed the same bytes differently, a peer could show the validator one
update and apply another. So, beyond lib0's own rules, it refuses:

1. varints longer than 53 bits or with padding (``0x80 0x00``); clocks and
   struct ends from 2**32 on, because yrs keeps clocks in a u32 and
   silently wraps larger ones (clock 2**32 reads as 0);
2. JSON content (ref 2): yrs 0.28 reads ``count + 1`` strings where Yjs
   reads ``count``, so the two disagree on where the next struct starts
   (no current encoder writes ref 2);
3. XmlHook types (type ref 5): Yjs reads a name after it, yrs does not; also
   type refs Yjs does not know (yrs' weak links, sub-documents, undefined)
   and content refs above 10 (yrs' Move);
4. a client with two blocks, or two delete-set entries (Yjs keeps the
   first block or entry, yrs the last), GC, Skip or delete ranges of length
   0, GC or Skip info bytes with flag bits, a parent flag other than 0 / 1,
   duplicate keys in an object, non-finite JSON numbers, malformed UTF-8
   (yrs does not check it), and trailing bytes.

Items of length 0 are read (strictly) and left out of the result: yrs drops
them when it decodes, and its encoder does write them (an empty String
where a text was split inside a multi-byte character).

Each error is an :class:`UpdateFormatError`; anything else escaping
:func:`decode_update` is a bug.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from .errors import RemoteProtocolError

_MAX_SAFE = (1 << 53) - 1  # Y client ids (and lib0 varints) are at most 53 bits
_CLOCK_LIMIT = (1 << 32) - 1  # yrs clocks are u32: every clock and struct end stays below
_MAX_INPUT = 1 << 32  # yrs reads counts as u32; no count can be that large if the input is not

# content refs (info & 0x1f)
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = range(11)
_HAS_ORIGIN, _HAS_RIGHT_ORIGIN, _HAS_PARENT_SUB = 0x80, 0x40, 0x20
# Yjs type refs: Array, Map, Text, XmlElement (named), XmlFragment, XmlText (XmlHook, 5: see 3.)
_TYPE_REFS = frozenset({0, 1, 2, 3, 4, 6})
_XML_ELEMENT = 3

_CLIENTS: dict[bytes, int] = {}  # eight varint bytes -> the client id they encode
_CLIENTS_MAX = 4096
_F32 = struct.Struct(">f").unpack_from
_F64 = struct.Struct(">d").unpack_from
_I64 = struct.Struct(">q").unpack_from


class UpdateFormatError(RemoteProtocolError):
    """A peer's Y update is malformed, truncated, over a limit, or written in
    a way yrs and Yjs would read differently."""

    code = "bad_update"


@dataclass(frozen=True, slots=True)
class Item:
    """One Item struct of an update.

    ``parent`` is the root type's name, the ID of the item holding the
    parent type, or None when the item has an origin (left or right): Y then
    writes neither parent nor map key, both are the origin's, so an entry
    overwriting a map key has ``parent_sub`` None too. ``values``: the
    decoded values for Any (8), ``(text,)`` for String (4), None for every
    other content (JSON, 2, never appears: :func:`decode_update` refuses it).
    """

    client: int
    clock: int
    length: int  # number of clock ticks the struct covers
    origin: tuple[int, int] | None  # (client, clock) of the left origin
    right_origin: tuple[int, int] | None
    parent: str | tuple[int, int] | None
    parent_sub: str | None  # map key (None for array and text items)
    content: int  # the content ref (1 Deleted ... 9 Doc)
    values: tuple[object, ...] | None


@dataclass(frozen=True, slots=True)
class DecodedUpdate:
    """Everything a v1 update carries, in the order it is written."""

    items: tuple[Item, ...]
    gc: tuple[tuple[int, int, int], ...]  # (client, clock, length) of GC structs
    skips: tuple[tuple[int, int, int], ...]  # (client, clock, length) of Skip structs
    deletes: dict[int, tuple[tuple[int, int], ...]]  # client -> ((clock, length), ...)

    @property
    def clients(self) -> frozenset[int]:
        """Every client id that has a struct (Item, GC or Skip) in the update."""
        found = {item.client for item in self.items}
        found.update(s[0] for s in self.gc)
        found.update(s[0] for s in self.skips)
        return frozenset(found)


class _ItemTwin:
    """Builds an :class:`Item` in a third of the time of a frozen dataclass's
    ``__init__`` (which goes through ``object.__setattr__`` per field): same
    slots, plain assignments, then the instance becomes an ``Item``. Decoding
    builds one per struct on every received entry."""

    __slots__ = Item.__slots__

    def __init__(self, *fields: object) -> None:
        (
            self.client,
            self.clock,
            self.length,
            self.origin,
            self.right_origin,
            self.parent,
            self.parent_sub,
            self.content,
            self.values,
        ) = fields


class _UpdateTwin:
    """:class:`DecodedUpdate`'s twin, as :class:`_ItemTwin`."""

    __slots__ = DecodedUpdate.__slots__

    def __init__(self, *fields: object) -> None:
        self.items, self.gc, self.skips, self.deletes = fields


def decode_update(
    data: bytes,
    *,
    max_structs: int = 1_000_000,
    max_values: int = 1_000_000,
    max_depth: int = 32,
) -> DecodedUpdate:
    """Decode a Y v1 update without applying it.

    Args:
        data: the update (``bytes``; any other buffer is copied).
        max_structs: at most this many structs and delete ranges together.
        max_values: at most this many values in all Any, Embed, Format and
            Doc contents, nested values included.
        max_depth: at most this many arrays / objects nested in one value.

    Returns:
        The update's items, GC and Skip structs and delete set.

    Raises:
        UpdateFormatError: the update is not one an encoder writes (see the
            module docstring), or exceeds a limit. Never anything else.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) >= _MAX_INPUT:
        raise UpdateFormatError("update larger than 4 GiB")
    try:
        found = _one_append(data, max_structs, max_values)
        return found or _decode(data, max_structs, [max_values], max_depth)
    except IndexError:  # a read past the end: every single-byte read relies on this
        raise UpdateFormatError("update ends in the middle of a value") from None
    except UnicodeDecodeError as exc:
        raise UpdateFormatError(f"string is not UTF-8 ({exc.reason})") from None
    except RecursionError:
        raise UpdateFormatError("values nested too deeply") from None
    except MemoryError:
        raise UpdateFormatError("update too large to decode") from None


# -- the update --------------------------------------------------------------------------


def _one_append(data: bytes, max_structs: int, max_values: int) -> DecodedUpdate | None:
    """The common entry, decoded in half the time of :func:`_decode`: one
    client block holding one Item appended after a left origin (info 0x88)
    with 1 to 15 string values, an empty delete set. None
    for any other shape, which :func:`_decode` then reads.

    It reads the same bytes in the same order as :func:`_decode`: an update
    both read decodes to the same result in both or fails in both (a test
    holds them to it).
    """
    if data[0] != 1 or data[1] != 1 or data[-1] != 0 or max_structs < 1:
        return None
    client, pos = _client(data, 2)
    clock, pos = _small_uvar(data, pos)
    if data[pos] != 0x88:
        return None
    origin_client, pos = _client(data, pos + 1)
    origin_clock, pos = _small_uvar(data, pos)
    count = data[pos]
    if not 0 < count < 16 or count > max_values:
        return None
    if clock + count > _CLOCK_LIMIT or origin_clock > _CLOCK_LIMIT:
        return None  # the general decoder says why
    pos += 1
    values = []
    for _ in range(count):
        if data[pos] != 119:
            return None
        value, pos = _string(data, pos + 1)
        values.append(value)
    if pos + 1 != len(data):  # data[pos] is the last byte: the empty delete set
        return None
    origin = (origin_client, origin_clock)
    item = _ItemTwin(client, clock, count, origin, None, None, None, _ANY, tuple(values))
    item.__class__ = Item  # type: ignore[assignment]
    update = _UpdateTwin((item,), (), (), {})
    update.__class__ = DecodedUpdate  # type: ignore[assignment]
    return update  # type: ignore[return-value]


def _decode(data: bytes, max_structs: int, budget: list[int], max_depth: int) -> DecodedUpdate:
    """Every structure of the update; inlined single-byte varints (the common
    case: a handful of clients, small clocks and counts) keep it fast."""
    end = len(data)
    blocks = data[0]
    pos = 1
    if blocks > 127:
        blocks, pos = _uvar(data, 0)
    items: list[Item] = []
    gcs: list[tuple[int, int, int]] = []
    skips: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    for _ in range(blocks):
        count = data[pos]
        pos += 1
        if count > 127:
            count, pos = _uvar(data, pos - 1)
        if count == 0:
            raise UpdateFormatError("client block without structs")
        if count > max_structs:
            raise UpdateFormatError(f"more than {max_structs} structs")
        if 2 * count > end - pos:  # every struct takes at least two bytes
            raise UpdateFormatError("struct count exceeds the update's size")
        max_structs -= count
        client, pos = _client(data, pos)
        if client in seen:
            raise UpdateFormatError(f"two blocks for client {client}")
        seen.add(client)
        clock = data[pos]
        pos += 1
        if clock > 127:
            clock, pos = _uvar(data, pos - 1)
        for _ in range(count):
            info = data[pos]
            pos += 1
            ref = info & 0x1F
            if ref == _GC or ref == _SKIP:
                if info != ref:
                    raise UpdateFormatError(f"GC / Skip struct with flags (info {info:#04x})")
                length, pos = _uvar(data, pos)
                if length == 0:
                    raise UpdateFormatError(f"empty GC / Skip at clock {clock} of client {client}")
                (gcs if ref == _GC else skips).append((client, clock, length))
            else:
                item, pos = _item(data, pos, client, clock, info, budget, max_depth)
                length = item.length
                if length:  # yrs writes, and drops on reading, empty items (see the docstring)
                    items.append(item)
            clock += length
            if clock > _CLOCK_LIMIT:
                raise UpdateFormatError(f"clock of client {client} beyond 2**32")
    if data[pos] == 0 and pos + 1 == end:  # the common empty delete set
        deletes: dict[int, tuple[tuple[int, int], ...]] = {}
    else:
        deletes, pos = _delete_set(data, pos, max_structs)
        if pos != end:
            raise UpdateFormatError(f"{end - pos} trailing bytes after the delete set")
    update = _UpdateTwin(tuple(items), tuple(gcs), tuple(skips), deletes)
    update.__class__ = DecodedUpdate  # type: ignore[assignment]
    return update  # type: ignore[return-value]


def _delete_set(
    data: bytes, pos: int, max_ranges: int
) -> tuple[dict[int, tuple[tuple[int, int], ...]], int]:
    """The delete set at ``pos`` and the position after it."""
    end = len(data)
    clients, pos = _uvar(data, pos)
    if 4 * clients > end - pos:  # client, count, clock, length: 4 bytes at least
        raise UpdateFormatError("delete set client count exceeds the update's size")
    deletes: dict[int, tuple[tuple[int, int], ...]] = {}
    for _ in range(clients):
        client, pos = _client(data, pos)
        if client in deletes:
            raise UpdateFormatError(f"two delete set entries for client {client}")
        count, pos = _uvar(data, pos)
        if count == 0:
            raise UpdateFormatError(f"delete set entry without ranges for client {client}")
        if count > max_ranges:
            raise UpdateFormatError(f"more than {max_ranges} structs and delete ranges")
        if 2 * count > end - pos:
            raise UpdateFormatError("delete range count exceeds the update's size")
        max_ranges -= count
        ranges = []
        for _ in range(count):
            clock, pos = _uvar(data, pos)
            length, pos = _uvar(data, pos)
            if length == 0:
                raise UpdateFormatError(f"delete range of length 0 for client {client}")
            if clock + length > _CLOCK_LIMIT:
                raise UpdateFormatError(f"delete range of client {client} beyond 2**32")
            ranges.append((clock, length))
        deletes[client] = tuple(ranges)
    return deletes, pos


# -- items ---------------------------------------------------------------------------------


def _item(
    data: bytes, pos: int, client: int, clock: int, info: int, budget: list[int], max_depth: int
) -> tuple[Item, int]:
    """The Item whose ``info`` byte was just read; its fields start at ``pos``."""
    origin: tuple[int, int] | None = None
    right_origin: tuple[int, int] | None = None
    parent: str | tuple[int, int] | None = None
    parent_sub: str | None = None
    values: tuple[object, ...] | None
    if info & _HAS_ORIGIN:
        origin, pos = _id(data, pos)
    if info & _HAS_RIGHT_ORIGIN:
        right_origin, pos = _id(data, pos)
    if not info & (_HAS_ORIGIN | _HAS_RIGHT_ORIGIN):
        named = data[pos]
        if named == 1:
            parent, pos = _string(data, pos + 1)
        elif named == 0:
            parent, pos = _id(data, pos + 1)
        else:
            raise UpdateFormatError(f"parent flag {named} is neither 0 nor 1")
        if info & _HAS_PARENT_SUB:
            parent_sub, pos = _string(data, pos)
    ref = info & 0x1F
    if ref == _ANY:
        length = data[pos]
        pos += 1
        if length > 127:
            length, pos = _uvar(data, pos - 1)
        if length > len(data) - pos:  # every value takes at least one byte
            raise UpdateFormatError("value count exceeds the update's size")
        if length > budget[0]:
            raise UpdateFormatError("more values than max_values")
        budget[0] -= length
        found: list[object] = []
        for _ in range(length):
            if data[pos] == 119:  # a string, the common value
                value, pos = _string(data, pos + 1)
            else:
                value, pos = _any(data, pos, 0, budget, max_depth)
            found.append(value)
        values = tuple(found)
    elif ref == _STRING:
        text, pos = _string(data, pos)
        values = (text,)
        # Y counts a string's clock ticks in UTF-16 code units
        length = len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2
    else:
        values = None
        length, pos = _other_content(data, pos, ref, budget, max_depth)
    item = _ItemTwin(client, clock, length, origin, right_origin, parent, parent_sub, ref, values)
    item.__class__ = Item  # type: ignore[assignment]
    return item, pos  # type: ignore[return-value]


def _other_content(
    data: bytes, pos: int, ref: int, budget: list[int], max_depth: int
) -> tuple[int, int]:
    """Check a content that is neither Any nor String; return its length
    (clock ticks) and the position after it."""
    if ref == _DELETED:
        return _uvar(data, pos)
    if ref == _BINARY:
        size, pos = _uvar(data, pos)
        if size > len(data) - pos:
            raise UpdateFormatError("binary content exceeds the update's size")
        return 1, pos + size
    if ref == _EMBED:
        text, pos = _string(data, pos)
        _json(text, budget, max_depth)
        return 1, pos
    if ref == _FORMAT:
        _key, pos = _string(data, pos)
        text, pos = _string(data, pos)
        _json(text, budget, max_depth)
        return 1, pos
    if ref == _TYPE:
        type_ref = data[pos]  # yrs reads one byte where Yjs reads a varUint: equal below 128
        if type_ref not in _TYPE_REFS:
            raise UpdateFormatError(f"unsupported type ref {type_ref}")
        pos += 1
        if type_ref == _XML_ELEMENT:
            _name, pos = _string(data, pos)
        return 1, pos
    if ref == _DOC:
        _guid, pos = _string(data, pos)
        if budget[0] < 1:
            raise UpdateFormatError("more values than max_values")
        budget[0] -= 1
        _options, pos = _any(data, pos, 0, budget, max_depth)
        return 1, pos
    if ref == _JSON:
        raise UpdateFormatError("JSON content (ref 2): yrs and Yjs read it differently")
    raise UpdateFormatError(f"unknown content ref {ref}")


# -- lib0 primitives ---------------------------------------------------------------------


def _uvar(data: bytes, pos: int) -> tuple[int, int]:
    """The varUint at ``pos`` (at most 53 bits, no padding) and the position after it."""
    value = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value > _MAX_SAFE:
                raise UpdateFormatError(f"varint beyond 53 bits ending at byte {pos}")
            if not byte and shift:
                raise UpdateFormatError(f"padded varint ending at byte {pos}")
            return value, pos
        shift += 7
        if shift > 49:
            raise UpdateFormatError(f"varint longer than 8 bytes at byte {pos}")


def _small_uvar(data: bytes, pos: int) -> tuple[int, int]:
    """:func:`_uvar` with one- and two-byte values read inline (clocks)."""
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    second = data[pos + 1]
    if 0 < second < 0x80:  # 0 would be padding: _uvar says so
        return (first & 0x7F) | second << 7, pos + 2
    return _uvar(data, pos)


def _client(data: bytes, pos: int) -> tuple[int, int]:
    """The client id (a varUint) at ``pos``, and the position after it.

    Most client ids take eight bytes, which cost a loop of eight turns; the
    same few ids (this device's peers) come back in every update, so the
    eight bytes of each id seen are kept in a bounded memo.
    """
    key = data[pos : pos + 8]
    client = _CLIENTS.get(key)
    if client is not None:
        return client, pos + 8
    client, end = _uvar(data, pos)
    if end - pos == 8:
        if len(_CLIENTS) >= _CLIENTS_MAX:
            _CLIENTS.clear()  # a memo: any entry can be recomputed
        _CLIENTS[key] = client
    return client, end


def _id(data: bytes, pos: int) -> tuple[tuple[int, int], int]:
    """A struct ID (client, clock) at ``pos``."""
    client, pos = _client(data, pos)
    clock = data[pos]
    pos += 1
    if clock > 127:
        clock, pos = _uvar(data, pos - 1)
    if clock > _CLOCK_LIMIT:
        raise UpdateFormatError(f"ID clock {clock} beyond 2**32")
    return (client, clock), pos


def _string(data: bytes, pos: int) -> tuple[str, int]:
    """The varString (UTF-8, strictly) at ``pos``."""
    size = data[pos]
    pos += 1
    if size > 127:  # 128 to 16,383 bytes (two varint bytes) is common: inline
        high = data[pos]
        if 0 < high < 128:
            size = size & 0x7F | high << 7
            pos += 1
        else:
            size, pos = _uvar(data, pos - 1)
    stop = pos + size
    if stop > len(data):
        raise UpdateFormatError("string exceeds the update's size")
    return data[pos:stop].decode(), stop


def _any(data: bytes, pos: int, depth: int, budget: list[int], max_depth: int) -> tuple[Any, int]:
    """The lib0 ``any`` value at ``pos``, ``depth`` containers deep. Its own
    slot in ``budget`` is already taken; nested values take theirs here."""
    tag = data[pos]
    pos += 1
    if tag == 119:
        return _string(data, pos)
    if tag == 124:
        if pos + 4 > len(data):
            raise IndexError
        return _F32(data, pos)[0], pos + 4
    if tag == 123:
        if pos + 8 > len(data):
            raise IndexError
        return _F64(data, pos)[0], pos + 8
    if tag == 125:
        return _var_int(data, pos)
    if tag == 120 or tag == 121:
        return tag == 120, pos
    if tag == 126 or tag == 127:
        return None, pos  # null, undefined
    if tag == 117 or tag == 118:
        if depth >= max_depth:
            raise UpdateFormatError(f"values nested deeper than {max_depth}")
        return _container(data, pos, tag == 118, depth + 1, budget, max_depth)
    if tag == 116:
        size, pos = _uvar(data, pos)
        if size > len(data) - pos:
            raise UpdateFormatError("binary value exceeds the update's size")
        return data[pos : pos + size], pos + size
    if tag == 122:
        if pos + 8 > len(data):
            raise IndexError
        return _I64(data, pos)[0], pos + 8
    raise UpdateFormatError(f"unknown value tag {tag}")


def _container(
    data: bytes, pos: int, is_object: bool, depth: int, budget: list[int], max_depth: int
) -> tuple[Any, int]:
    """An array (``is_object`` False) or object whose count is at ``pos``."""
    count, pos = _uvar(data, pos)
    if (2 if is_object else 1) * count > len(data) - pos:
        raise UpdateFormatError("element count exceeds the update's size")
    if count > budget[0]:
        raise UpdateFormatError("more values than max_values")
    budget[0] -= count
    if not is_object:
        items = []
        for _ in range(count):
            value, pos = _any(data, pos, depth, budget, max_depth)
            items.append(value)
        return items, pos
    entries: dict[str, Any] = {}
    for _ in range(count):
        key, pos = _string(data, pos)
        if key in entries:
            raise UpdateFormatError(f"duplicate key {key!r} in an object")
        entries[key], pos = _any(data, pos, depth, budget, max_depth)
    return entries, pos


def _var_int(data: bytes, pos: int) -> tuple[int, int]:
    """lib0's signed varInt at ``pos``: sign 0x40 and 6 bits first, then 7 per byte."""
    byte = data[pos]
    pos += 1
    value = byte & 0x3F
    negative = byte & 0x40
    shift = 6
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte == 0:
            raise UpdateFormatError(f"padded varint ending at byte {pos}")
        if shift > 55:
            raise UpdateFormatError(f"varint longer than 8 bytes at byte {pos}")
    if value > _MAX_SAFE:
        raise UpdateFormatError(f"integer beyond 53 bits ending at byte {pos}")
    return (-value if negative else value), pos


def _json(text: str, budget: list[int], max_depth: int) -> None:
    """Check a JSON-encoded content value as yrs (serde_json) will parse it:
    strict JSON, no NaN / Infinity, no duplicate keys, within the limits."""
    try:
        value = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise UpdateFormatError(f"content is not JSON ({exc})") from None
    # count the values and measure the depth, without recursion
    stack = [(value, 0)]
    while stack:
        value, depth = stack.pop()
        if budget[0] < 1:
            raise UpdateFormatError("more values than max_values")
        budget[0] -= 1
        if isinstance(value, float) and not math.isfinite(value):
            raise UpdateFormatError("JSON number out of range")
        if isinstance(value, list | dict):
            if depth >= max_depth:
                raise UpdateFormatError(f"values nested deeper than {max_depth}")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    entries = dict(pairs)
    if len(entries) != len(pairs):
        raise ValueError("duplicate key")
    return entries


__all__ = ["DecodedUpdate", "Item", "UpdateFormatError", "decode_update"]
