"""Scheduled archiving: the ``[archive]`` section of a daemon's or relay's TOML,
and one run inside the running daemon.

A run archives the events old enough (their rows read and their archives
written and verified in a worker thread, with a read-only connection of its
own), takes them out of the live store on the daemon's thread (only if
they did not change meanwhile), then, in a worker thread again, deletes the
archives they supersede and the archives past retention.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headcount.backup.schedule import path_setting, read_secret, section_interval
from headcount.core.durations import parse_duration
from headcount.core.errors import InputError
from headcount.replica.replica import Replica

from .reader import default_archive_dir
from .run import DAY_S, ArchivePolicy, Steps, commit, prepare, prune, supersede

ARCHIVE_KEYS = frozenset(
    {"interval", "older_than", "retention", "dir", "passphrase_file", "key_file", "require_synced"}
)


@dataclass(frozen=True, slots=True)
class ArchiveSchedule:
    """How often to archive, and the policy (see docs/archive.md)."""

    interval_s: float
    policy: ArchivePolicy


def parse_archive_section(table: Mapping[str, Any], data_dir: Path) -> ArchiveSchedule | None:
    """The schedule of an ``[archive]`` table; None when ``interval`` is absent (off).

    Raises:
        InputError: unknown keys, bad values, unreadable secret files.
    """
    interval = section_interval(table, "archive", ARCHIVE_KEYS, "1d")
    if interval is None:
        return None
    older = parse_duration(table.get("older_than", "90d"), "archive.older_than", bare_seconds=False)
    keep = parse_duration(table.get("retention", "365d"), "archive.retention", bare_seconds=False)
    directory = path_setting(table, "archive", "dir", "a directory path")
    if keep < older:
        raise InputError("archive.retention must not be shorter than archive.older_than")
    synced = table.get("require_synced", True)
    if not isinstance(synced, bool):
        raise InputError("archive.require_synced must be true or false")
    policy = ArchivePolicy(
        directory=Path(directory) if directory else default_archive_dir(data_dir),
        older_than_s=older,
        retention_s=keep,
        secret=read_secret(table, "archive"),
        require_synced=synced,
    )
    return ArchiveSchedule(interval, policy)


async def scheduled_archive(replica: Replica, policy: ArchivePolicy) -> dict[str, Any]:
    """One scheduled run in the daemon's event loop (see the module docstring).

    Returns:
        The run's details: ``archived`` (event and archive id of each),
        ``superseded`` and ``pruned`` (archive ids deleted), ``failed``
        (events left live because a step failed).
    """
    steps = Steps(policy.journal)
    now = replica.wall_clock()
    replica.store.save_acks()  # what peers acknowledged, for the read-only scan to see
    made = await asyncio.to_thread(prepare, replica.data_dir, replica.identity, policy, now, steps)
    removed = commit(replica, made, policy, steps)
    kept = [m for m in made if m.event in removed]
    superseded = await asyncio.to_thread(supersede, policy.directory, kept, steps)
    pruned = await asyncio.to_thread(prune, policy.directory, policy.retention_s, now, steps)
    return {
        "steps_run": steps.run,
        "archived": [{"event": m.event, "archive": m.id} for m in kept],
        "superseded": superseded,
        "pruned": pruned,
        "failed": sorted(
            {s.get("event", s.get("archive", "?")) for s in steps.lines if s["step"] == "failed"}
        ),
    }


__all__ = ["DAY_S", "ArchiveSchedule", "parse_archive_section", "scheduled_archive"]
