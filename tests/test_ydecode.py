"""The strict Y v1 update decoder (headcount.core.ydecode).

1. Differential against pycrdt: random documents edited by several docs,
   every full and per-transaction update decoded and checked against what
   pycrdt says about the same bytes (state vector, delete set, values).
2. Fuzz: random bytes and mutations of genuine updates either decode or
   raise UpdateFormatError, quickly.
3. One hand-encoded update per error class, and the GC / Skip / delete-set
   cases pycrdt produces.
4. The inputs yrs reads differently from Yjs, pinned on pycrdt itself: if
   an upgrade changes them, these tests say the decoder's refusals need a
   second look.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from headcount.core import ydecode
from headcount.core.errors import RemoteProtocolError
from headcount.core.ydecode import DecodedUpdate, Item, UpdateFormatError, decode_update

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    print_blob=True,  # a failure prints the @reproduce_failure blob
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings(
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

# -- a tiny v1 encoder for hand-made updates ---------------------------------------------


def uv(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def vs(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return uv(len(raw)) + raw


def block(client: int, clock: int, *structs: bytes) -> bytes:
    return uv(len(structs)) + uv(client) + uv(clock) + b"".join(structs)


def update(*blocks: bytes, deletes: bytes = b"\x00") -> bytes:
    return uv(len(blocks)) + b"".join(blocks) + deletes


def any_item(*values: bytes, parent: str = "s") -> bytes:
    """An Any item under a root type, no origin: info 0x08."""
    return b"\x08" + b"\x01" + vs(parent) + uv(len(values)) + b"".join(values)


def string(text: str | bytes) -> bytes:
    return b"\x77" + vs(text)


def delete_set(*entries: tuple[int, list[tuple[int, int]]]) -> bytes:
    out = uv(len(entries))
    for client, ranges in entries:
        out += uv(client) + uv(len(ranges))
        out += b"".join(uv(clock) + uv(length) for clock, length in ranges)
    return out


OK = update(block(7, 0, any_item(string("x"))))  # one string appended to root "s"


def refused(data: bytes, **limits: int) -> str:
    with pytest.raises(UpdateFormatError) as info:
        decode_update(data, **limits)
    assert info.value.code == "bad_update"
    assert isinstance(info.value, RemoteProtocolError)
    return str(info.value)


# -- reading what pycrdt says ---------------------------------------------------------------


def read_state(sv: bytes) -> dict[int, int]:
    """A state vector (varUint count, then client, clock pairs)."""

    def read(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = sv[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, pos

    count, pos = read(0)
    state = {}
    for _ in range(count):
        client, pos = read(pos)
        state[client], pos = read(pos)
    assert pos == len(sv)
    return state


def spans(decoded: DecodedUpdate) -> list[tuple[int, int, int, bool]]:
    """(client, clock, length, is a Skip) of every struct, in clock order."""
    found = [(i.client, i.clock, i.length, False) for i in decoded.items]
    found += [(*s, False) for s in decoded.gc] + [(*s, True) for s in decoded.skips]
    return sorted(found)


def implied_state(decoded: DecodedUpdate) -> dict[int, int]:
    """The state vector ``pycrdt.get_state(update)`` reports: per client, how
    far its structs run from clock 0 without a gap (a Skip is a gap). An
    update that starts at a later clock (any transaction but a client's
    first) adds nothing."""
    state: dict[int, int] = {}
    for client, clock, length, skip in spans(decoded):
        if skip:
            state[client] = -1
        elif clock == state.get(client, 0):
            state[client] = clock + length
    return {client: clock for client, clock in state.items() if clock > 0}


def clock_ends(decoded: DecodedUpdate) -> dict[int, int]:
    """Per client, the clock after its last struct."""
    return {client: clock + length for client, clock, length, _ in spans(decoded)}


def deleted_length(decoded: DecodedUpdate) -> int:
    return sum(length for ranges in decoded.deletes.values() for _, length in ranges)


def norm(value: Any) -> Any:
    """A value in a form that compares across int / float and orders by repr."""
    if isinstance(value, bool) or value is None or isinstance(value, str | bytes):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return tuple(sorted((k, norm(v)) for k, v in value.items()))
    return tuple(norm(v) for v in value)


def multiset(values: Iterable[Any]) -> Counter[str]:
    return Counter(repr(norm(v)) for v in values)


class Resolved:
    """The items of a full update with their parent and key resolved (an
    item with an origin inherits both from it) and whether they are live
    (outside the delete set)."""

    def __init__(self, decoded: DecodedUpdate) -> None:
        self.decoded = decoded
        self.place: dict[tuple[int, int], tuple[Any, str | None]] = {}
        for item in sorted(decoded.items, key=lambda i: (i.client, i.clock)):
            self.place[(item.client, item.clock)] = self._place(item)

    def _find(self, ident: tuple[int, int]) -> Item | None:
        client, clock = ident
        for item in self.decoded.items:
            if item.client == client and item.clock <= clock < item.clock + item.length:
                return item
        return None

    def _place(self, item: Item) -> tuple[Any, str | None]:
        if item.parent is not None:
            return item.parent, item.parent_sub
        for ident in (item.origin, item.right_origin):
            neighbour = self._find(ident) if ident is not None else None
            if neighbour is not None:
                key = (neighbour.client, neighbour.clock)
                return self.place.get(key) or self._place(neighbour)
        return None, None  # the neighbour was garbage-collected: so is this item

    def live(self, item: Item) -> bool:
        ranges = self.decoded.deletes.get(item.client, ())
        covered = sum(
            max(0, min(c + n, item.clock + item.length) - max(c, item.clock)) for c, n in ranges
        )
        assert covered in (0, item.length), f"{item} is partly deleted"
        return covered == 0

    def under(self, parent: Any, key: str | None = None) -> list[Item]:
        """The live items of ``parent`` (and map ``key``), in clock order."""
        return [
            i
            for i in sorted(self.decoded.items, key=lambda i: (i.client, i.clock))
            if self.place[(i.client, i.clock)] == (parent, key) and self.live(i)
        ]


# -- 1. differential against pycrdt -----------------------------------------------------------

SCALARS = (
    st.text(max_size=12)
    | st.integers(-(2**31), 2**31)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
TEXTS = st.text(alphabet="ab é😀\n", min_size=1, max_size=8)
KEYS = st.sampled_from(["k1", "k2", "k3"])
FRACTION = st.floats(0, 1)
OPS = st.one_of(
    st.tuples(
        st.just("insert"), st.sampled_from("ab"), FRACTION, st.lists(VALUES, min_size=1, max_size=3)
    ),
    st.tuples(st.just("delete"), st.sampled_from("ab"), FRACTION, st.integers(1, 3)),
    st.tuples(st.just("nested"), st.booleans(), st.dictionaries(KEYS, SCALARS, max_size=2)),
    st.tuples(st.just("nested_edit"), FRACTION, KEYS, SCALARS),
    st.tuples(st.just("map_set"), KEYS, VALUES),
    st.tuples(st.just("map_del"), KEYS),
    st.tuples(st.just("text_insert"), FRACTION, TEXTS),
    st.tuples(st.just("text_delete"), FRACTION, st.integers(1, 4)),
    st.tuples(st.just("text_format"), FRACTION, st.integers(1, 4), st.booleans()),
    st.tuples(st.just("sync"), st.integers(0, 2)),
)


@dataclasses.dataclass
class Txn:
    """One transaction's update and what it is known to delete (None: unknown)."""

    update: bytes
    local: bool
    deletes: bool | None = None
    deleted: int | None = None  # total length of the delete set, when known


