"""Fuzz the sync session with mutated and random frames.

Run from the repository root with the package installed::

    python benchmarks/fuzz_frames.py                      # 100,000 frames, seed 1
    python benchmarks/fuzz_frames.py --count 500000 --seed 7

A victim device (a :class:`~headcount.protocol.memlog.MemLog`, verifying for real)
talks to a legitimate peer P through :class:`~headcount.protocol.session.Session`. The
fuzzer builds a corpus of frames P could honestly send (its Hello, summaries,
acks, pings, goodbyes, and Segments holding its own and a relayed device Q's
signed entries, fresh, duplicate, gapped, of a new event) plus a few hostile
ones (an unknown device's segments, forged signatures), then feeds each
iteration one input into a fresh session (still in the handshake) or into an
open one (kept across iterations until it closes):

* 70 % a mutated stream of one to three corpus frames: bit flips, byte
  overwrites, truncations, deletions, insertions, duplicated chunks,
  length-prefix corruption, and structure-aware edits of one msgpack node;
* 30 % random input: random bytes, random bytes behind a plausible length
  prefix, or a random msgpack value shaped like a frame.

Each input is delivered in one to four chunks. After every chunk and every
iteration it checks, and records a violation otherwise:

1. no exception escaped ``receive_data`` (nor ``tick``/``anti_entropy``,
   called now and then);
2. the effects are well formed: a ``Close`` comes last and at most once per
   session, an error close is preceded by a ``Goodbye`` with the same code,
   and every frame the victim sends decodes;
3. the victim's log changed only by *genuine* entries: every entry, hash and
   head the victim holds of another device is exactly the origin's, no device
   is quarantined (nobody equivocates here), and the entries added equal the
   sum of the ``Applied`` effects. Nothing but a valid frame from a
   legitimate sender can pass this, since the fuzzer holds no signing key.

When the log did change, it is restored to its baseline so that later valid
frames can be accepted again. The corpus, the keys (derived from the seed)
and every mutation are deterministic: the same ``--seed`` and ``--count``
replay the same run. Prints the count, the elapsed time, frames/s and the
outcome counts (and writes them to ``benchmarks/out/fuzz_frames.json``); exits
1 on any violation, printing the first few with their iteration number and
input. Never touches the network.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import random
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from headcount.core.chain import Segment
from headcount.core.identity import device_id_for
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import Applied, Close, EquivocationFound, Send, Session, State
from headcount.protocol.wire import (
    DEFAULT_MAX_FRAME,
    Ack,
    FrameDecoder,
    Goodbye,
    Hello,
    Message,
    Ping,
    Pong,
    Segments,
    Summary,
    encode,
)

EV, EV2 = "ev", "ev2"
_LEN = struct.Struct(">I")


# -- the world: devices, their genuine logs, the corpus ---------------------------------


def _key(seed: int, name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"headcount-fuzz/{seed}/{name}".encode()).digest()
    )


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _fill(log: MemLog, event: str, n: int, rng: random.Random) -> None:
    for i in range(n):
        log.append(event, rng.randbytes(rng.randrange(0, 48)), hlc=1_000 + i)


def _single_segments(log: MemLog, event: str, device: str) -> list[Segment]:
    """``device``'s entries in ``log``, one segment per entry where heads allow."""
    vv = {d: n for d, n in log.version_vector(event).items() if d != device}
    vv[device] = 0
    out: list[Segment] = []
    while segs := [s for s in log.segments_since(event, vv, 1) if s.head.device == device]:
        out += segs
        vv[device] = segs[-1].head.seq
    return out


