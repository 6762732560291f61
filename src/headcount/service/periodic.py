"""Jobs that a daemon or relay runs every so often: backups, archiving, compaction.

A :class:`PeriodicJob` runs an async ``work`` function (which puts its
long blocking parts in worker threads, or yields to the loop between short
steps, so the node keeps syncing) once per interval, one run at a time.
Every run ends with an :class:`Outcome`, appended to the job's journal and
logged; a failed run is retried at the next interval and never stops the
daemon. The first run is due one interval after the last run recorded in
the journal (at once if there is none), so a restart does not postpone a
backup past its interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from headcount.core.errors import HeadcountError

from .journal import Journal, iso_time

log = logging.getLogger("headcount.jobs")

Work = Callable[[], Awaitable[dict[str, Any]]]
Wait = Callable[[float, asyncio.Event], Awaitable[None]]
OnOutcome = Callable[["Outcome"], None]
Describe = Callable[["Outcome"], str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one run of a job ended."""

    job: str
    run: str
    started_ms: int
    duration_s: float
    ok: bool
    error: dict[str, str] | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "run": self.run,
            "started": iso_time(self.started_ms),
            "started_ms": self.started_ms,
            "duration_s": round(self.duration_s, 3),
            "ok": self.ok,
            "error": self.error,
            **self.detail,
        }


