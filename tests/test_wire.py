"""The wire format: round trips, the type table, golden frames, and the decoder's refusals.

Every refusal must be a :class:`RemoteProtocolError` with a stable ``code``:
a driver keys its metrics and its peer bans on it, and the session sends it
to the peer in its ``Goodbye``.
"""

from __future__ import annotations

import copy
import struct
from typing import get_args

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headcount.core.chain import ZERO_HASH, Head, Segment, entry_hash, head_message
from headcount.core.errors import LocalProtocolError, RemoteProtocolError
from headcount.core.model import LogEntry
from headcount.protocol.session import Close, Send, Session, State
from headcount.protocol.wire import (
    DEFAULT_MAX_FRAME,
    MAX_ACK_COUNT,
    MAX_REVOCATION_BODY,
    MAX_REVOCATION_CERT,
    MAX_REVOCATIONS_PER_MESSAGE,
    MESSAGE_TYPES,
    TYPE_NUMBERS,
    WIRE_VERSION,
    Ack,
    Directory,
    FrameDecoder,
    Goodbye,
    Hello,
    Message,
    Ping,
    Pong,
    RevocationRecord,
    Revocations,
    Segments,
    SnapshotPart,
    Summary,
    encode,
    peek_message_type,
)
from headcount.sim.fastwire import frame_type, type_label

from .support.protocol import make_devices

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

H32 = bytes(range(32))
S64 = bytes(range(64))
Z32 = ZERO_HASH


def frame(items) -> bytes:
    """A frame holding the msgpack encoding of ``items`` (any shape)."""
    body = msgpack.packb(items)
    return struct.pack(">I", len(body)) + body


def decode_one(data: bytes, max_frame: int = DEFAULT_MAX_FRAME):
    decoder = FrameDecoder(max_frame)
    decoder.receive_data(data)
    return decoder.next_message()


def refusal(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_one(data, max_frame)
    return info.value


# -- strategies ----------------------------------------------------------------

_printable = st.characters(categories=("L", "M", "N", "P", "S")) | st.just(" ")
names = st.text(_printable, min_size=1, max_size=128)
u64 = st.integers(0, 2**64 - 1)
seqs = st.integers(1, 2**64 - 1)
vvs = st.dictionaries(names, seqs, max_size=8)
hashes = st.binary(min_size=32, max_size=32)
sigs = st.binary(min_size=64, max_size=64)


@st.composite
def segments(draw, event: str):
    device = draw(names)
    n = draw(st.integers(1, 5))
    head_seq = draw(st.integers(n, 2**64 - 1))
    prev = draw(hashes)
    entries = []
    for i in range(n):
        entry = LogEntry(event, device, head_seq - n + 1 + i, draw(u64), draw(st.binary()), prev)
        entries.append(entry)
        prev = entry_hash(entry)
    head = Head(event, device, head_seq, draw(hashes), draw(sigs))
    return Segment(tuple(entries), head)


@st.composite
def segments_messages(draw):
    event = draw(names)
    return Segments(event, tuple(draw(st.lists(segments(event), max_size=4))))


@st.composite
def snapshot_parts(draw):
    event = draw(names)
    data = draw(st.binary(max_size=64))
    total = draw(st.integers(len(data), 2**64 - 1))
    offset = draw(st.integers(0, total - len(data)))
    heads = st.builds(Head, st.just(event), names, u64, hashes, sigs)
    return SnapshotPart(event, offset, total, data, tuple(draw(st.lists(heads, max_size=3))))


revocation_records = st.builds(
    RevocationRecord,
    st.binary(min_size=1, max_size=MAX_REVOCATION_BODY),
    sigs,
    st.binary(max_size=300) | st.binary(min_size=MAX_REVOCATION_CERT, max_size=MAX_REVOCATION_CERT),
)

# One strategy per message class: a class missing here fails
# test_the_strategies_cover_the_type_table.
STRATEGIES: dict[type, st.SearchStrategy] = {
    Hello: st.builds(Hello, names, st.lists(names, max_size=6).map(tuple)),
    Summary: st.builds(Summary, names, vvs, st.booleans()),
    Segments: segments_messages(),
    Ack: st.builds(Ack, names, vvs, st.integers(1, MAX_ACK_COUNT)),
    Ping: st.builds(Ping, u64),
    Pong: st.builds(Pong, u64),
    Goodbye: st.builds(
        Goodbye, st.text(_printable, min_size=1, max_size=64), st.text(max_size=1024)
    ),
    SnapshotPart: snapshot_parts(),
    Directory: st.builds(Directory, st.lists(st.binary(max_size=200), max_size=4).map(tuple)),
    Revocations: st.builds(Revocations, st.lists(revocation_records, max_size=4).map(tuple)),
}
messages = st.one_of(*STRATEGIES.values())
EVERY_TYPE = pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=lambda c: c.__name__)