class World:
    """The victim V, the legitimate peer P, Q (known; its entries reach V only
    through P) and U (unknown to V). Everything is derived from ``seed``."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        keys = {name: _key(seed, name) for name in ("v", "p", "q", "u")}
        ids = {name: device_id_for(k.public_key()) for name, k in keys.items()}
        directory = {ids[n]: _raw(keys[n]) for n in ("v", "p", "q")}
        self.v = MemLog(ids["v"], keys["v"], directory)
        self.p = MemLog(ids["p"], keys["p"], directory)
        q = MemLog(ids["q"], keys["q"], directory)
        u = MemLog(ids["u"], keys["u"], {ids["u"]: _raw(keys["u"])})
        _fill(self.v, EV, 3, rng)
        _fill(self.p, EV, 8, rng)
        _fill(self.p, EV2, 5, rng)
        _fill(q, EV, 6, rng)
        _fill(u, EV, 3, rng)
        # P relays Q: it learns Q's entries one signed segment at a time.
        self.p.ingest(EV, _single_segments(q, EV, q.device_id))
        p_single = _single_segments(self.p, EV, self.p.device_id)
        q_single = _single_segments(self.p, EV, q.device_id)
        # V's baseline: P's entries 1..3 and Q's 1..2.
        result = self.v.ingest(EV, [*p_single[:3], *q_single[:2]])
        assert result.applied == 5, result
        self.baseline = _copy_chains(self.v.chains)
        self.origins = {self.v.device_id: self.v, self.p.device_id: self.p, q.device_id: q}
        self.corpus, self.hostile = self._corpus(rng, u, p_single, q_single)
        # Every head P and Q ever signed: no other signature can exist.
        self.genuine_heads = {
            (h.event, h.device, h.seq, h.hash, h.sig)
            for log in (self.p, q)
            for devices in log.chains.values()
            for chain in devices.values()
            for h in chain.heads.values()
        }

    def _corpus(
        self, rng: random.Random, u: MemLog, p_single: list[Segment], q_single: list[Segment]
    ) -> tuple[list[bytes], list[bytes]]:
        p, v = self.p, self.v
        vv_v = v.version_vector(EV)
        fresh = p.segments_since(EV, vv_v, 10**9)
        everything = p.segments_since(EV, {}, 10**9)
        ev2 = p.segments_since(EV2, {}, 10**9)
        messages: list[Message] = [
            Hello(p.device_id, (EV, EV2)),
            Hello(p.device_id, ()),
            Summary(EV, p.version_vector(EV), True),
            Summary(EV, {}, False),
            Summary(EV, vv_v, True),
            Summary(EV2, p.version_vector(EV2), True),
            Ack(EV, p.version_vector(EV)),
            Ack(EV2, {}),
            Ping(rng.randrange(2**64)),
            Pong(7),
            Goodbye("bye", ""),
            Goodbye("busy", "try later"),
            Segments(EV, tuple(fresh)),  # accepted as is
            Segments(EV, tuple(p_single[3:] + q_single[2:])),  # accepted, many segments
            Segments(EV, tuple(p_single[3:5])),  # accepted, a part
            Segments(EV, tuple(everything)),  # duplicates and fresh
            Segments(EV, tuple(p_single[:3])),  # duplicates only
            Segments(EV, tuple(p_single[5:])),  # a gap
            Segments(EV2, tuple(ev2)),  # a new event
            Segments(EV, ()),
        ]
        hostile: list[Message] = [
            Segments(EV, tuple(u.segments_since(EV, {}, 10**9))),  # unknown device
            Segments(EV, tuple(_forge(s) for s in fresh)),  # bad signature
            Hello(u.device_id, (EV,)),
            Hello(v.device_id, (EV,)),  # v itself
        ]
        return [encode(m) for m in messages], [encode(m) for m in hostile]


def _forge(seg: Segment) -> Segment:
    return dataclasses.replace(seg, head=dataclasses.replace(seg.head, sig=bytes(64)))


def _copy_chains(chains: dict) -> dict:
    return {
        event: {
            device: dataclasses.replace(
                c,
                entries=list(c.entries),
                hashes=list(c.hashes),
                head_seqs=list(c.head_seqs),
                heads=dict(c.heads),
            )
            for device, c in devices.items()
        }
        for event, devices in chains.items()
    }


# -- mutations -------------------------------------------------------------------------

_INTS = [0, 1, 2, 3, 7, 8, 127, 128, 255, 256, 2**16, 2**31, 2**32, 2**63, 2**64 - 1]
_INTS += [-1, -2, -128, -(2**31), -(2**63)]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-encodable value, biased towards boundary cases."""
    kind = rng.randrange(10 if depth < 3 else 8)
    if kind == 0:
        return rng.choice(_INTS)
    if kind == 1:
        return rng.randrange(-(2**63), 2**64)
    if kind == 2:
        return rng.choice([True, False, None, 0.0, 1.0, -1.5, float("nan")])
    if kind == 3:
        return rng.choice(["", "ev", "ev2", "bye", "x" * 129, "y" * 1025, "a\x00b", "\n", "é"])
    if kind == 4:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(0, 20)))
    if kind in (5, 6):
        return rng.randbytes(rng.choice([0, 1, 31, 32, 33, 63, 64, 65, rng.randrange(100)]))
    if kind == 7:
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(4)))
    if kind == 8:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 7))]
    return {
        rng.choice(["ev", "x", "", "\x01", "d" * 129]): random_value(rng, depth + 1)
        for _ in range(rng.randrange(0, 4))
    }


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, list):
        for i, item in enumerate(value):
            out += _nodes(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            out += _nodes(item, (*path, key))
    return out


def _near(rng: random.Random, value: Any) -> Any:
    """A value close to ``value``: the edits a careless or clever peer makes."""
    if isinstance(value, bool):
        return rng.choice([not value, int(value), None])
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, -value, value ^ (1 << rng.randrange(64)), True])
    if isinstance(value, bytes) and value:
        b = bytearray(value)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return rng.choice([bytes(b), value[:-1], value + b"\x00", value.decode("latin-1")])
    if isinstance(value, str) and value:
        return rng.choice([value[:-1], value + "\x00", value * 2, value.encode(), value.upper()])
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        return rng.choice([value[:i] + value[i + 1 :], [*value, value[i]], value[::-1], value[i]])
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        return rng.choice([{k: v for k, v in value.items() if k != key}, {**value, key: 0}])
    return random_value(rng)


