"""One replica, many drivers: a device's event documents, identity and store
behind one API (:class:`Replica`), the view of it the sync protocol uses
(:class:`ReplicaLog`), lazy apply for relays, and compaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headcount._lazy import exports

if TYPE_CHECKING:
    from .apply import ApplyResult
    from .compaction import compact, compaction_horizon
    from .log import ReplicaLog
    from .replica import Replica, lock_data_dir

__all__ = [
    "ApplyResult",
    "Replica",
    "ReplicaLog",
    "compact",
    "compaction_horizon",
    "lock_data_dir",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        ".apply": ["ApplyResult"],
        ".replica": ["Replica", "lock_data_dir"],
        ".log": ["ReplicaLog"],
        ".compaction": ["compact", "compaction_horizon"],
    },
)
