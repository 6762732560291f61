"""Signature checks of incoming segments in a worker thread.

Checking an Ed25519 signature costs ~0.1 ms here, a third of what a relay
spends on a one-entry batch, and ``cryptography`` releases the GIL while it
works. So before a driver hands a frame to its session, it gives the frame
to :meth:`PreVerifier.prepare`, which reads the segment heads out of it and
checks their signatures in a worker thread while the event loop serves
other links. The session's log then verifies through
:meth:`PreVerifier.verify`, which answers from those results.

Nothing is trusted on the way: only a signature that verified, over exactly
the bytes the log asks about (public key, signed message, signature), is
remembered, and each is used once. Anything else (a frame this cannot
parse, a key not known yet, a forgery) is verified in the ordinary way by
the log, which rejects it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack

from headcount.core.chain import ed25519_verify, head_message
from headcount.protocol.wire import TYPE_NUMBERS, WIRE_VERSION, Segments

_SEGMENTS = TYPE_NUMBERS[Segments]
_MAX_REMEMBERED = 50_000

Triple = tuple[bytes, bytes, bytes]  # public key, signed message, signature


class PreVerifier:
    """Args:
    public_key: ``device -> raw Ed25519 key`` (None if unknown), as the log's.
    """

    def __init__(self, public_key: Callable[[str], bytes | None]) -> None:
        self.public_key = public_key
        self.hits = 0
        self._verified: dict[Triple, None] = {}  # insertion-ordered: oldest evicted first
        self._pool: ThreadPoolExecutor | None = None

    @property
    def prepared(self) -> int:
        """How many signatures :meth:`prepare` verified that :meth:`verify`
        has not used yet (each is used once)."""
        return len(self._verified)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """The log's verifier: a prepared result if there is one, else the real check."""
        triple = (public_key, message, signature)
        if triple in self._verified:
            del self._verified[triple]
            self.hits += 1
            return True
        return ed25519_verify(public_key, message, signature)

    async def prepare(self, frame: bytes) -> None:
        """Check the signatures of the segment heads in ``frame`` (one whole
        wire frame) in the worker thread. Never raises for bad input."""
        triples = self._triples(frame)
        if not triples:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="headcount-verify")
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._pool, _verify_all, triples)
        for triple, ok in zip(triples, results, strict=True):
            if ok:
                self._verified[triple] = None
        while len(self._verified) > _MAX_REMEMBERED:
            del self._verified[next(iter(self._verified))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _triples(self, frame: bytes) -> list[Triple]:
        try:
            body = msgpack.unpackb(frame[4:], raw=False, strict_map_key=True)
            if body[0] != WIRE_VERSION or body[1] != _SEGMENTS:
                return []
            event, segments = body[2], body[3]
            return [t for t in (self._triple(event, s) for s in segments) if t is not None]
        except Exception:  # not a well-formed Segments frame: the session will say so
            return []

    def _triple(self, event: str, raw: Any) -> Triple | None:
        device, seq, digest, sig = raw[0], raw[1], raw[2], raw[3]
        if not (isinstance(device, str) and isinstance(seq, int) and isinstance(sig, bytes)):
            return None
        key = self.public_key(device)
        if key is None or not isinstance(digest, bytes):
            return None
        return key, head_message(event, device, seq, digest), sig


def _verify_all(triples: list[Triple]) -> list[bool]:
    return [ed25519_verify(*t) for t in triples]
