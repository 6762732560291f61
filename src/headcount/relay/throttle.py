"""Which refused requests earn an audit row, with time passed in.

Every audit row is an fsync. A request refused before it proved who sent it
(no token, a forged or an expired one) or refused by the rate limit costs its
sender nothing, so it must not cost the relay a durable write each:
:class:`AuditThrottle` admits at most one row per *(source, reason)* per
interval, and at most ``max_rows`` such rows per interval in all, whatever
the number of sources. The rest are only counted (the relay's metrics count
every refusal; see :mod:`.http.ops`).

Pure bookkeeping, as :mod:`.ratelimit`: no clock, no asyncio. The table keeps
one entry per row admitted in the last interval, oldest first, so it never
holds more than ``max_rows`` keys and every :meth:`AuditThrottle.admit`
forgets the expired ones at its front in O(1) per key.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(slots=True)
class AuditThrottle:
    """At most one row per ``(source, reason)`` and ``max_rows`` rows in all
    per ``interval_ms``.

    ``len(throttle)`` is the number of keys tracked (never above ``max_rows``).
    """

    interval_ms: int = 60_000
    max_rows: int = 60
    # (source, reason) -> time of its last admitted row; oldest first
    _rows: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)

    def admit(self, source: str, reason: str, now_ms: int) -> bool:
        """Whether a refusal of ``reason`` from ``source`` at ``now_ms`` gets a row.

        Returns:
            True (and counts the row) if neither bound is reached; False if
            this key had a row in the last interval or the interval's rows are
            spent.
        """
        cutoff = now_ms - self.interval_ms
        while self._rows:
            key, at = next(iter(self._rows.items()))
            if at > cutoff:
                break
            del self._rows[key]
        key = (source, reason)
        if key in self._rows or len(self._rows) >= self.max_rows:
            return False
        self._rows[key] = now_ms
        return True

    def __len__(self) -> int:
        return len(self._rows)