class Peer:
    def __init__(self, client: int, skip_gc: bool) -> None:
        self.client = client
        self.doc: Doc = Doc(client_id=client, skip_gc=skip_gc)
        self.arrays = {name: self.doc.get(name, type=Array) for name in "ab"}
        self.map = self.doc.get("m", type=Map)
        self.text = self.doc.get("t", type=Text)
        self.txns: list[Txn] = []
        self.pending: list[bytes] = []
        self.sub = self.doc.observe(lambda event: self.pending.append(event.update))

    def record(self, action: Callable[[], None], local: bool = True, **known: Any) -> None:
        self.pending.clear()
        action()
        self.txns.extend(Txn(u, local, **known) for u in self.pending)


def _index(fraction: float, size: int) -> int:
    return min(size, int(fraction * (size + 1)))


def _text_offset(text: Text, fraction: float, chars: int = 0) -> int:
    """A UTF-8 byte offset (pycrdt's text offsets) on a character boundary:
    at ``fraction`` of the text, plus ``chars`` characters."""
    content = str(text)
    at = min(len(content), _index(fraction, len(content)) + chars)
    return len(content[:at].encode())


def run_op(peers: list[Peer], who: int, op: tuple[Any, ...]) -> bool:
    """Apply ``op`` as peer ``who``; True if it may delete something."""
    peer = peers[who % len(peers)]
    kind = op[0]
    if kind == "insert":
        arr = peer.arrays[op[1]]
        at = _index(op[2], len(arr))

        def insert() -> None:
            arr[at:at] = op[3]

        peer.record(insert, deletes=False)
    elif kind == "delete":
        arr = peer.arrays[op[1]]
        if not len(arr):
            return False
        start = _index(op[2], len(arr) - 1)
        stop = min(len(arr), start + op[3])
        plain = not any(isinstance(v, Map | Array) for v in arr[start:stop])

        def delete() -> None:
            del arr[start:stop]

        peer.record(delete, deletes=True, deleted=stop - start if plain else None)
        return True
    elif kind == "nested":
        prelim = Map(op[2]) if op[1] else Array(list(op[2].values()))
        peer.record(lambda: peer.arrays["a"].append(prelim), deletes=False)
    elif kind == "nested_edit":
        nested = [v for v in peer.arrays["a"] if isinstance(v, Map | Array)]
        if not nested:
            return False
        target = nested[_index(op[1], len(nested) - 1)]
        if isinstance(target, Map):
            overwrite = op[2] in target

            def set_key() -> None:
                target[op[2]] = op[3]

            peer.record(set_key, deletes=overwrite, deleted=1 if overwrite else None)
            return True  # a concurrent set of the same key loses, deleted, on merge
        peer.record(lambda: target.append(op[3]), deletes=False)
    elif kind == "map_set":
        overwrite = op[1] in peer.map

        def map_set() -> None:
            peer.map[op[1]] = op[2]

        peer.record(map_set, deletes=overwrite, deleted=1 if overwrite else None)
        return True  # as for nested maps
    elif kind == "map_del":
        if op[1] not in peer.map:
            return False

        def map_del() -> None:
            del peer.map[op[1]]

        peer.record(map_del, deletes=True, deleted=1)
        return True
    elif kind == "text_insert":
        at = _text_offset(peer.text, op[1])
        peer.record(lambda: peer.text.insert(at, op[2]), deletes=False)
    elif kind == "text_delete":
        if not len(peer.text):
            return False
        start = _text_offset(peer.text, op[1])
        stop = _text_offset(peer.text, op[1], op[2])
        before = str(peer.text)

        def text_delete() -> None:
            del peer.text[start:stop]

        peer.record(text_delete)
        if str(peer.text) != before:
            peer.txns[-1].deletes = True
        return True
    elif kind == "text_format":
        if not len(peer.text):
            return False
        start = _text_offset(peer.text, op[1])
        length = _text_offset(peer.text, op[1], op[2]) - start
        attrs = {"bold": True} if op[3] else {"bold": None}
        peer.record(lambda: peer.text.format(start, length, attrs))
        return True  # re-formatting deletes the formatting it replaces
    elif kind == "sync":
        source = peers[op[1] % len(peers)]
        if source is not peer:
            diff = source.doc.get_update(peer.doc.get_state())
            peer.record(lambda: peer.doc.apply_update(diff), local=False)
    return False


