"""Scheduled compaction: the ``[compaction]`` section, the job in a gate daemon
and a relay (journal, log line, status, metrics), the control socket's
``compact`` and ``headcount compact`` with and without a daemon."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from headcount import InputError, Replica, Role
from headcount.cli.main import main
from headcount.core.errors import StoreError
from headcount.pki.org import init_org
from headcount.relay.server import Relay, load_relay_config
from headcount.replica.compaction import log_size
from headcount.replica.log import ReplicaLog
from headcount.service.control import request
from headcount.service.daemon import Daemon, load_config
from headcount.service.housekeeping import (
    COMPACTION_JOURNAL,
    CompactionSchedule,
    Housekeeping,
    compaction_run,
    parse_compaction_section,
)
from headcount.service.journal import Journal
from headcount.service.periodic import Outcome, PeriodicJob, job_metrics

from .support.devices import enrolled_dir
from .support.protocol import ConnectionPair
from .support.replicas import introduce
from .support.wait import await_event, await_until

EV = "ev"
DEADLINE_S = 20.0


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, interval",
    [
        ("", 600.0),  # on by default, every 10 minutes
        ("[compaction]\n", 600.0),
        ('[compaction]\ninterval = "30s"\n', 30.0),
        ("[compaction]\ninterval = 2.5\n", 2.5),
        ('[compaction]\nenabled = true\ninterval = "1h"\n', 3600.0),
        ('[compaction]\nenabled = false\ninterval = "1h"\n', None),
        ("[compaction]\nenabled = false\n", None),
    ],
)
def test_the_compaction_section(tmp_path, text, interval):
    path = tmp_path / "ok.toml"
    path.write_text(text)
    for load in (load_config, load_relay_config):
        config = load(path, tmp_path / "dev")
        got = None if config.compaction is None else config.compaction.interval_s
        assert got == interval


@pytest.mark.parametrize(
    "text, message",
    [
        ('[compaction]\ninterval = "1x"\n', r"compaction\.interval: '1x' is not a duration"),
        ("[compaction]\ninterval = 0\n", r"compaction\.interval: a duration must be positive"),
        ('[compaction]\ninterval = "-5m"\n', "compaction.interval"),
        ("[compaction]\ninterval = true\n", "not a boolean"),
        ('[compaction]\nenabled = "no"\n', r"compaction\.enabled must be true or false"),
        ("[compaction]\nenabled = 0\n", r"compaction\.enabled must be true or false"),
        ('[compaction]\nenabled = false\ninterval = "soon"\n', "not a duration"),
        ("[compaction]\nevery = 5\n", r"unknown keys in \[compaction\]: every"),
        ("compaction = 5\n", r"\[compaction\] must be a table"),
    ],
)
def test_bad_compaction_sections_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for load in (load_config, load_relay_config):
        with pytest.raises(InputError, match=message):
            load(path, tmp_path)


def test_parse_compaction_section_directly():
    assert parse_compaction_section({}) == CompactionSchedule(600.0)
    assert parse_compaction_section({"enabled": False}) is None


# -- a device whose peers acknowledged its entries ----------------------------------


def _exchange(a: Replica, b: Replica) -> None:
    ConnectionPair(ReplicaLog(a), ReplicaLog(b)).run()


def _acknowledged_admin(tmp_path: Path, *, role: Role = Role.ADMIN, scans: int = 6) -> Path:
    """An enrolled device (an admin, or a relay fed by an admin) whose two
    peers acknowledged everything it holds, so that compaction has entries
    to fold (the peers are not kept)."""
    org = init_org(tmp_path / "org", "Example Events")
    path = enrolled_dir(tmp_path, org, "dev", role)
    names = ("n", "s") if role is Role.ADMIN else ("hq", "n")
    for name in names:
        Replica.init(tmp_path / name, name=name, role=Role.ADMIN if name == "hq" else Role.GATE)
    device = Replica.open(path)
    peers = [Replica.open(tmp_path / n) for n in names]
    try:
        introduce(device, *peers)
        creator = device if role is Role.ADMIN else peers[0]
        creator.create_event(EV, "Conf")
        creator.create_event("other", "Other")
        creator.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(10)])
        for i in range(scans):
            creator.check_in(EV, f"p{i}")
        for peer in peers:
            _exchange(device, peer)
    finally:
        for r in (device, *peers):
            r.close()
    return path


def _log_rows(path: Path, event: str = EV) -> int:
    with Replica.open(path, read_only=True) as r:
        return log_size(r, event).entries


# -- the job ------------------------------------------------------------------------


def test_a_run_compacts_every_event_and_reports_what_it_removed(tmp_path):
    path = _acknowledged_admin(tmp_path)
    before = _log_rows(path)
    with Replica.open(path) as r:
        scans = sorted(r.event(EV).doc.scans)
        detail = asyncio.run(compaction_run(r))
        assert detail["events"] == 2 and detail["failed"] == []
        [done] = [c for c in detail["compacted"] if c["event"] == EV]
        assert done["removed"] == detail["removed"] - sum(
            c["removed"] for c in detail["compacted"] if c["event"] != EV
        )
        assert done["log_entries"] == before - done["removed"] == log_size(r, EV).entries
        assert done["folded"] == sum(done["horizon"].values()) >= done["removed"]
        assert asyncio.run(compaction_run(r))["removed"] == 0  # nothing new to fold
    with Replica.open(path) as r:
        assert sorted(r.event(EV).doc.scans) == scans and len(scans) == 6


def test_one_failing_event_does_not_stop_the_others(tmp_path, monkeypatch):
    from headcount.service import housekeeping

    path = _acknowledged_admin(tmp_path)
    real = housekeeping.compact_event

    def flaky(replica, event):
        if event == "other":
            raise StoreError("the disk is on fire", code="disk_on_fire")
        return real(replica, event)

    monkeypatch.setattr(housekeeping, "compact_event", flaky)
    with Replica.open(path) as r:
        detail = asyncio.run(compaction_run(r))
    assert detail["failed"] == [
        {"event": "other", "code": "disk_on_fire", "message": "the disk is on fire"}
    ]
    assert [c["event"] for c in detail["compacted"]] == [EV]


def test_the_scheduled_job_journals_logs_and_shows_in_status(tmp_path, capsys, caplog):
    path = _acknowledged_admin(tmp_path)
    before = _log_rows(path)
    (tmp_path / "gate.toml").write_text(f'data_dir = "{path}"\n[compaction]\ninterval = "1h"\n')
    daemon = Daemon(load_config(tmp_path / "gate.toml", None))
    job = daemon.housekeeping.jobs["compaction"]

    async def scenario() -> dict:
        task = asyncio.create_task(daemon.run())
        # due at start
        await await_until(lambda: job.runs >= 1, DEADLINE_S, "the first compaction run")
        status = await asyncio.to_thread(request, daemon.config.control_socket, {"op": "status"})
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["--data-dir", str(path), "status", EV]) == 0
        text = capsys.readouterr().out
        daemon.stop()
        await task
        return {"status": status, "text": text}

    with caplog.at_level(logging.INFO, logger="headcount.jobs"):
        got = asyncio.run(asyncio.wait_for(scenario(), DEADLINE_S * 2))
    last = job.last
    assert last is not None and last.ok and last.detail["removed"] > 0
    removed = last.detail["removed"]
    # the journal: one record per run, with what it removed
    [record] = list(Journal(path / COMPACTION_JOURNAL).records())
    assert record["job"] == "compaction" and record["ok"] and record["removed"] == removed
    # one readable log line per run
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("compaction")]
    assert " ok: " in line and "of 2 events compacted" in line
    assert f"{removed} log entries removed in " in line and line.endswith(" s")
    # status: the job and the log sizes
    jobs = got["status"]["jobs"]["compaction"]
    assert jobs["interval_s"] == 3600 and jobs["runs"] == 1 and jobs["last"]["ok"]
    [size] = [s for s in got["status"]["log"] if s["event"] == EV]
    assert size["log_entries"] < before and size["folded"] > 0
    assert "compaction: last run" in got["text"] and "log entries removed" in got["text"]
    assert f"log {size['log_entries']} entries ({size['folded']} folded)" in got["text"]
    # a restart within the interval does not compact again at once
    again = Daemon(load_config(tmp_path / "gate.toml", None))

    async def restart() -> float | None:
        task = asyncio.create_task(again.run())
        compaction = again.housekeeping.jobs["compaction"]
        await await_until(
            lambda: compaction.next_due is not None, DEADLINE_S, "the next run's time"
        )
        again.stop()
        await task
        return compaction.next_due

    due = asyncio.run(asyncio.wait_for(restart(), DEADLINE_S))
    assert due is not None and due == pytest.approx(record["started_ms"] / 1000 + 3600, abs=1)
    assert again.housekeeping.jobs["compaction"].runs == 0


def test_compact_goes_through_a_running_daemon_even_with_the_schedule_off(tmp_path, capsys):
    path = _acknowledged_admin(tmp_path)
    before = _log_rows(path)
    (tmp_path / "gate.toml").write_text(f'data_dir = "{path}"\n[compaction]\nenabled = false\n')
    daemon = Daemon(load_config(tmp_path / "gate.toml", None))
    assert "compaction" not in daemon.housekeeping.jobs

    async def cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["--data-dir", str(path), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    async def scenario() -> list[tuple[int, str, str]]:
        ready = asyncio.Event()
        task = asyncio.create_task(daemon.run(ready))
        await ready.wait()
        runs = [
            await cli("--json", "compact", EV),
            await cli("compact"),
            await cli("--json", "compact", "nope", EV),
            await cli("--json", "status"),
        ]
        daemon.stop()
        await task
        return runs

    first, second, missing, status = asyncio.run(asyncio.wait_for(scenario(), DEADLINE_S * 2))
    assert first[0] == 0, first
    data = json.loads(first[1])
    [row] = data["events"]
    assert row["event"] == EV and row["removed"] > 0
    assert row["log_entries"] == before - row["removed"]
    assert data["removed"] == row["removed"] and data["run"] and data["failed"] == []
    assert second[0] == 0 and f"{EV}: 0 log entries removed" in second[1]
    assert "other: " in second[1]
    assert missing[0] == 1 and json.loads(missing[1])["error"]["code"] == "not_found"
    assert "'nope'" in json.loads(missing[1])["error"]["message"]
    assert "compaction" not in json.loads(status[1])["jobs"]  # no schedule
    # the operator's runs were journalled like scheduled ones (the bad one never ran)
    records = list(Journal(path / COMPACTION_JOURNAL).records())
    assert [r["ok"] for r in records] == [True, True]
    assert records[0]["removed"] == row["removed"]
    with Replica.open(path, read_only=True) as r:
        assert len(r.event(EV).doc.scans) == 6


def test_compact_without_a_daemon(tmp_path, capsys):
    path = _acknowledged_admin(tmp_path)
    before = _log_rows(path)

    def cli(*argv: str) -> tuple[int, str, str]:
        code = main(["--data-dir", str(path), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = cli("--json", "compact")
    assert code == 0
    data = json.loads(out)
    assert [e["event"] for e in data["events"]] == [EV, "other"]
    [row] = [e for e in data["events"] if e["event"] == EV]
    assert row["removed"] > 0 and row["log_entries"] == before - row["removed"]
    code, out, _ = cli("compact", EV)
    assert code == 0 and out.startswith(f"{EV}: 0 log entries removed, {row['log_entries']} left")
    code, _, err = cli("compact", "nope")
    assert code == 1 and "no event 'nope'" in err
    assert not (path / COMPACTION_JOURNAL).exists()  # no daemon, no job: not journalled
    with Replica.open(path):  # another process holds the directory (a relay...)
        code, _, err = cli("compact")
    assert code == 1 and "held by another headcount process" in err
    assert "[compaction] schedule" in err and "Traceback" not in err


# -- the periodic job machinery ------------------------------------------------------


def test_run_once_can_run_other_work_as_a_run_of_the_job(tmp_path, caplog):
    async def scheduled() -> dict:
        return {"what": "scheduled"}

    async def manual() -> dict:
        return {"what": "manual"}

    journal = Journal(tmp_path / "journal.jsonl")
    job = PeriodicJob(
        "compaction", 60, scheduled, journal=journal, describe=lambda o: f"did {o.detail['what']}"
    )

    async def both() -> tuple[Outcome, Outcome]:
        return await job.run_once(), await job.run_once(manual)

    with caplog.at_level(logging.INFO, logger="headcount.jobs"):
        first, second = asyncio.run(both())
    assert (first.detail, second.detail) == ({"what": "scheduled"}, {"what": "manual"})
    assert [r["what"] for r in journal.records()] == ["scheduled", "manual"]
    assert job.runs == 2
    assert [r.getMessage().split(" ok: ")[1] for r in caplog.records] == [
        "did scheduled",
        "did manual",
    ]


def test_job_metrics_count_compacted_entries():
    registry = CollectorRegistry()
    observe = job_metrics(registry)
    observe(Outcome("compaction", "r1", 1_000, 0.5, True, detail={"removed": 7}))
    observe(Outcome("compaction", "r2", 2_000, 0.5, True, detail={"removed": 0}))
    observe(Outcome("backup", "r3", 3_000, 0.5, True, detail={"removed": 99}))  # not ours
    text = generate_latest(registry).decode()
    assert "headcount_compacted_entries_total 7.0" in text
    assert 'headcount_job_runs_total{job="compaction"} 2.0' in text


def test_the_relay_compacts_on_schedule_and_exports_metrics(tmp_path):
    relay_dir = _acknowledged_admin(tmp_path, role=Role.RELAY)
    before = _log_rows(relay_dir)
    (tmp_path / "relay.toml").write_text(
        'https = "127.0.0.1:0"\nops = "127.0.0.1:0"\n[compaction]\ninterval = "1h"\n'
    )
    config = load_relay_config(tmp_path / "relay.toml", relay_dir)
    relay = Relay(config)
    job = relay.housekeeping.jobs["compaction"]

    async def scenario() -> bytes:
        task = asyncio.create_task(relay.run())
        await await_until(lambda: job.runs >= 1, DEADLINE_S, "the first scheduled compaction")
        text = generate_latest(relay.metrics.registry)
        relay.stopped.set()
        await task
        return text

    text = asyncio.run(asyncio.wait_for(scenario(), DEADLINE_S * 2)).decode()
    assert job.last is not None and job.last.ok
    removed = job.last.detail["removed"]
    assert removed > 0 and _log_rows(relay_dir) < before
    assert 'headcount_job_runs_total{job="compaction"} 1.0' in text
    assert 'headcount_job_last_success_timestamp_seconds{job="compaction"}' in text
    assert f"headcount_compacted_entries_total {float(removed)}" in text
    assert [r["job"] for r in Journal(relay_dir / COMPACTION_JOURNAL).records()] == ["compaction"]
    with Replica.open(relay_dir, read_only=True) as r:
        assert len(r.event(EV).doc.scans) == 6


def test_housekeeping_without_a_schedule_still_compacts_on_request(tmp_path):
    path = _acknowledged_admin(tmp_path)
    with Replica.open(path) as r:
        jobs = Housekeeping(r, None, None)
        assert jobs.jobs == {}
        outcome = asyncio.run(jobs.compact_now([EV]))
    assert outcome.ok and outcome.job == "compaction" and outcome.detail["removed"] > 0
    assert outcome.detail["events"] == 1


def test_stopping_waits_for_a_requested_run_which_begins_no_further_event(tmp_path, monkeypatch):
    from headcount.service import housekeeping

    path = _acknowledged_admin(tmp_path)
    real = housekeeping.compact_event
    stopping: list[asyncio.Task[None]] = []

    with Replica.open(path) as r:
        jobs = Housekeeping(r, None, None, compaction=CompactionSchedule(3600))

        asked_to_stop = asyncio.Event()

        def first_then_stop(replica, event):
            if not stopping:  # SIGTERM arrives while the first event is folded
                stopping.append(asyncio.ensure_future(jobs.stop()))
                asked_to_stop.set()
            return real(replica, event)

        monkeypatch.setattr(housekeeping, "compact_event", first_then_stop)

        async def scenario() -> tuple[Outcome, bool]:
            run = asyncio.ensure_future(jobs.compact_now())
            await await_event(asked_to_stop, DEADLINE_S, "stop() called while folding the first")
            await stopping[0]
            finished_first = run.done()  # stop() returned only after the run ended
            return await run, finished_first

        outcome, finished_first = asyncio.run(asyncio.wait_for(scenario(), DEADLINE_S))
    assert finished_first and outcome.ok
    assert outcome.detail["events"] == 1  # of two: the second was never begun
    assert [c["event"] for c in outcome.detail["compacted"]] == [EV]