# -- the type table -----------------------------------------------------------------


def test_the_strategies_cover_the_type_table():
    assert set(STRATEGIES) == set(MESSAGE_TYPES.values())


def test_the_type_table_lists_every_message_class_once():
    assert set(MESSAGE_TYPES.values()) == set(get_args(Message))
    assert len(set(MESSAGE_TYPES.values())) == len(MESSAGE_TYPES)
    assert dict(TYPE_NUMBERS) == {cls: n for n, cls in MESSAGE_TYPES.items()}
    # One byte each on the wire (a positive fixint): peek_message_type reads that byte.
    assert all(1 <= n < 128 for n in MESSAGE_TYPES)


# -- round trips -----------------------------------------------------------------


@EVERY_TYPE
@PROPERTY
@given(data=st.data())
def test_every_message_type_round_trips(cls, data):
    message = data.draw(STRATEGIES[cls], label=cls.__name__)
    assert type(message) is cls
    encoded = encode(message)
    assert decode_one(encoded) == message
    assert encode(decode_one(encoded)) == encoded  # re-encoding is byte-identical


@EVERY_TYPE
@PROPERTY
@given(data=st.data())
def test_the_simulator_labels_frames_by_the_type_table(cls, data):
    encoded = encode(data.draw(STRATEGIES[cls], label=cls.__name__))
    assert peek_message_type(encoded) is cls
    assert msgpack.unpackb(encoded[4:])[1] == TYPE_NUMBERS[cls]
    assert frame_type(encoded) == type_label(cls)


def test_the_simulator_labels_are_distinct_and_known():
    labels = [type_label(cls) for cls in MESSAGE_TYPES.values()]
    assert len(set(labels)) == len(labels) and "unknown" not in labels
    assert type_label(SnapshotPart) == "snapshot_part"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        encode(Ping(1))[:6],  # cut before the type
        frame([1, 99, 7]),  # an unknown type
        frame([1, 0, 7]),
        frame([2, 5, 7]),  # another version
        frame({"v": 1}),  # not an array
        frame([1, 5, *range(20)]),  # no fixarray: encode never makes one
    ],
    ids=repr,
)
def test_the_simulator_labels_other_frames_unknown(data):
    assert peek_message_type(data) is None
    assert frame_type(data) == "unknown"


@PROPERTY
@given(batch=st.lists(messages, min_size=1, max_size=5), cuts=st.lists(st.integers(0, 10**6)))
def test_a_stream_decodes_the_same_however_it_is_split(batch, cuts):
    stream = b"".join(encode(m) for m in batch)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    decoder = FrameDecoder()
    out = []
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):
        decoder.receive_data(stream[start:end])
        while (m := decoder.next_message()) is not None:
            out.append(m)
    assert out == batch
    assert decoder.buffered == 0


def test_each_message_type_has_a_distinct_type_number():
    kinds = [
        Hello("d", ()),
        Summary("e", {}, False),
        Segments("e", ()),
        Ack("e", {}),
        Ping(0),
        Pong(0),
        Goodbye("bye", ""),
        SnapshotPart("e", 0, 0, b"", ()),
        Directory(()),
        Revocations(()),
    ]
    numbers = [msgpack.unpackb(encode(m)[4:])[1] for m in kinds]
    assert numbers == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # pinned: deployed peers rely on them
    assert {msgpack.unpackb(encode(m)[4:])[0] for m in kinds} == {WIRE_VERSION}


# -- golden bytes: changing any of these breaks every deployed peer and log ------------

GOLDEN_E1_HASH = "bae5fa5bb3bef89b9f199dca74926157d5fcf742c4f9b4ec5bcf8e20a7ee61d9"
GOLDEN_E2_HASH = "dac25590921a51b4212249890f7643845253979b02a87a9485415a72c63be78f"

