"""Memoising stand-ins for signature verification and entry hashing.

A thousand simulated nodes verify the same signed heads and hash the same
entries a thousand times each. These memos do each distinct piece of work
once, for real, and answer repeats from a cache. They change no outcome:

* :class:`MemoVerifier` keys its cache on the whole input (public key,
  message, signature), so a forged signature or a tampered message is a
  cache miss and is verified (and rejected) for real.
* :class:`MemoHasher` keys on the identity of an entry object *and keeps a
  reference to it*, so an id can never be reused by another object while it
  is cached. Only entries created while :attr:`MemoHasher.learning` is set
  (the origins' own appends, shared by reference over the fast wire) are
  cached; anything else (e.g. entries decoded from bytes) is hashed for real
  on every call.
"""

from __future__ import annotations

from headcount.chain import ed25519_verify, entry_hash
from headcount.model import LogEntry


class MemoVerifier:
    """``verify(public_key, message, signature)``, each distinct triple once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.real = 0
        self.calls = 0

    def __call__(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        self.calls += 1
        key = (public_key, message, signature)
        ok = self._cache.get(key)
        if ok is None:
            self.real += 1
            ok = self._cache[key] = ed25519_verify(public_key, message, signature)
        return ok


class MemoHasher:
    """``entry_hash(entry)``, memoised by object identity for learnt entries."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[LogEntry, bytes]] = {}
        self.learning = False
        self.real = 0

    def __call__(self, entry: LogEntry) -> bytes:
        hit = self._cache.get(id(entry))
        if hit is not None and hit[0] is entry:
            return hit[1]
        self.real += 1
        digest = entry_hash(entry)
        if self.learning:
            self._cache[id(entry)] = (entry, digest)
        return digest