async def wait_or_stop(delay: float, stopped: asyncio.Event) -> None:
    """Sleep ``delay`` seconds, or less if ``stopped`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), max(0.0, delay))


class PeriodicJob:
    """``work`` every ``interval_s`` seconds (see the module docstring).

    Args:
        name: the job's name in the journal, logs, status and metrics.
        journal: where outcomes are appended (None: not recorded).
        wall: the wall clock in seconds (tests pass a fake one).
        wait: ``await wait(delay, stopped)`` between runs (tests pass a fake one).
        on_outcome: called with every outcome (metrics).
        describe: a successful run's outcome -> a short summary for its log
            line (``"3 events, 120 entries removed in 0.02 s"``).
    """

    def __init__(
        self,
        name: str,
        interval_s: float,
        work: Work,
        *,
        journal: Journal | None = None,
        wall: Callable[[], float] = time.time,
        wait: Wait = wait_or_stop,
        on_outcome: OnOutcome | None = None,
        describe: Describe | None = None,
    ) -> None:
        self.name, self.interval_s, self.work = name, interval_s, work
        self.journal, self.wall, self.wait, self.on_outcome = journal, wall, wait, on_outcome
        self.describe = describe
        self.last: Outcome | None = None
        self.last_ok: Outcome | None = None
        self.runs = self.failures = 0
        self.running = False
        self.next_due: float | None = None
        self._lock = asyncio.Lock()

    async def run_forever(self, stopped: asyncio.Event) -> None:
        """Run at every due time until ``stopped`` is set; never raises
        (but for cancellation). A run under way when ``stopped`` is set ends first."""
        self.next_due = await asyncio.to_thread(self._first_due)
        while not stopped.is_set():
            delay = self.next_due - self.wall()
            if delay > self.interval_s:  # the wall clock went back: never wait longer
                self.next_due, delay = self.wall() + self.interval_s, self.interval_s
            if delay > 0:
                await self.wait(delay, stopped)
                if stopped.is_set() or self.wall() < self.next_due:
                    continue
            started = self.wall()
            await self.run_once()
            # One interval after this run started: a run that overran its
            # interval is followed at once by the next; missed runs are not replayed.
            self.next_due = min(started + self.interval_s, self.wall() + self.interval_s)

    def _first_due(self) -> float:
        try:
            previous = self.journal.last(job=self.name) if self.journal is not None else None
        except (OSError, ValueError):
            previous = None
        if previous is None or not isinstance(previous.get("started_ms"), int):
            return self.wall()
        return min(previous["started_ms"] / 1000 + self.interval_s, self.wall() + self.interval_s)

    async def run_once(self, work: Work | None = None) -> Outcome:
        """One run now (after the one under way, if any); its outcome. Never
        raises a job's failure: it is in the outcome.

        Args:
            work: instead of the job's own work, for this run only (an
                operator's run of a narrower scope); journalled, logged and
                counted as a run of this job all the same.
        """
        async with self._lock:
            self.running = True
            try:
                outcome = await self._attempt(work or self.work)
            finally:
                self.running = False
            await self._record(outcome)
            return outcome

    async def _attempt(self, work: Work) -> Outcome:
        run = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
        started_ms, t0 = int(self.wall() * 1000), time.monotonic()
        error: dict[str, str] | None = None
        detail: dict[str, Any] = {}
        try:
            detail = await work()
        except HeadcountError as exc:
            error = {"code": exc.code, "message": exc.message}
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException as exc:  # a bug, or a pyo3 panic (a BaseException)
            log.exception("%s run %s failed unexpectedly", self.name, run)
            error = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
        return Outcome(
            self.name, run, started_ms, time.monotonic() - t0, error is None, error, detail
        )

    async def _record(self, outcome: Outcome) -> None:
        self.runs += 1
        self.last = outcome
        if outcome.ok:
            self.last_ok = outcome
            summary = ""
            if self.describe is not None:
                with contextlib.suppress(Exception):  # a log line never fails a run
                    summary = f": {self.describe(outcome)}"
            log.info(
                "%s run %s ok%s",
                self.name,
                outcome.run,
                summary,
                extra={"outcome": outcome.to_dict()},
            )
        else:
            self.failures += 1
            assert outcome.error is not None
            log.warning(
                "%s run %s failed: %s",
                self.name,
                outcome.run,
                outcome.error["message"],
                extra={"outcome": outcome.to_dict()},
            )
        if self.journal is not None:
            try:
                await asyncio.to_thread(self.journal.append, outcome.to_dict())
            except OSError as exc:
                log.warning("cannot write the %s journal %s: %s", self.name, self.journal.path, exc)
        if self.on_outcome is not None:
            with contextlib.suppress(Exception):
                self.on_outcome(outcome)

    def status(self) -> dict[str, Any]:
        """What ``headcount status`` shows of this job."""
        return {
            "interval_s": self.interval_s,
            "running": self.running,
            "runs": self.runs,
            "failures": self.failures,
            "next_due": None if self.next_due is None else iso_time(int(self.next_due * 1000)),
            "last": None if self.last is None else self.last.to_dict(),
            "last_success": None if self.last_ok is None else self.last_ok.to_dict()["started"],
        }


def job_metrics(registry: Any) -> OnOutcome:
    """An ``on_outcome`` that feeds Prometheus metrics in ``registry``: runs,
    failures, the time of the last success and the last run's duration, per
    job; and the log entries compaction removed (its outcomes' ``removed``)."""
    from prometheus_client import Counter, Gauge

    runs = Counter("headcount_job_runs", "Scheduled job runs.", ["job"], registry=registry)
    failures = Counter(
        "headcount_job_failures", "Scheduled job runs that failed.", ["job"], registry=registry
    )
    success = Gauge(
        "headcount_job_last_success_timestamp_seconds",
        "When the last successful run of a scheduled job started.",
        ["job"],
        registry=registry,
    )
    duration = Gauge(
        "headcount_job_last_duration_seconds",
        "How long the last run of a scheduled job took.",
        ["job"],
        registry=registry,
    )

    compacted = Counter(
        "headcount_compacted_entries",
        "Log entries compaction folded into snapshots.",
        registry=registry,
    )

    def observe(outcome: Outcome) -> None:
        runs.labels(outcome.job).inc()
        duration.labels(outcome.job).set(outcome.duration_s)
        if outcome.ok:
            success.labels(outcome.job).set(outcome.started_ms / 1000)
        else:
            failures.labels(outcome.job).inc()
        removed = outcome.detail.get("removed")
        if outcome.job == "compaction" and isinstance(removed, int) and removed > 0:
            compacted.inc(removed)

    return observe