GOLDEN_SEGMENTS_FRAME = bytes.fromhex(
    "000000a2"  # body length 162, big endian
    "94"  # [version, type, event, segments]
    "01"  # WIRE_VERSION 1
    "03"  # type 3 = Segments
    "a2"
    + b"ev".hex()  # event
    + "91"  # one segment
    "96"  # [device, head_seq, head_hash, sig, first_prev, entries]
    "a5"
    + b"dev-a".hex()  # device
    + "02"  # head_seq 2
    "c420"
    + GOLDEN_E2_HASH  # head hash: bin8 of 32
    + "c440"
    + S64.hex()  # signature: bin8 of 64
    + "c420"
    + Z32.hex()  # the first entry's prev
    + "92"  # two entries
    "9207c402"
    + b"u1".hex()  # [hlc 7, update b"u1"]
    + "9208c402"
    + b"u2".hex()  # [hlc 8, update b"u2"]
)


def _golden_segment() -> Segment:
    e1 = LogEntry("ev", "dev-a", 1, 7, b"u1", Z32)
    e2 = LogEntry("ev", "dev-a", 2, 8, b"u2", entry_hash(e1))
    return Segment((e1, e2), Head("ev", "dev-a", 2, entry_hash(e2), S64))


def test_golden_entry_hashes_and_signed_head_bytes():
    seg = _golden_segment()
    assert entry_hash(seg.entries[0]).hex() == GOLDEN_E1_HASH
    assert entry_hash(seg.entries[1]).hex() == GOLDEN_E2_HASH
    assert head_message("ev", "dev-a", 2, bytes.fromhex(GOLDEN_E2_HASH)) == (
        b"headcount/head/v1\x00"
        + bytes.fromhex("94a26576a56465762d6102c420")
        + bytes.fromhex(GOLDEN_E2_HASH)
    )


def test_golden_segments_frame():
    seg = _golden_segment()
    assert encode(Segments("ev", (seg,))) == GOLDEN_SEGMENTS_FRAME
    assert decode_one(GOLDEN_SEGMENTS_FRAME) == Segments("ev", (seg,))


@pytest.mark.parametrize(
    ("message", "golden"),
    [
        (Hello("dev-a", ("ev", "ev2")), "00000011940101a56465762d6192a26576a3657632"),
        (Summary("ev", {"dev-a": 2}, True), "0000000f950102a2657681a56465762d6102c3"),
        (Ack("ev", {"dev-a": 2}), "0000000e940104a2657681a56465762d6102"),
        (Ping(7), "00000004930105" + "07"),
        (Pong(2**64 - 1), "0000000c930106" + "cfffffffffffffffff"),
        (Goodbye("bye", "ok"), "0000000a940107a3627965a26f6b"),
    ],
)
def test_golden_small_frames(message, golden):
    assert encode(message).hex() == golden
    assert decode_one(bytes.fromhex(golden)) == message


@pytest.mark.parametrize(
    ("message", "golden"),
    [
        (Ack("ev", {"dev-a": 2}, 3), "0000000f950104a2657681a56465762d610203"),  # count last
        (Directory((b"c1", b"")), "0000000a93010992c4026331c400"),
        (
            SnapshotPart("ev", 2, 5, b"abc", (Head("ev", "dev-a", 2, H32, S64),)),
            "0000007a"
            "970108a26576"  # [version, 8, event,
            "0205c403616263"  # offset 2, total 5, data b"abc",
            "9194a56465762d6102"  # [[device, seq 2,
            "c420" + H32.hex() + "c440" + S64.hex(),  # hash, sig]]]
        ),
        (
            Revocations((RevocationRecord(b"rec", S64, b""), RevocationRecord(b"r2", S64, b"c"))),
            "00000098"
            "93010a92"  # [version, 10, [two records:
            "93c403726563c440" + S64.hex() + "c400"  # [body b"rec", sig, cert b""],
            "93c4027232c440" + S64.hex() + "c40163",  # [body b"r2", sig, cert b"c"]]]
        ),
    ],
    ids=["ack-count", "directory", "snapshot-part", "revocations"],
)
def test_golden_frames_of_later_types(message, golden):
    assert encode(message).hex() == golden
    assert decode_one(bytes.fromhex(golden)) == message


# -- framing limits ----------------------------------------------------------------


def test_oversize_length_prefix_is_refused_before_its_body_arrives():
    decoder = FrameDecoder(max_frame=1000)
    decoder.receive_data(struct.pack(">I", 1001))  # only the prefix: no body yet
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message()
    assert info.value.code == "too_big"
    assert refusal(b"\xff\xff\xff\xff").code == "too_big"
    assert refusal(struct.pack(">I", DEFAULT_MAX_FRAME + 1)).code == "too_big"