def check_txn(peer: Peer, txn: Txn) -> None:
    decoded = decode_update(txn.update)
    assert implied_state(decoded) == read_state(pycrdt.get_state(txn.update))
    assert decoded.clients == set(clock_ends(decoded))
    if txn.local:  # a local transaction writes structs of its own client only
        assert decoded.clients <= {peer.client}
        assert not decoded.gc and not decoded.skips
    if txn.deletes is False:
        assert decoded.deletes == {}
    elif txn.deletes:
        assert decoded.deletes != {}
    if txn.deleted is not None:
        assert deleted_length(decoded) == txn.deleted


def check_full(peer: Peer, any_deletes: bool) -> None:
    full = peer.doc.get_update()
    decoded = decode_update(full)
    state = implied_state(decoded)
    assert state == clock_ends(decoded)  # a full update runs from 0 without gaps
    assert state == read_state(pycrdt.get_state(full)) == read_state(peer.doc.get_state())
    if not any_deletes:
        assert decoded.deletes == {} and decoded.gc == ()
    for client, ranges in decoded.deletes.items():
        assert all(clock + length <= state[client] for clock, length in ranges)

    fresh: Doc = Doc()
    fresh.apply_update(full)
    resolved = Resolved(decoded)
    nested_values = 0
    nested_live = 0
    for name in "ab":
        shown = list(fresh.get(name, type=Array))
        items = resolved.under(name)
        plain = [v for v in shown if not isinstance(v, Map | Array)]
        got = [v for i in items if i.content == 8 and i.values is not None for v in i.values]
        assert multiset(got) == multiset(plain)
        types = [i for i in items if i.content == 7]
        assert len(types) == len(shown) - len(plain)
        nested_values += sum(len(v) for v in shown if isinstance(v, Map | Array))
        for parent in types:
            for key in [None, "k1", "k2", "k3"]:
                nested_live += sum(
                    i.length for i in resolved.under((parent.client, parent.clock), key)
                )
    assert nested_live == nested_values

    fresh_map = fresh.get("m", type=Map)
    for key in ["k1", "k2", "k3"]:
        live = resolved.under("m", key)
        assert len(live) == (key in fresh_map)
        if live and live[0].content == 8:
            assert live[0].values is not None
            assert multiset(live[0].values) == multiset([fresh_map[key]])

    chars = "".join(str(i.values[0]) for i in resolved.under("t") if i.content == 4 and i.values)
    assert sorted(chars) == sorted(str(fresh.get("t", type=Text)))


@PROPERTY
@given(
    clients=st.lists(st.integers(1, 2**53 - 1), min_size=2, max_size=3, unique=True),
    skip_gc=st.booleans(),
    ops=st.lists(st.tuples(st.integers(0, 2), OPS), max_size=14),
)
def test_every_update_of_random_documents_decodes_as_pycrdt_reads_it(
    clients: list[int], skip_gc: bool, ops: list[tuple[int, tuple[Any, ...]]]
) -> None:
    peers = [Peer(c, skip_gc) for c in clients]
    any_deletes = False
    for who, op in ops:
        any_deletes |= run_op(peers, who, op)
    for peer in peers:
        for txn in peer.txns:
            check_txn(peer, txn)
        check_full(peer, any_deletes)


