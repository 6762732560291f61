"""A per-key sliding-window rate limit, with time passed in.

Pure bookkeeping: no clock, no asyncio. The API calls :meth:`RateLimit.take`
once per authenticated request with the current time in milliseconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class RateLimit:
    """At most ``limit`` requests per ``window_ms`` for each key.

    A refused request does not count against the key.
    """

    limit: int = 20
    window_ms: int = 300_000
    _hits: dict[str, deque[int]] = field(default_factory=dict)

    def take(self, key: str, now_ms: int) -> int:
        """Count one request for ``key`` at ``now_ms``.

        Returns:
            0 if allowed; otherwise the whole seconds (>= 1) to wait before
            the next request for ``key`` would be allowed (``Retry-After``).
        """
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now_ms - self.window_ms:
            hits.popleft()
        if len(hits) >= self.limit:
            wait_ms = hits[0] + self.window_ms - now_ms
            return max(1, -(-wait_ms // 1000))
        hits.append(now_ms)
        return 0

    def forget_idle(self, now_ms: int) -> None:
        """Drop keys with no request in the window (bounds memory)."""
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now_ms - self.window_ms]:
            del self._hits[key]