def test_session_refuses_an_oversize_prefix_at_once():
    (log,) = make_devices(1)
    session = Session(log, 0.0)
    session.start(0.0)
    effects = session.receive_data(struct.pack(">I", DEFAULT_MAX_FRAME + 1), 0.0)
    assert effects[-1] == Close("too_big")
    assert session.state is State.CLOSED


def test_a_frame_of_exactly_the_limit_is_accepted():
    body = next(b for k in range(120) if len(b := msgpack.packb([1, 7, "bye", "x" * k])) == 100)
    data = struct.pack(">I", 100) + body
    assert isinstance(decode_one(data, max_frame=100), Goodbye)
    assert refusal(struct.pack(">I", 101) + body + b"!", max_frame=100).code == "too_big"


def test_encode_refuses_a_frame_over_the_limit():
    with pytest.raises(LocalProtocolError):
        encode(Goodbye("bye", "x" * 200), max_frame=100)


def test_truncated_frames_wait_for_more_bytes():
    data = GOLDEN_SEGMENTS_FRAME + encode(Ping(1))
    decoder = FrameDecoder()
    for i in range(len(GOLDEN_SEGMENTS_FRAME) - 1):
        decoder.receive_data(data[i : i + 1])
        assert decoder.next_message() is None
    decoder.receive_data(data[len(GOLDEN_SEGMENTS_FRAME) - 1 :])
    assert isinstance(decoder.next_message(), Segments)
    assert decoder.next_message() == Ping(1)
    assert decoder.next_message() is None


def test_a_session_fed_one_byte_at_a_time_waits_then_answers():
    (log,) = make_devices(1)
    session = Session(log, 0.0)
    session.start(0.0)
    data = encode(Hello("peer-1", ()))
    for byte in data[:-1]:
        assert session.receive_data(bytes([byte]), 0.0) == []
    effects = session.receive_data(data[-1:], 0.0)
    assert effects and session.state is State.OPEN


# -- malformed frames -------------------------------------------------------------

GARBAGE = {
    "never-used byte": b"\xc1",
    "empty body": b"",
    "array cut short": b"\x94\x01\x05",
    "trailing bytes": msgpack.packb([1, 5, 7]) + b"\x00",
    "invalid utf-8": b"\x93\x01\x07\xa2\xff\xfe",
    "ext type": msgpack.packb([1, 5, msgpack.ExtType(1, b"x")]),
    "timestamp ext": msgpack.packb([1, 5, msgpack.Timestamp(1, 0)]),
    "array of 4G": b"\x93\x01\x05\xdd\xff\xff\xff\xff",
    "bin of 4G": b"\x93\x01\x05\xc6\xff\xff\xff\xff",
    "nesting bomb": b"\x91" * 100_000 + b"\x90",
    "int map key": msgpack.packb([1, 4, "ev", {1: 2}]),
    "not an array": msgpack.packb({"version": 1}),
    "an int": msgpack.packb(1),
    "nil": msgpack.packb(None),
    "empty array": msgpack.packb([]),
    "version only": msgpack.packb([1]),
}


@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_malformed(body):
    err = refusal(struct.pack(">I", len(body)) + body)
    assert err.code == "malformed"


@pytest.mark.parametrize("version", [0, 2, 255, -1, "1", None, [1], True, 1.0, b"\x01"])
def test_wrong_version(version):
    assert refusal(frame([version, 5, 7])).code == "version"


@pytest.mark.parametrize(
    "items",
    [
        [1, 0, 7],
        [1, 200, 7],
        [1, 127, 7],
        [1, -1, 7],
        [1, "ping", 7],
        [1, None, 7],
        [1, [5], 7],
        [1, {"t": 5}, 7],
        [1, 5.0, 7],  # a float equal to Ping's number
        [1, True, "dev", ["ev"]],  # a boolean equal to Hello's number
        [1, b"\x05", 7],
    ],
    ids=repr,
)
def test_unknown_message_type(items):
    assert refusal(frame(items)).code == "malformed"


# Valid messages, one per type; every bad case below changes exactly one field.
SEG = ["dev", 2, H32, S64, Z32, [[7, b"u1"], [8, b"u2"]]]
TEMPLATES = {
    "hello": [1, 1, "dev", ["ev", "ev2"]],
    "summary": [1, 2, "ev", {"dev": 3}, True],
    "segments": [1, 3, "ev", [SEG]],
    "ack": [1, 4, "ev", {"dev": 3}],
    "ping": [1, 5, 7],
    "pong": [1, 6, 7],
    "goodbye": [1, 7, "bye", "see you"],
    "snapshot": [1, 8, "ev", 0, 4, b"data", [["dev", 2, H32, S64]]],
    "directory": [1, 9, [b"cert", b""]],
    "revocations": [1, 10, [[b"body", S64, b"cert"], [b"body2", S64, b""]]],
}