@PROPERTY
@given(
    client=st.integers(1, 2**53 - 1),
    skip_gc=st.booleans(),
    steps=st.lists(
        st.lists(VALUES, min_size=1, max_size=3) | st.tuples(FRACTION, st.integers(1, 3)),
        min_size=1,
        max_size=10,
    ),
)
def test_a_single_writers_array_decodes_in_order(
    client: int, skip_gc: bool, steps: list[Any]
) -> None:
    """Appends land in clock order: the live values, in that order, are the array."""
    doc: Doc = Doc(client_id=client, skip_gc=skip_gc)
    arr = doc.get("s", type=Array)
    for step in steps:
        if isinstance(step, list):
            seen: list[bytes] = []
            sub = doc.observe(lambda event, seen=seen: seen.append(event.update))
            arr.extend(step)
            doc.unobserve(sub)
            (one,) = seen
            appended = decode_update(one)
            assert [v for i in appended.items for v in (i.values or ())] == step
            assert [i.client for i in appended.items] == [client]
        elif len(arr):
            start = _index(step[0], len(arr) - 1)
            del arr[start : min(len(arr), start + step[1])]
    full = doc.get_update()
    decoded = decode_update(full)
    resolved = Resolved(decoded)
    fresh: Doc = Doc()
    fresh.apply_update(full)
    values = [v for i in resolved.under("s") for v in (i.values or ())]
    assert [norm(v) for v in values] == [norm(v) for v in fresh.get("s", type=Array).to_py()]


def test_the_decoder_loads_no_pycrdt() -> None:
    code = "import sys, headcount.core.ydecode; print(sorted(sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pycrdt" not in run.stdout


def test_the_brief_example_decodes() -> None:
    doc: Doc = Doc(client_id=2**53 - 1)
    doc.get("s", type=Array).append("xxxxx")
    data = doc.get_update()
    assert data.hex() == "0101ffffffffffffff0f0008010173017705787878787800"
    expected = Item(2**53 - 1, 0, 1, None, None, "s", None, 8, ("xxxxx",))
    assert decode_update(data) == DecodedUpdate((expected,), (), (), {})


