"""The scheduled jobs of a gate daemon or a relay: backups, archiving, compaction.

Built from the ``[backup]``, ``[archive]`` and ``[compaction]`` sections of
the daemon's or relay's TOML (docs/gate.md, docs/relay.md). Each is a
:class:`~headcount.service.periodic.PeriodicJob`: one run at a time, every
outcome journalled and logged; a failure is retried at the next interval
and never stops the node.

Where each job's work runs, and why:

1. Backups read the data directory through a connection of their own, so
   they run in a worker thread and the node keeps syncing.
2. Archiving reads in a worker thread (its own read-only connection) and
   takes events out of the live store on the loop's thread.
3. Compaction runs on the event loop's thread, one event per turn of the
   loop. It reads the event's document and the store's in-memory caches and
   deletes rows through the store's one connection, all of which the
   sessions use from the loop's thread without locks (a worker thread would
   interleave its statements with the sessions' open group transaction and
   race the caches). One event's fold is a single synchronous step, so no
   session ever sees half of it; sessions asking for folded entries get the
   snapshot instead (docs/protocol.md, Compaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headcount.archive.schedule import (
    ARCHIVE_KEYS,
    ArchiveSchedule,
    parse_archive_section,
    scheduled_archive,
)
from headcount.backup.schedule import (
    BACKUP_KEYS,
    BackupSchedule,
    parse_backup_section,
    run_scheduled_backup,
)
from headcount.core.durations import parse_duration
from headcount.core.errors import HeadcountError, InputError
from headcount.replica.compaction import compact_event, events_to_compact, log_size
from headcount.replica.replica import Replica

from .journal import Journal
from .periodic import OnOutcome, Outcome, PeriodicJob, Wait, wait_or_stop

COMPACTION_KEYS = frozenset({"interval", "enabled"})
SECTIONS = {"backup": BACKUP_KEYS, "archive": ARCHIVE_KEYS, "compaction": COMPACTION_KEYS}
LOGGERS = ("headcount.jobs", "headcount.archive", "headcount.net")  # net: refusals
COMPACTION_INTERVAL = "10m"
COMPACTION_JOURNAL = "compaction.jsonl"  # in the data directory

log = logging.getLogger("headcount.jobs")


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (pytest replaces it per test)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def log_to_stderr(*names: str) -> None:
    """Log the scheduled jobs' and the archive's records, and what the node
    refused from peers, as JSON lines on stderr (``headcount run``,
    ``headcount archive``), once per logger."""
    from headcount.relay.http.ops import JsonFormatter

    for name in names or LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Stderr) for h in logger.handlers):
            handler = _Stderr()
            handler.setFormatter(JsonFormatter())
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


@dataclass(frozen=True, slots=True)
class CompactionSchedule:
    """How often a daemon or relay compacts every event (``[compaction]``)."""

    interval_s: float = 600.0  # COMPACTION_INTERVAL


def parse_compaction_section(table: Mapping[str, Any]) -> CompactionSchedule | None:
    """The schedule of a ``[compaction]`` table: on by default, every 10
    minutes; None when ``enabled = false``.

    Raises:
        InputError: unknown keys, ``enabled`` not a boolean, ``interval`` not
            a positive duration (checked even when disabled).
    """
    unknown = set(table) - COMPACTION_KEYS
    if unknown:
        raise InputError(f"unknown keys in [compaction]: {', '.join(sorted(unknown))}")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InputError("compaction.enabled must be true or false")
    interval = parse_duration(table.get("interval", COMPACTION_INTERVAL), "compaction.interval")
    return CompactionSchedule(interval) if enabled else None


@dataclass(frozen=True, slots=True)
class Schedules:
    """The scheduled jobs a configuration file asks for (None: off)."""

    backup: BackupSchedule | None
    archive: ArchiveSchedule | None
    compaction: CompactionSchedule | None


def parse_sections(raw: Mapping[str, Any], data_dir: Path) -> Schedules:
    """The ``[backup]``, ``[archive]`` and ``[compaction]`` tables of a
    configuration file.

    Raises:
        InputError: a section is not a table, or as the section parsers.
    """
    tables = {}
    for name in SECTIONS:
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise InputError(f"[{name}] must be a table")
        tables[name] = table
    return Schedules(
        parse_backup_section(tables["backup"], data_dir),
        parse_archive_section(tables["archive"], data_dir),
        parse_compaction_section(tables["compaction"]),
    )


async def compaction_run(
    replica: Replica,
    events: Sequence[str] | None = None,
    stopped: asyncio.Event | None = None,
) -> dict[str, Any]:
    """One compaction run on the event loop's thread: ``events`` (default
    every event of the replica), one per turn of the loop (see the module
    docstring). An event that fails is logged and listed, and the others
    are still compacted. Once ``stopped`` is set no further event is begun
    (the node is shutting down; every event's fold is whole or not done).

    Returns:
        The run's details: ``events`` (how many were examined), ``removed``
        (log entries folded in all), ``compacted`` (per event where entries
        were removed: ``event``, ``removed``, ``log_entries``, ``folded``,
        ``horizon``), ``failed`` (``event``, ``code``, ``message``).

    Raises:
        NotFoundError: one of ``events`` is not on this device (nothing was
            compacted).
    """
    chosen = events_to_compact(replica, events)
    compacted: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    examined = 0
    for event in chosen:
        if stopped is not None and stopped.is_set():
            break
        examined += 1
        if replica.store.has_event(event):  # not archived since the run began
            try:
                done = compact_event(replica, event)
            except HeadcountError as exc:
                log.warning("compaction of %s failed: %s", event, exc.message)
                failed.append({"event": event, "code": exc.code, "message": exc.message})
            else:
                if done.removed:
                    compacted.append(done.to_dict())
        await asyncio.sleep(0)  # the sessions' turn
    removed = sum(c["removed"] for c in compacted)
    return {"events": examined, "removed": removed, "compacted": compacted, "failed": failed}


def describe_compaction(outcome: Outcome) -> str:
    """A compaction run in words, for its log line."""
    detail = outcome.detail
    text = (
        f"{len(detail['compacted'])} of {detail['events']} events compacted, "
        f"{detail['removed']} log entries removed in {outcome.duration_s:.3f} s"
    )
    if detail["failed"]:
        text += f"; FAILED: {', '.join(f['event'] for f in detail['failed'])}"
    return text


def compaction_report(
    replica: Replica, events: Sequence[str], detail: Mapping[str, Any]
) -> dict[str, Any]:
    """What ``headcount compact`` prints: per event of ``events``, the entries
    a run (``detail``, as :func:`compaction_run` returns) removed and the log
    it left; the run's total and failures."""
    removed = {c["event"]: c["removed"] for c in detail["compacted"]}
    rows = [
        {"removed": removed.get(e, 0), **log_size(replica, e).to_dict()}
        for e in events
        if replica.store.has_event(e)
    ]
    return {"events": rows, "removed": detail["removed"], "failed": detail["failed"]}


class Housekeeping:
    """The scheduled jobs of one running replica.

    Args:
        compaction: the compaction schedule (None: only :meth:`compact_now`).
        on_outcome: called with every outcome (the relay's metrics).
        wait: how a job waits between runs (tests pass a fake clock's).
    """

    def __init__(
        self,
        replica: Replica,
        backup: BackupSchedule | None,
        archive: ArchiveSchedule | None,
        *,
        compaction: CompactionSchedule | None = None,
        on_outcome: OnOutcome | None = None,
        wait: Wait = wait_or_stop,
    ) -> None:
        self.jobs: dict[str, PeriodicJob] = {}
        self.replica = replica
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._requested: set[asyncio.Task[Outcome]] = set()  # compact_now runs under way
        if backup is not None:

            async def backup_work() -> dict[str, Any]:
                return await asyncio.to_thread(
                    run_scheduled_backup, replica.data_dir, backup, replica.device_id
                )

            self.jobs["backup"] = PeriodicJob(
                "backup",
                backup.interval_s,
                backup_work,
                journal=backup.journal,
                on_outcome=on_outcome,
                wait=wait,
            )
        if archive is not None:

            async def archive_work() -> dict[str, Any]:
                return await scheduled_archive(replica, archive.policy)

            self.jobs["archive"] = PeriodicJob(
                "archive",
                archive.interval_s,
                archive_work,
                journal=archive.policy.journal,
                on_outcome=on_outcome,
                wait=wait,
            )

        async def compaction_work() -> dict[str, Any]:
            return await compaction_run(replica, stopped=self._stopped)

        self._compaction = PeriodicJob(
            "compaction",
            compaction.interval_s if compaction is not None else 0.0,
            compaction_work,
            journal=Journal(replica.data_dir / COMPACTION_JOURNAL),
            on_outcome=on_outcome,
            wait=wait,
            describe=describe_compaction,
        )
        if compaction is not None:
            self.jobs["compaction"] = self._compaction

    async def compact_now(self, events: Sequence[str] | None = None) -> Outcome:
        """Compact ``events`` (default all) now, as a run of the compaction
        job (after a run under way; journalled and counted as one, even when
        the schedule is off). Call on the event loop's thread; :meth:`stop`
        waits for it (it begins no further event once stopping).

        Returns:
            The run's outcome; its ``detail`` as :func:`compaction_run`'s.
        """

        async def work() -> dict[str, Any]:
            return await compaction_run(self.replica, events, self._stopped)

        task = asyncio.ensure_future(self._compaction.run_once(work))
        self._requested.add(task)
        task.add_done_callback(self._requested.discard)
        return await asyncio.shield(task)  # a caller that goes away does not cut it short

    def start(self) -> None:
        """Start every job (call inside the running event loop)."""
        for job in self.jobs.values():
            self._tasks.append(asyncio.create_task(job.run_forever(self._stopped)))

    async def stop(self) -> None:
        """Stop the jobs; a run under way finishes first (its worker thread
        cannot be interrupted, and archiving must not stop between steps;
        compaction ends after the event it is folding)."""
        self._stopped.set()
        for task in [*self._tasks, *self._requested]:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        self._tasks.clear()

    def status(self) -> dict[str, Any]:
        """Per job: interval, last outcome, last success, next run."""
        return {name: job.status() for name, job in self.jobs.items()}