@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_are_valid(name):
    decode_one(frame(TEMPLATES[name]))


BAD_INTS = [True, False, -1, -(2**63), 1.5, 3.0, "3", None, b"\x03", [3]]
BAD_STRS = ["", "x" * 129, "a\nb", "a\x00b", "\x7f", "a\u200bb", "\u2028", b"dev", 5, None, ["d"]]
BAD_HASHES = [b"", H32[:31], H32 + b"\x00", "x" * 32, None, 5]
BAD_SIGS = [b"", S64[:63], S64 + b"\x00", "x" * 64, None]

# (template, path to the field, bad values)
FIELDS = [
    ("hello", (2,), BAD_STRS),
    ("hello", (3,), ["ev", None, {"ev": 1}, 5]),
    ("hello", (3, 0), BAD_STRS),
    ("summary", (2,), BAD_STRS),
    ("summary", (3,), [[["dev", 3]], None, "dev", 3]),
    ("summary", (3, "dev"), [*BAD_INTS, 0]),
    ("summary", (4,), [1, 0, None, "true"]),
    ("segments", (2,), BAD_STRS),
    ("segments", (3,), [None, SEG, {"a": 1}]),
    ("segments", (3, 0), [None, "seg", {"a": 1}, SEG[:5], [*SEG, 1]]),
    ("segments", (3, 0, 0), BAD_STRS),
    ("segments", (3, 0, 1), [*BAD_INTS, 0, 1]),  # head_seq 1 < 2 entries
    ("segments", (3, 0, 2), BAD_HASHES),
    ("segments", (3, 0, 3), BAD_SIGS),
    ("segments", (3, 0, 4), BAD_HASHES),
    ("segments", (3, 0, 5), [[], None, [7, b"u1"], "entries"]),
    ("segments", (3, 0, 5, 0), [None, [7], [7, b"u1", 1], (b"u1",), "e"]),
    ("segments", (3, 0, 5, 0, 0), BAD_INTS),
    ("segments", (3, 0, 5, 0, 1), ["u1", None, 5, [b"u1"]]),
    ("ack", (2,), BAD_STRS),
    ("ack", (3,), [None, [], "dev"]),
    ("ack", (3, "dev"), [*BAD_INTS, 0]),
    ("ping", (2,), BAD_INTS),
    ("pong", (2,), BAD_INTS),
    ("goodbye", (2,), [*BAD_STRS, "c" * 65]),
    ("goodbye", (3,), ["m" * 1025, None, b"msg", 5]),
    ("snapshot", (2,), BAD_STRS),
    ("snapshot", (3,), [*BAD_INTS, 1]),  # offset 1 + 4 bytes > total 4
    ("snapshot", (4,), [*BAD_INTS, 3]),
    ("snapshot", (5,), ["data", None, 5, [b"data"]]),
    ("snapshot", (6,), [None, "heads", {"a": 1}, [None]]),
    ("snapshot", (6, 0), ["head", ["dev", 2, H32], ["dev", 2, H32, S64, 1]]),
    ("snapshot", (6, 0, 0), BAD_STRS),
    ("snapshot", (6, 0, 1), BAD_INTS),
    ("snapshot", (6, 0, 2), BAD_HASHES),
    ("snapshot", (6, 0, 3), BAD_SIGS),
    ("directory", (2,), [None, b"cert", "certs", {"a": 1}]),
    ("directory", (2, 0), [None, "cert", 5, [b"cert"]]),
    ("revocations", (2,), [None, b"rec", "recs", {"a": 1}, [None]]),
    ("revocations", (2, 0), [None, "rec", [b"body", S64], [b"body", S64, b"", 1]]),
    ("revocations", (2, 0, 0), [b"", b"b" * (MAX_REVOCATION_BODY + 1), "body", None, 5]),
    ("revocations", (2, 0, 1), BAD_SIGS),
    ("revocations", (2, 0, 2), [b"c" * (MAX_REVOCATION_CERT + 1), None, "cert", 5]),
]
FIELD_CASES = [
    pytest.param(name, path, bad, id=f"{name}{list(path)}={bad!r:.40}")
    for name, path, bads in FIELDS
    for bad in bads
]