def test_decoded_structures_are_the_frozen_dataclasses() -> None:
    decoded = decode_update(OK)
    (item,) = decoded.items
    assert type(decoded) is DecodedUpdate and type(item) is Item
    assert item == Item(7, 0, 1, None, None, "s", None, 8, ("x",))
    assert hash(item) == hash(Item(7, 0, 1, None, None, "s", None, 8, ("x",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.clock = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.items = ()  # type: ignore[misc]
    assert decoded.clients == frozenset({7})
    assert decode_update(bytearray(OK)) == decode_update(memoryview(OK)) == decoded


def test_an_append_after_another_clients_item_names_it_as_left_origin() -> None:
    first: Doc = Doc(client_id=2**52 + 1)
    first.get("s", type=Array).extend(["a", "b", "c"])
    second: Doc = Doc(client_id=2**52 + 2)
    second.apply_update(first.get_update())
    seen: list[bytes] = []
    sub = second.observe(lambda event: seen.append(event.update))
    second.get("s", type=Array).append("y" * 130)
    second.get("s", type=Array).append("z")
    second.unobserve(sub)
    one, two = (decode_update(u) for u in seen)
    assert seen[0][11] == 0x88  # after count, count, client, clock: Any with a left origin only
    # the three appends of `first` are one item of length 3, the origin is its last clock
    assert one.items == (Item(2**52 + 2, 0, 1, (2**52 + 1, 2), None, None, None, 8, ("y" * 130,)),)
    assert two.items == (Item(2**52 + 2, 1, 1, (2**52 + 2, 0), None, None, None, 8, ("z",)),)
    assert one.deletes == two.deletes == {}
    # the full update squashes the consecutive appends into one item
    full = decode_update(second.get_update())
    assert [(i.client, i.length) for i in full.items] == [(2**52 + 2, 2), (2**52 + 1, 3)]


# -- 2. fuzz ---------------------------------------------------------------------------------


@cache
def corpus() -> tuple[bytes, ...]:
    """Genuine updates covering every content pycrdt writes, GC, Skip and deletes."""
    found: list[bytes] = []
    for skip_gc in (False, True):
        doc: Doc = Doc(client_id=2**53 - 5, skip_gc=skip_gc)
        seen: list[bytes] = []
        doc.observe(lambda event, seen=seen: seen.append(event.update))
        arr = doc.get("a", type=Array)
        arr.extend(["x" * 140, 1, 2.5, -(2**40), True, None, b"\x00\x01", {"k": [1, {"z": None}]}])
        arr.append(Map({"k": "v"}))
        arr.append(Array([1, 2]))
        del arr[1:3]
        del arr[-1]
        text = doc.get("t", type=Text)
        text.insert(0, "héllo 😀 wörld")
        text.format(1, 5, {"bold": True})
        text.insert_embed(3, {"img": "x"})
        del text[2:4]
        frag = doc.get("x", type=XmlFragment)
        frag.children.append(XmlElement("p", {"a": "1"}, [XmlText("hi")]))
        doc.get("m", type=Map)["k"] = "one"
        doc.get("m", type=Map)["k"] = "two"
        found += [doc.get_update(), *seen]
    found.append(pycrdt.merge_updates(seen[0], seen[2]))  # a Skip
    other: Doc = Doc(client_id=3)
    other.apply_update(found[0])
    other.get("a", type=Array).insert(0, "first")
    found.append(other.get_update())
    assert all(decode_update(u) is not None for u in found)
    return tuple(found)


def decodes_or_refuses(data: bytes) -> DecodedUpdate | None:
    started = time.perf_counter()
    try:
        result: DecodedUpdate | None = decode_update(data)
    except UpdateFormatError:
        result = None
    # linear in the input: a few KB decode in well under a millisecond; a
    # count read before checking it against the remaining bytes would not
    assert time.perf_counter() - started < 0.5
    return result


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_are_refused(data: bytes) -> None:
    decodes_or_refuses(data)


@FUZZ
@given(
    which=st.integers(0, 1000),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
            FRACTION,
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_updates_decode_or_are_refused(
    which: int, edits: list[tuple[str, float, int]]
) -> None:
    data = bytearray(corpus()[which % len(corpus())])
    for kind, where, byte in edits:
        at = min(len(data) - 1, int(where * len(data))) if data else 0
        if kind == "flip" and data:
            data[at] ^= 1 << (byte % 8)
        elif kind == "set" and data:
            data[at] = byte
        elif kind == "insert":
            data.insert(at, byte)
        elif kind == "delete" and data:
            del data[at]
        elif kind == "truncate":
            del data[at:]
    decodes_or_refuses(bytes(data))


def test_every_single_bit_flip_of_genuine_updates_decodes_or_is_refused() -> None:
    for data in corpus()[:4]:
        for at in range(len(data)):
            for bit in range(8):
                flipped = bytearray(data)
                flipped[at] ^= 1 << bit
                decodes_or_refuses(bytes(flipped))


def _common_update(writer: int, other: int, values: list[str], before: int = 0) -> bytes:
    """One transaction appending ``values`` after another client's item
    (after ``before`` earlier appends of the writer: clocks beyond one byte)."""
    first: Doc = Doc(client_id=other)
    first.get("s", type=Array).extend(["o"] * (1 + before))
    doc: Doc = Doc(client_id=writer)
    doc.apply_update(first.get_update())
    if before:
        doc.get("s", type=Array).extend(["w"] * before)
    seen: list[bytes] = []
    sub = doc.observe(lambda event: seen.append(event.update))
    doc.get("s", type=Array).extend(values)
    doc.unobserve(sub)
    return seen[0]


def _outcome(decode: Callable[[bytes], DecodedUpdate], data: bytes) -> DecodedUpdate | None:
    try:
        return decode(data)
    except (UpdateFormatError, IndexError, UnicodeDecodeError):
        return None


@FUZZ
@given(
    writer=st.integers(1, 2**53 - 1),
    other=st.integers(1, 2**53 - 1),
    values=st.lists(st.text(max_size=200), min_size=1, max_size=17),
    edits=st.lists(
        st.tuples(st.sampled_from(["set", "insert", "delete"]), FRACTION, st.integers(0, 255)),
        max_size=2,
    ),
    before=st.sampled_from([0, 200]),
)
def test_the_fast_path_decodes_as_the_general_one(
    writer: int, other: int, values: list[str], edits: list[tuple[str, float, int]], before: int
) -> None:
    """``decode_update`` reads the common append on a fast path: on the
    genuine update and on mutations of it, it must agree with the general
    decoder (called directly here)."""
    data = bytearray(_common_update(writer, other, values, before))
    if not edits and 0 < len(values) < 16 and writer != other:
        assert ydecode._one_append(bytes(data), 1, 15) is not None  # the fast path is taken
    for kind, where, byte in edits:
        at = min(len(data), int(where * (len(data) + 1)))
        if kind == "insert":
            data.insert(at, byte)
        elif at < len(data):
            data[at : at + 1] = [byte] if kind == "set" else []
    general = _outcome(lambda d: ydecode._decode(d, 10**6, [10**6], 32), bytes(data))
    assert _outcome(decode_update, bytes(data)) == general
    if not edits:
        assert general is not None
        assert [v for i in general.items for v in (i.values or ())] == values


def test_the_common_append_is_held_to_every_rule() -> None:
    common = _common_update(2**52 + 1, 2**52 + 2, ["x" * 130])
    assert ydecode._one_append(common, 1, 1) is not None
    assert "trailing" in refused(common + b"\x00")
    assert "structs" in refused(common, max_structs=0)
    assert "max_values" in refused(common, max_values=0)
    assert "UTF-8" in refused(common.replace(b"x" * 130, b"\xff" * 130))
    for end in range(len(common)):
        refused(common[:end])


HUGE = uv(2**53 - 1)


@pytest.mark.parametrize(
    "data",
    [
        HUGE + b"\x00",  # client blocks
        b"\x01" + HUGE + uv(7) + b"\x00",  # structs
        update(block(7, 0, b"\x08\x01" + vs("s") + HUGE)),  # Any values
        update(block(7, 0, any_item(b"\x75" + HUGE))),  # array elements
        update(block(7, 0, any_item(b"\x76" + HUGE))),  # object entries
        update(block(7, 0, any_item(b"\x77" + HUGE))),  # string bytes
        update(block(7, 0, any_item(b"\x74" + HUGE))),  # binary bytes
        update(block(7, 0, b"\x03\x01" + vs("s") + HUGE)),  # binary content
        b"\x00" + HUGE,  # delete set clients
        b"\x00\x01" + uv(7) + HUGE,  # delete ranges
    ],
)
def test_a_huge_declared_count_in_a_tiny_input_fails_fast(data: bytes) -> None:
    started = time.perf_counter()
    refused(data)
    assert time.perf_counter() - started < 0.05


# -- 3. each error class ---------------------------------------------------------------------


def test_trailing_bytes_are_refused() -> None:
    assert "trailing" in refused(OK + b"\x00")
    assert "trailing" in refused(update(block(7, 0, any_item(string("x"))), deletes=b"\x00\x00"))


def test_truncated_input_is_refused_at_every_length() -> None:
    for data in (OK, *corpus()):
        for end in range(len(data)):
            refused(data[:end])


def test_a_truncated_varint_is_refused() -> None:
    assert "ends" in refused(b"\x01\x01\xff\xff")


def test_varints_beyond_53_bits_are_refused() -> None:
    refused(update(block(2**53, 0, any_item(string("x")))))
    refused(b"\x01\x01" + b"\xff" * 8 + b"\x01")  # nine bytes
    refused(update(block(7, 0, any_item(b"\x7d" + b"\xff" * 7 + b"\x7f"))))  # a signed varInt
    assert decode_update(update(block(2**53 - 1, 0, any_item(string("x"))))).clients == {2**53 - 1}


def test_padded_varints_are_refused() -> None:
    assert "padded" in refused(b"\x81\x00" + OK[1:])
    assert "padded" in refused(update(block(7, 0, any_item(b"\x7d\x81\x00"))))


def test_a_count_beyond_the_remaining_bytes_is_refused() -> None:
    refused(update(block(7, 0, b"\x08\x01" + vs("s") + b"\x03" + string("x"))))
    refused(b"\x02" + OK[1:])
    refused(b"\x01\x05" + OK[2:])


def test_the_limits_are_enforced() -> None:
    two = update(block(7, 0, any_item(string("x")), any_item(string("y"))))
    assert decode_update(two, max_structs=2)
    assert "structs" in refused(two, max_structs=1)
    three = update(block(7, 0, any_item(b"\x75\x02" + string("a") + string("b"))))
    assert decode_update(three, max_values=3)
    assert "max_values" in refused(three, max_values=2)
    with_deletes = update(deletes=delete_set((7, [(0, 1), (2, 1)])))
    assert decode_update(with_deletes, max_structs=2)
    refused(with_deletes, max_structs=1)


def test_values_nested_deeper_than_max_depth_are_refused() -> None:
    def nested(depth: int) -> bytes:
        return b"\x75\x01" * depth + b"\x7e"

    assert decode_update(update(block(7, 0, any_item(nested(32)))))
    assert "deeper" in refused(update(block(7, 0, any_item(nested(33)))))
    assert "deeper" in refused(update(block(7, 0, any_item(nested(3)))), max_depth=2)
    deep_object = b"\x76\x01" + vs("k") + b"\x76\x01" + vs("k") + b"\x7e"
    refused(update(block(7, 0, any_item(deep_object))), max_depth=1)
    # a huge max_depth still ends in UpdateFormatError, never RecursionError
    refused(update(block(7, 0, any_item(nested(100_000)))), max_depth=10**9)


def test_malformed_utf8_is_refused() -> None:
    for bad in (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\x80"):  # stray, cut, surrogate, overlong
        assert "UTF-8" in refused(update(block(7, 0, any_item(string(bad)))))
        assert "UTF-8" in refused(
            update(block(7, 0, b"\x08\x01" + vs(bad) + b"\x01" + string("x")))
        )
    assert "UTF-8" in refused(update(block(7, 0, b"\x04\x01" + vs("t") + vs(b"\xff"))))


def test_a_clients_structs_must_be_one_contiguous_block() -> None:
    """v1 writes one clock per client block, and each struct advances it by
    its length: a gap (or an overlap) can only be written as a second block
    of the same client, which Yjs and yrs merge differently."""
    gap = update(block(7, 0, any_item(string("x"))), block(7, 5, any_item(string("y"))))
    contiguous = update(block(7, 0, any_item(string("x"))), block(7, 1, any_item(string("y"))))
    assert "two blocks" in refused(gap)
    assert "two blocks" in refused(contiguous)
    one = decode_update(
        update(block(7, 3, any_item(string("x")), any_item(string("yz"), string("w"))))
    )
    assert [(i.clock, i.length) for i in one.items] == [(3, 1), (4, 2)]


def test_clocks_from_2_to_the_32_are_refused() -> None:
    assert decode_update(update(block(7, 2**32 - 2, any_item(string("x")))))
    refused(update(block(7, 2**32 - 1, any_item(string("x")))))
    refused(update(block(7, 2**32, any_item(string("x")))))
    refused(update(block(7, 0, b"\x01\x01" + vs("s") + uv(2**32))))  # a deleted run
    refused(update(block(7, 0, b"\x88" + uv(9) + uv(2**32) + b"\x01" + string("x"))))  # an origin
    refused(update(deletes=delete_set((7, [(2**32 - 2, 5)]))))


def test_a_zero_length_delete_range_is_refused() -> None:
    assert "length 0" in refused(update(deletes=delete_set((7, [(3, 0)]))))
    refused(update(deletes=delete_set((7, []))))


def test_a_duplicate_delete_set_client_is_refused() -> None:
    assert "two delete set entries" in refused(
        update(deletes=delete_set((7, [(0, 1)]), (7, [(2, 1)])))
    )


def test_struct_framing_errors_are_refused() -> None:
    refused(update(block(7, 0, b"\x80" + uv(7) + b"\x00\x01")))  # GC with an origin flag
    refused(update(block(7, 0, b"\x00\x00")))  # empty GC
    refused(update(block(7, 0, b"\x0a\x00")))  # empty Skip
    refused(b"\x01\x00" + uv(7) + b"\x00\x00")  # a block without structs
    assert "parent flag" in refused(
        update(block(7, 0, b"\x08\x02" + vs("s") + b"\x01" + string("x")))
    )
    assert "tag" in refused(update(block(7, 0, any_item(b"\x70"))))
    move = b"\x0b\x01" + vs("s") + b"\x00"  # yrs' Move content: Yjs has none
    assert "content ref" in refused(update(block(7, 0, move)))
    assert "content ref" in refused(
        update(block(7, 0, b"\x18\x01" + vs("s") + b"\x01" + string("x")))
    )
    assert "duplicate key" in refused(
        update(block(7, 0, any_item(b"\x76\x02" + vs("k") + b"\x7e" + vs("k") + b"\x7e")))
    )


def test_embedded_json_is_checked() -> None:
    def embed(text: str) -> bytes:
        return update(block(7, 0, b"\x05\x01" + vs("t") + vs(text)))

    assert decode_update(embed('{"a": [1, 2.5, null]}')).items[0].content == 5
    for bad in ("{", "NaN", "[Infinity]", "1e999", '{"a": 1, "a": 2}', "[" * 40 + "]" * 40):
        refused(embed(bad))
    fmt = update(block(7, 0, b"\x06\x01" + vs("t") + vs("bold") + vs("true")))
    assert decode_update(fmt).items[0].length == 1


def test_every_content_kind_decodes() -> None:
    struct = {
        "deleted": (b"\x01\x01" + vs("s") + uv(3), 3, None),
        "binary": (b"\x03\x01" + vs("s") + vs(b"\x00\xff"), 1, None),
        "string": (b"\x04\x01" + vs("t") + vs("a😀"), 3, ("a😀",)),
        "type": (b"\x07\x01" + vs("s") + b"\x03" + vs("p"), 1, None),
        "doc": (b"\x09\x01" + vs("s") + vs("guid") + b"\x76\x01" + vs("gc") + b"\x78", 1, None),
        "any": (
            any_item(
                b"\x7f",
                b"\x7e",
                b"\x7d\x41",
                b"\x7c\x3f\x80\x00\x00",
                b"\x7a" + (5).to_bytes(8, "big"),
                b"\x74\x01\x09",
            ),
            6,
            (None, None, -1, 1.0, 5, b"\x09"),
        ),
    }
    for raw, length, values in struct.values():
        (item,) = decode_update(update(block(7, 0, raw))).items
        assert (item.length, item.values) == (length, values)


def test_zero_length_items_are_read_and_left_out() -> None:
    """yrs' encoder writes an empty String where a text was split inside a
    multi-byte character, and drops it when decoding: so does the decoder."""
    doc: Doc = Doc(client_id=11)
    text = doc.get("t", type=Text)
    text.insert(0, "héllo")
    text.insert(2, "x")  # pycrdt's text offsets are UTF-8 bytes: 2 is inside "é"
    data = doc.get_update()
    assert bytes.fromhex("840b0400") in data  # String "" with origin (11, 4)
    decoded = decode_update(data)
    assert all(i.length for i in decoded.items)
    assert implied_state(decoded) == read_state(pycrdt.get_state(data))
    empty_any = update(block(7, 0, b"\x08\x01" + vs("s") + b"\x00", any_item(string("x"))))
    assert [i.clock for i in decode_update(empty_any).items] == [0]


# -- GC, Skip and delete sets as pycrdt writes them ---------------------------------------------


def _gc_doc(skip_gc: bool) -> bytes:
    doc: Doc = Doc(client_id=5, skip_gc=skip_gc)
    arr = doc.get("a", type=Array)
    arr.append(Array([1, 2, 3]))
    arr.append("z")
    del arr[0]
    return doc.get_update()


def test_a_deleted_nested_array_becomes_gc_unless_gc_is_skipped() -> None:
    collected = decode_update(_gc_doc(skip_gc=False))
    assert collected.gc == ((5, 1, 3),)  # the nested array's three values
    assert [(i.clock, i.content) for i in collected.items] == [(0, 1), (4, 8)]  # Deleted, "z"
    assert collected.deletes == {5: ((0, 4),)}
    kept = decode_update(_gc_doc(skip_gc=True))
    assert kept.gc == ()
    assert [(i.clock, i.content, i.parent) for i in kept.items] == [
        (0, 7, "a"),
        (1, 8, (5, 0)),
        (4, 8, None),
    ]
    assert kept.items[1].values == (1.0, 2.0, 3.0)
    assert kept.deletes == {5: ((0, 4),)}


def test_merging_non_contiguous_updates_writes_a_skip() -> None:
    doc: Doc = Doc(client_id=9)
    seen: list[bytes] = []
    doc.observe(lambda event: seen.append(event.update))
    for value in "xyz":
        doc.get("a", type=Array).append(value)
    merged = decode_update(pycrdt.merge_updates(seen[0], seen[2]))
    assert merged.skips == ((9, 1, 1),)
    assert [(i.clock, i.values) for i in merged.items] == [(0, ("x",)), (2, ("z",))]
    assert merged.clients == {9}


def test_a_delete_set_lists_each_clients_ranges() -> None:
    doc: Doc = Doc(client_id=5)
    arr = doc.get("a", type=Array)
    arr.extend([1, 2, 3, 4, 5])
    seen: list[bytes] = []
    doc.observe(lambda event: seen.append(event.update))
    del arr[3]
    del arr[1]
    assert [decode_update(u).deletes for u in seen] == [{5: ((3, 1),)}, {5: ((1, 1),)}]
    assert [decode_update(u).items for u in seen] == [(), ()]
    assert decode_update(doc.get_update()).deletes == {5: ((1, 1), (3, 1))}
    two = decode_update(update(deletes=delete_set((5, [(1, 1), (3, 2)]), (2**53 - 1, [(0, 7)]))))
    assert two.deletes == {5: ((1, 1), (3, 2)), 2**53 - 1: ((0, 7),)}
    assert two.clients == frozenset()


# -- 4. what yrs reads differently, pinned on pycrdt ---------------------------------------------


def _apply(data: bytes) -> list[Any] | None:
    doc: Doc = Doc()
    try:
        doc.apply_update(data)
    except ValueError:
        return None
    return doc.get("s", type=Array).to_py()


def test_yrs_reads_json_content_as_one_string_more_than_declared() -> None:
    def json_item(count: int, *texts: str) -> bytes:
        return update(
            block(7, 0, b"\x02\x01" + vs("s") + uv(count) + b"".join(vs(t) for t in texts))
        )

    assert _apply(json_item(1, '"a"')) is None  # as Yjs writes it: yrs runs out of bytes
    assert _apply(json_item(1, '"a"', '"b"')) == ['"a"', '"b"']
    assert "JSON" in refused(json_item(1, '"a"'))
    refused(json_item(1, '"a"', '"b"'))


def test_yrs_reads_no_name_after_an_xml_hook() -> None:
    hook = b"\x07\x01" + vs("s") + b"\x05"
    assert _apply(update(block(7, 0, hook, any_item(string("x"))))) is not None
    assert _apply(update(block(7, 0, hook + vs("name"), any_item(string("x"))))) is None
    assert "type ref 5" in refused(update(block(7, 0, hook + vs("name"))))
    assert "type ref 5" in refused(update(block(7, 0, hook)))


def test_yrs_wraps_clocks_at_2_to_the_32() -> None:
    wrapped = update(block(7, 2**32, any_item(string("x"))))
    assert read_state(pycrdt.get_state(wrapped)) == {7: 1}  # clock 2**32 read as 0
    refused(wrapped)


def test_yrs_keeps_the_last_delete_set_entry_of_a_client() -> None:
    three = block(7, 0, any_item(string("x"), string("y"), string("z")))
    twice = update(three, deletes=delete_set((7, [(0, 1)]), (7, [(2, 1)])))
    assert _apply(twice) == ["x", "y"]  # the first entry, deleting "x", is ignored
    refused(twice)


def test_the_fast_path_reads_clocks_of_several_bytes() -> None:
    """A gate's real log: its clocks pass one varint byte after 127 items."""
    for before in (127, 128, 20_000):
        data = _common_update(2**52 + 5, 2**52 + 7, ["x" * 130], before)
        fast = ydecode._one_append(data, 1, 15)
        assert fast is not None and fast.items[0].clock == before
        assert fast == ydecode._decode(data, 10**6, [10**6], 32)