def structural(rng: random.Random, frame: bytes) -> bytes:
    """Decode the frame, change one node of its msgpack tree, frame it again."""
    tree = msgpack.unpackb(frame[4:], raw=False, strict_map_key=False)
    path = rng.choice(_nodes(tree))
    new = random_value(rng) if rng.random() < 0.4 else None
    if not path:
        tree = new if new is not None else _near(rng, tree)
    else:
        node = tree
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = new if new is not None else _near(rng, node[path[-1]])
    try:
        body = msgpack.packb(tree)
    except (OverflowError, ValueError):  # an int outside msgpack's 64 bits
        return mutate_bytes(rng, frame)
    return _LEN.pack(len(body)) + body


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.randrange(8)
    n = len(b)
    if op == 0 and n:  # bit flips
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1 and n:  # overwrite bytes
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(n)] = rng.choice([0, 0xFF, 0x7F, 0x80, 0xC0, 0xC1, rng.randrange(256)])
    elif op == 2:  # truncate
        del b[rng.randrange(n + 1) :]
    elif op == 3 and n:  # delete a chunk
        i = rng.randrange(n)
        del b[i : i + rng.randrange(1, 16)]
    elif op == 4:  # insert random bytes
        i = rng.randrange(n + 1)
        b[i:i] = rng.randbytes(rng.randrange(1, 16))
    elif op == 5 and n:  # duplicate a chunk somewhere
        i = rng.randrange(n)
        chunk = b[i : i + rng.randrange(1, 64)]
        j = rng.randrange(n + 1)
        b[j:j] = chunk
    elif op in (6, 7):  # corrupt a length prefix (the first frame's, or any 4 bytes)
        i = 0 if op == 6 or n < 4 else rng.randrange(n - 3)
        length = rng.choice(
            [
                0,
                1,
                rng.randrange(2**32),
                DEFAULT_MAX_FRAME,
                DEFAULT_MAX_FRAME + 1,
                2**32 - 1,
                max(0, n - 4 + rng.randrange(-3, 4)),
            ]
        )
        b[i : i + 4] = _LEN.pack(length)
    return bytes(b)


# -- the run ------------------------------------------------------------------------------


