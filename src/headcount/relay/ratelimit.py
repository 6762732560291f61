"""A per-key sliding-window rate limit, with time passed in.

Pure bookkeeping: no clock, no asyncio. The API calls :meth:`RateLimit.take`
once per authenticated request with the current time in milliseconds.

Idle keys are forgotten as requests arrive, not by a timer: the table keeps
its keys in the order of their last accepted request, so every :meth:`take`
first drops the keys at the front that went idle, one look at the oldest key
plus O(1) per key dropped. After a :meth:`take` at ``now``, the table holds
only keys with an accepted request in ``(now - window, now]`` (given a clock
that does not go back), and with no requests at all it does not grow.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class RateLimit:
    """At most ``limit`` requests per ``window_ms`` for each key.

    A refused request does not count against the key. ``len(rate)`` is the
    number of keys tracked, ``key in rate`` whether a key is.
    """

    limit: int = 20
    window_ms: int = 300_000
    # key -> times of its accepted requests in the window; keys in the order
    # of their last accepted request, oldest first
    _hits: OrderedDict[str, deque[int]] = field(default_factory=OrderedDict)

    def take(self, key: str, now_ms: int) -> int:
        """Count one request for ``key`` at ``now_ms``; forget idle keys first.

        Returns:
            0 if allowed; otherwise the whole seconds (>= 1) to wait before
            the next request for ``key`` would be allowed (``Retry-After``).
        """
        self.forget_idle(now_ms)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now_ms - self.window_ms:
            hits.popleft()
        if len(hits) >= self.limit:
            wait_ms = hits[0] + self.window_ms - now_ms
            return max(1, -(-wait_ms // 1000))
        hits.append(now_ms)
        self._hits.move_to_end(key)
        return 0

    def forget_idle(self, now_ms: int) -> None:
        """Drop the keys with no accepted request in the window (bounds memory).

        Forgetting never changes an answer of :meth:`take`: an idle key's
        requests have all left the window. It stops at the oldest key that is
        not idle, so after the clock went back an idle key behind a busier one
        is dropped a little later; a key with a request in the window never is.
        """
        cutoff = now_ms - self.window_ms
        while self._hits:
            key, hits = next(iter(self._hits.items()))
            if hits and hits[-1] > cutoff:
                return
            del self._hits[key]

    def __len__(self) -> int:
        return len(self._hits)

    def __contains__(self, key: object) -> bool:
        return key in self._hits
