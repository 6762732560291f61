"""The scheduled jobs of a gate daemon or a relay: backups and archiving.

Built from the ``[backup]`` and ``[archive]`` sections of the daemon's or
relay's TOML (docs/gate.md, docs/relay.md). Each is a
:class:`~headcount.periodic.PeriodicJob`: its blocking work runs in worker
threads, one run at a time, every outcome journalled; a failure is logged
and retried at the next interval and never stops the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Mapping
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
from headcount.core.errors import InputError
from headcount.replica.replica import Replica

from .periodic import OnOutcome, PeriodicJob, Wait, wait_or_stop

SECTIONS = {"backup": BACKUP_KEYS, "archive": ARCHIVE_KEYS}
LOGGERS = ("headcount.jobs", "headcount.archive")


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (pytest replaces it per test)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def log_to_stderr(*names: str) -> None:
    """Log the scheduled jobs' and the archive's records as JSON lines on stderr
    (``headcount run``, ``headcount archive``), once per logger."""
    from headcount.relay.http.ops import JsonFormatter

    for name in names or LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Stderr) for h in logger.handlers):
            handler = _Stderr()
            handler.setFormatter(JsonFormatter())
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def parse_sections(
    raw: Mapping[str, Any], data_dir: Path
) -> tuple[BackupSchedule | None, ArchiveSchedule | None]:
    """The ``[backup]`` and ``[archive]`` tables of a configuration file.

    Raises:
        InputError: a section is not a table, or as the section parsers.
    """
    tables = {}
    for name in SECTIONS:
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise InputError(f"[{name}] must be a table")
        tables[name] = table
    return parse_backup_section(tables["backup"], data_dir), parse_archive_section(
        tables["archive"], data_dir
    )


class Housekeeping:
    """The scheduled jobs of one running replica.

    Args:
        on_outcome: called with every outcome (the relay's metrics).
        wait: how a job waits between runs (tests pass a fake clock's).
    """

    def __init__(
        self,
        replica: Replica,
        backup: BackupSchedule | None,
        archive: ArchiveSchedule | None,
        *,
        on_outcome: OnOutcome | None = None,
        wait: Wait = wait_or_stop,
    ) -> None:
        self.jobs: dict[str, PeriodicJob] = {}
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
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

    def start(self) -> None:
        """Start every job (call inside the running event loop)."""
        for job in self.jobs.values():
            self._tasks.append(asyncio.create_task(job.run_forever(self._stopped)))

    async def stop(self) -> None:
        """Stop the jobs; a run under way finishes first (its worker thread
        cannot be interrupted, and archiving must not stop between steps)."""
        self._stopped.set()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        self._tasks.clear()

    def status(self) -> dict[str, Any]:
        """Per job: interval, last outcome, last success, next run."""
        return {name: job.status() for name, job in self.jobs.items()}