def _replace(items, path, value):
    out = copy.deepcopy(items)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(("name", "path", "bad"), FIELD_CASES)
def test_a_wrong_field_is_malformed(name, path, bad):
    assert refusal(frame(_replace(TEMPLATES[name], path, bad))).code == "malformed"


@pytest.mark.parametrize("name", TEMPLATES)
def test_wrong_field_counts_are_malformed(name):
    items = TEMPLATES[name]
    assert refusal(frame(items[:-1])).code == "malformed"
    assert refusal(frame([*items, 0])).code == "malformed"


@pytest.mark.parametrize("count", [*BAD_INTS, 0, MAX_ACK_COUNT + 1], ids=repr)
def test_a_bad_ack_count_is_malformed(count):
    assert refusal(frame([*TEMPLATES["ack"], count])).code == "malformed"


def test_ack_counts_at_the_bounds():
    assert decode_one(frame([*TEMPLATES["ack"], MAX_ACK_COUNT])).count == MAX_ACK_COUNT
    assert decode_one(frame([*TEMPLATES["ack"], 1])) == decode_one(frame(TEMPLATES["ack"]))


def test_revocation_records_per_message_are_bounded():
    record = [b"body", S64, b""]
    full = decode_one(frame([1, 10, [record] * MAX_REVOCATIONS_PER_MESSAGE]))
    assert len(full.records) == MAX_REVOCATIONS_PER_MESSAGE
    over = [1, 10, [record] * (MAX_REVOCATIONS_PER_MESSAGE + 1)]
    assert refusal(frame(over)).code == "malformed"


def test_summary_vv_with_a_bytes_key_is_malformed():
    assert refusal(frame([1, 2, "ev", {b"dev": 3}, True])).code == "malformed"


def test_segment_entry_counts():
    ok = decode_one(frame(TEMPLATES["segments"]))
    assert [e.seq for e in ok.segments[0].entries] == [1, 2]
    three = _replace(TEMPLATES["segments"], (3, 0, 5), [[7, b"u1"], [8, b"u2"], [9, b"u3"]])
    assert refusal(frame(three)).code == "malformed"  # 3 entries, head_seq 2
    empty = _replace(TEMPLATES["segments"], (3, 0, 5), [])
    assert refusal(frame(empty)).code == "malformed"
    zero = _replace(TEMPLATES["segments"], (3, 0, 1), 0)
    assert refusal(frame(zero)).code == "malformed"
    # A segment ending high up the chain keeps its entries' numbers.
    high = decode_one(frame(_replace(TEMPLATES["segments"], (3, 0, 1), 2**64 - 1)))
    assert [e.seq for e in high.segments[0].entries] == [2**64 - 2, 2**64 - 1]


def test_extreme_but_legal_values_are_accepted():
    assert decode_one(frame([1, 5, 0])) == Ping(0)
    assert decode_one(frame([1, 5, 2**64 - 1])) == Ping(2**64 - 1)
    assert decode_one(frame([1, 1, "d" * 128, []])) == Hello("d" * 128, ())
    assert decode_one(frame([1, 7, "c" * 64, "m" * 1024])) == Goodbye("c" * 64, "m" * 1024)
    assert decode_one(frame([1, 3, "ev", []])) == Segments("ev", ())


# -- a session turns every refusal into a Goodbye and a Close with the same code --------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame([2, 5, 7]), "version"),
        (frame([1, 99, 7]), "malformed"),
        (frame([1, 5, -1]), "malformed"),
        (struct.pack(">I", 1) + b"\xc1", "malformed"),
        (struct.pack(">I", DEFAULT_MAX_FRAME + 1), "too_big"),
    ],
    ids=["version", "unknown type", "negative int", "garbage", "oversize"],
)
def test_session_reports_decoder_codes_to_the_peer(data, code):
    (log,) = make_devices(1)
    session = Session(log, 0.0)
    session.start(0.0)
    effects = session.receive_data(data, 0.0)
    assert effects[-1] == Close(code)
    sends = [e for e in effects if isinstance(e, Send)]
    assert len(sends) == 1
    goodbye = decode_one(sends[0].data)
    assert isinstance(goodbye, Goodbye) and goodbye.code == code
    assert session.state is State.CLOSED
    assert session.status.error is not None and session.status.error.startswith(code)
    assert session.receive_data(encode(Hello("peer-1", ())), 0.0) == []
