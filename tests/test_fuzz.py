"""Fuzzing the session: a seeded run of benchmarks/fuzz_frames.py, every
single-bit flip of a genuine frame, and hypothesis over arbitrary bytes.

The full run (>= 100,000 inputs) is ``python benchmarks/fuzz_frames.py``.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headcount.protocol.memlog import MemLog
from headcount.protocol.session import Applied, Close, Session, State
from headcount.protocol.wire import MESSAGE_TYPES, Hello, Segments, encode

from .support.protocol import make_devices

EV = "ev"
FUZZ_SEED = 20_240_611
FUZZ_COUNT = 20_000

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _load_fuzzer():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_frames.py"
    spec = importlib.util.spec_from_file_location("fuzz_frames", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fuzz_frames = _load_fuzzer()


def test_seeded_fuzz_run_finds_no_violation():
    report = fuzz_frames.fuzz(FUZZ_COUNT, FUZZ_SEED)
    assert report.count == FUZZ_COUNT
    assert not report.violations, (
        f"reproduce: python benchmarks/fuzz_frames.py --seed {FUZZ_SEED} --count {FUZZ_COUNT}\n"
        + report.summary()
    )
    # The run reached deep: valid frames were accepted, and forged or
    # malformed ones were refused for the right reasons.
    codes = report.outcomes
    assert codes["accepted"] > 0, report.summary()
    for code in ("malformed", "too_big", "unexpected", "remote_protocol_error", "version"):
        assert codes[f"closed: {code}"] > 0, f"seed {FUZZ_SEED}: no {code}\n{report.summary()}"


def test_the_oracle_catches_a_log_that_skips_signatures():
    """The fuzzer's checks can fail: a log that trusts every signature is caught."""
    fuzzer = fuzz_frames.Fuzzer(FUZZ_SEED)
    fuzzer.v.verify = lambda key, message, sig: True
    report = fuzzer.run(5_000)
    assert report.violations, f"seed {FUZZ_SEED}: forged heads went unnoticed"


# -- every single-bit flip of a genuine Segments frame ------------------------------


def _snapshot(log: MemLog):
    return (
        {e: log.version_vector(e) for e in log.events()},
        {
            (e, d): (tuple(c.hashes), dict(c.heads))
            for e, ds in log.chains.items()
            for d, c in ds.items()
            if d != log.device_id
        },
        frozenset(log.equivocators),
    )


@pytest.fixture
def victim_and_frame():
    p, v = make_devices(2)
    for i in range(3):
        p.append(EV, f"update {i}".encode(), hlc=i + 1)
    (seg,) = p.segments_since(EV, {}, 10**6)
    return p, v, encode(Segments(EV, (seg,)))


def _open(v: MemLog, peer: str) -> Session:
    session = Session(v, 0.0)
    session.start(0.0)
    session.receive_data(encode(Hello(peer, (EV,))), 0.0)
    assert session.state is State.OPEN
    return session


def test_no_single_bit_flip_of_a_genuine_frame_is_accepted(victim_and_frame):
    p, v, frame = victim_and_frame
    assert Applied(EV, 3) in _open(v, p.device_id).receive_data(frame, 0.0)  # the original
    fresh = make_devices(1, directory=p.directory)[0]
    before = _snapshot(fresh)
    outcomes: dict[str, int] = {}
    for bit in range(len(frame) * 8):
        flipped = bytearray(frame)
        flipped[bit // 8] ^= 1 << (bit % 8)
        session = _open(fresh, p.device_id)
        effects = session.receive_data(bytes(flipped), 1.0)
        if session.state is State.CLOSED:
            assert effects[-1] == Close(effects[-1].error) and effects[-1].error, (bit, effects)
            key = effects[-1].error
        else:  # a longer length prefix: still waiting for the rest
            assert bit < 32 and session.decoder.buffered == len(frame), bit
            key = "waiting"
        assert not any(isinstance(e, Applied) for e in effects), f"bit {bit} was accepted"
        assert _snapshot(fresh) == before, f"bit {bit} changed the log"
        outcomes[key] = outcomes.get(key, 0) + 1
    assert outcomes.get("remote_protocol_error", 0) > len(frame)  # most reach verification


# -- hypothesis: arbitrary bytes ----------------------------------------------------


@pytest.fixture(scope="module")
def pair_of_logs():
    p, v = make_devices(2)
    for i in range(3):
        p.append(EV, f"p{i}".encode(), hlc=i + 1)
        v.append(EV, f"v{i}".encode(), hlc=i + 1)
    v.ingest(EV, p.segments_since(EV, {}, 10**6))
    return p, v


def _feed(session: Session, data: bytes, cuts: list[int]):
    points = sorted({c % (len(data) + 1) for c in cuts})
    effects = []
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        effects += session.receive_data(data[a:b], 1.0)
    return effects


def _check(session: Session, effects, log: MemLog, before) -> None:
    closes = [i for i, e in enumerate(effects) if isinstance(e, Close)]
    assert closes in ([], [len(effects) - 1])
    assert (session.state is State.CLOSED) == bool(closes)
    assert not any(isinstance(e, Applied) for e in effects)
    assert _snapshot(log) == before


@PROPERTY
@given(data=st.binary(max_size=2_000), cuts=st.lists(st.integers(0, 10**6), max_size=4))
def test_arbitrary_bytes_into_a_fresh_session(pair_of_logs, data, cuts):
    _, v = pair_of_logs
    before = _snapshot(v)
    session = Session(v, 0.0)
    session.start(0.0)
    _check(session, _feed(session, data, cuts), v, before)


@PROPERTY
@given(data=st.binary(max_size=2_000), cuts=st.lists(st.integers(0, 10**6), max_size=4))
def test_arbitrary_bytes_into_an_open_session(pair_of_logs, data, cuts):
    p, v = pair_of_logs
    before = _snapshot(v)
    session = _open(v, p.device_id)
    _check(session, _feed(session, data, cuts), v, before)
    session.anti_entropy(2.0)
    session.tick(100.0)
    assert _snapshot(v) == before


_leaves = (
    st.integers(-(2**63), 2**64 - 1)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=80)
)
_trees = st.recursive(
    _leaves,
    lambda kids: (
        st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=30,
)


@PROPERTY
@given(
    kind=st.integers(0, max(MESSAGE_TYPES) + 1) | _leaves,  # every type, and unknown ones
    fields=st.lists(_trees, max_size=6),
    version=st.sampled_from([1, 1, 1, 0, 2, True]),
)
def test_frame_shaped_msgpack_into_an_open_session(pair_of_logs, kind, fields, version):
    p, v = pair_of_logs
    before = _snapshot(v)
    body = msgpack.packb([version, kind, *fields])
    session = _open(v, p.device_id)
    effects = session.receive_data(struct.pack(">I", len(body)) + body, 1.0)
    _check(session, effects, v, before)
