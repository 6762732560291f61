"""Memoising stand-ins for signature verification and entry hashing.

A thousand simulated nodes verify the same signed heads and hash the same
entries a thousand times each. These memos do each distinct piece of work
once, for real, and answer repeats from a cache. They change no outcome:

* :class:`MemoVerifier` keys its cache on the whole input (public key,
  message, signature), so a forged signature or a tampered message is a
  cache miss and is verified (and rejected) for real.
* :class:`MemoHasher` hashes an entry once and caches the digest *on the
  entry* (``chain.with_digest``, the project's own cache, computed from the
  entry's content) for the entries created while :attr:`MemoHasher.learning`
  is set: the origins' own appends, which the fast wire shares by reference.
  Entries decoded from bytes carry the digest the decoder computed from what
  arrived.
"""

from __future__ import annotations

from headcount.core.chain import compute_hash, ed25519_verify, with_digest
from headcount.core.model import LogEntry


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
    """``entry_hash(entry)``; caches the digest on entries created while learning."""

    def __init__(self) -> None:
        self.learning = False
        self.real = 0

    def __call__(self, entry: LogEntry) -> bytes:
        digest = entry.digest
        if digest:
            return digest
        self.real += 1
        if self.learning:
            return with_digest(entry).digest
        return compute_hash(entry)