@dataclass
class Report:
    seed: int
    count: int = 0
    elapsed: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def summary(self) -> str:
        lines = [
            f"seed {self.seed}: {self.count:,} inputs in {self.elapsed:.2f} s "
            f"({self.rate:,.0f} frames/s), {len(self.violations)} violations",
            "inputs: " + ", ".join(f"{k} {n:,}" for k, n in sorted(self.kinds.items())),
            "outcomes:",
        ]
        lines += [f"  {k:<28} {n:>9,}" for k, n in sorted(self.outcomes.items())]
        lines += [f"VIOLATION {v}" for v in self.violations[:5]]
        return "\n".join(lines)


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.world = World(seed)
        self.v = self.world.v
        self.hello = self.world.corpus[0]
        self.now = 0.0
        self.session: Session | None = None
        self.closes = 0  # Close effects seen on the current session
        self.report = Report(seed)

    # -- inputs --

    def make_input(self, handshake: bool) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.10:
            self.report.kinds["random bytes"] += 1
            return rng.randbytes(rng.randrange(0, 300))
        if r < 0.20:
            self.report.kinds["random body"] += 1
            body = rng.randbytes(rng.randrange(0, 200))
            length = len(body) if rng.random() < 0.7 else rng.randrange(300)
            return _LEN.pack(length) + body
        if r < 0.30:
            self.report.kinds["random msgpack"] += 1
            head = [1, rng.randrange(0, 10)] if rng.random() < 0.8 else []
            items = head + [random_value(rng) for _ in range(rng.randrange(0, 6))]
            body = msgpack.packb(items)
            return _LEN.pack(len(body)) + body
        self.report.kinds["mutated"] += 1
        pool = self.world.corpus if rng.random() < 0.9 else self.world.hostile
        frames = [rng.choice(pool) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        if handshake and rng.random() < 0.5:
            frames.insert(0, self.hello)
        if rng.random() < 0.5:
            i = rng.randrange(len(frames))
            frames[i] = structural(rng, frames[i])
        data = b"".join(frames)
        if rng.random() < 0.75 or (len(frames) == 1 and data in self.world.corpus):
            for _ in range(rng.choice([1, 1, 2, 3])):
                data = mutate_bytes(rng, data)
        return data

    def _new_session(self, handshake_only: bool) -> Session:
        self.closes = 0
        session = Session(self.v, self.now)
        session.start(self.now)
        if not handshake_only:
            effects = session.receive_data(self.hello, self.now)
            assert session.state is State.OPEN, effects
        return session

    # -- one iteration --

    def step(self, i: int) -> None:
        rng = self.rng
        self.now += 0.01
        fresh = rng.random() < 0.3
        if fresh or self.session is None or self.session.state is State.CLOSED:
            self.session = self._new_session(handshake_only=fresh and rng.random() < 0.5)
        session = self.session
        data = self.make_input(session.state is State.HANDSHAKE)
        before = self._fingerprint()
        applied = 0
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(0, 4)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        outcome = None
        for piece in pieces:
            try:
                effects = session.receive_data(piece, self.now)
            except BaseException as exc:  # PanicException is a BaseException
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._violation(i, data, f"receive_data raised {type(exc).__name__}: {exc}")
                self.session = None
                outcome = "raised"
                break
            applied += sum(e.entries for e in effects if isinstance(e, Applied))
            outcome = self._check_effects(i, data, effects) or outcome
        if outcome is None and self.session is not None and rng.random() < 0.05:
            self._drive(i, data, session)
        self._check_log(i, data, before, applied, outcome)
        if outcome is None and session.state is not State.CLOSED:
            outcome = "open" if session.state is State.OPEN else "handshake"
        self.report.outcomes[outcome or "closed"] += 1
        self.report.count += 1

    def _drive(self, i: int, data: bytes, session: Session) -> None:
        """The driver's other inputs must survive whatever the peer said."""
        try:
            effects = session.anti_entropy(self.now)
            effects += session.local_entries(EV, self.now)
            effects += session.tick(self.now)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._violation(i, data, f"driver input raised {type(exc).__name__}: {exc}")
            self.session = None
            return
        self._check_effects(i, data, effects)

    def _check_effects(self, i: int, data: bytes, effects: list) -> str | None:
        outcome = None
        goodbye: str | None = None
        for n, effect in enumerate(effects):
            if isinstance(effect, Send):
                decoder = FrameDecoder()
                decoder.receive_data(effect.data)
                try:
                    message = decoder.next_message()
                except Exception as exc:
                    self._violation(i, data, f"victim sent an undecodable frame: {exc}")
                    continue
                if message is None or decoder.buffered:
                    self._violation(i, data, "victim sent a partial or doubled frame")
                if isinstance(message, Goodbye):
                    goodbye = message.code
            elif isinstance(effect, Close):
                self.closes += 1
                if self.closes > 1 or n != len(effects) - 1:
                    self._violation(i, data, f"Close not last or repeated: {effects}")
                if goodbye is not None and effect.error != (None if goodbye == "bye" else goodbye):
                    self._violation(i, data, f"Goodbye {goodbye!r} but {effect}")
                if goodbye is None:
                    outcome = "peer goodbye"
                else:
                    outcome = f"closed: {effect.error}"
            elif isinstance(effect, EquivocationFound):
                self._violation(i, data, f"equivocation reported with no equivocator: {effect}")
        return outcome

    # -- the log oracle --

    def _fingerprint(self) -> tuple:
        own = self.v.device_id
        return (
            tuple(
                (event, device, len(c.entries), -1 if device == own else len(c.heads))
                for event, devices in sorted(self.v.chains.items())
                for device, c in sorted(devices.items())
                if c.entries
            ),
            len(self.v.equivocators),
        )

    def _check_log(
        self, i: int, data: bytes, before: tuple, applied: int, outcome: str | None
    ) -> None:
        after = self._fingerprint()
        if after == before and applied == 0:
            if set(self.v.chains) != set(self.world.baseline):
                self._restore()  # an empty chain left behind by a gap: nothing to check
            return
        added = sum(n for *_, n, _ in after[0]) - sum(n for *_, n, _ in before[0])
        if added != applied:
            self._violation(i, data, f"log grew by {added} entries, Applied said {applied}")
        if self.v.equivocators:
            self._violation(i, data, f"quarantined {sorted(self.v.equivocators)}")
        for event, devices in self.v.chains.items():
            for device, chain in devices.items():
                self._check_chain(i, data, event, device, chain)
        if added and outcome != "raised":
            self.report.outcomes["accepted"] += 1
        self._restore()

    def _check_chain(self, i: int, data: bytes, event: str, device: str, chain: Any) -> None:
        origin = self.world.origins.get(device)
        if origin is None:
            if chain.entries:
                self._violation(i, data, f"entries of unknown device {device} applied")
            return
        truth = origin.chains.get(event, {}).get(device)
        n = len(chain.entries)
        lie = truth is None and n > 0
        if truth is not None:
            lie = chain.entries != truth.entries[:n] or chain.hashes != truth.hashes[:n]
        if lie:
            self._violation(i, data, f"non-genuine entries of {device} in {event!r}")
        if device == self.v.device_id:
            return
        for seq, head in chain.heads.items():
            key = (head.event, head.device, head.seq, head.hash, head.sig)
            if seq != head.seq or seq > n or key not in self.world.genuine_heads:
                self._violation(i, data, f"non-genuine head {device}:{seq} in {event!r}")

    def _restore(self) -> None:
        self.v.restore(_copy_chains(self.world.baseline))

    def _violation(self, i: int, data: bytes, what: str) -> None:
        self.report.violations.append(
            f"seed {self.seed} iteration {i}: {what}; input {data[:160].hex()}"
            + ("..." if len(data) > 160 else "")
        )

    def run(self, count: int) -> Report:
        start = time.perf_counter()
        for i in range(count):
            self.step(i)
        self.report.elapsed = time.perf_counter() - start
        return self.report


def fuzz(count: int, seed: int) -> Report:
    """Run ``count`` inputs with ``seed``; the report lists any violation."""
    return Fuzzer(seed).run(count)


def main(argv: list[str] | None = None) -> int:
    # Imported here: tests load this module from its path, without benchmarks/ on sys.path.
    from _common import OUT_DIR, Row, machine_info, print_header, print_table, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs to feed")
    parser.add_argument("--seed", type=int, default=1, help="seed of keys, corpus and mutations")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "fuzz_frames.json")
    args = parser.parse_args(argv)
    info = machine_info()
    sizes = {"count": args.count, "seed": args.seed}
    report = fuzz(args.count, args.seed)
    rows = [
        Row("inputs fed", report.count, None, "", f"{args.count:,}", report.count == args.count),
        Row("inputs/s", report.rate, None, "/s"),
        Row("violations", len(report.violations), None, "", "0", not report.violations),
    ]
    print_header("fuzz_frames: hostile frames into a session", info, sizes)
    print_table(rows, note=False)
    print()
    print(report.summary())
    write_json(
        args.out.resolve(),
        info,
        sizes,
        rows,
        elapsed_s=report.elapsed,
        inputs=dict(report.kinds),
        outcomes=dict(report.outcomes),
        violations=report.violations,
    )
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
