"""Scheduled backups: the interval (on a fake clock), the choice between full and
incremental, retention by whole chains, failures recorded while the daemon
keeps running, the relay's metrics, and the configuration sections."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from headcount import InputError, Replica, Role
from headcount.backup import Catalog, Kind, create_backup, restore_backup, verify_backup
from headcount.backup.retention import chains, prune_chains
from headcount.backup.schedule import BackupSchedule, parse_backup_section, run_scheduled_backup
from headcount.cli.main import main
from headcount.core.durations import format_duration, parse_duration
from headcount.pki.org import init_org
from headcount.relay.server import Relay, load_relay_config
from headcount.service.control import request
from headcount.service.daemon import Daemon, load_config
from headcount.service.journal import Journal
from headcount.service.periodic import PeriodicJob

from .support.backup import KEY, reads
from .support.clock import T0, FakeClock
from .support.devices import enrolled_dir
from .support.sync import sync
from .support.wait import await_until

EV = "ev"
DEADLINE_S = 20.0


@pytest.mark.parametrize(
    "text, seconds",
    [("90d", 7_776_000), ("12h", 43_200), ("30m", 1800), ("1.5h", 5400), ("2w", 1_209_600)],
)
def test_durations_parse_and_print(text, seconds):
    assert parse_duration(text, "x") == seconds
    assert parse_duration(format_duration(seconds), "x") == seconds


@pytest.mark.parametrize("value", ["", "5", "1y", "-1h", "0s", True, 0, "h"])
def test_bad_durations_are_refused(value):
    with pytest.raises(InputError):
        parse_duration(value, "x", bare_seconds=value != 0)


def _fake_time(start: float, stop_after: int):
    """A fake wall clock and a ``wait`` that advances it, stopping after N waits."""
    now = [start]
    waits: list[float] = []

    async def wait(delay: float, stopped: asyncio.Event) -> None:
        waits.append(delay)
        now[0] += delay
        if len(waits) >= stop_after:
            stopped.set()

    return now, waits, wait


def test_a_job_runs_every_interval_and_a_failed_run_is_recorded_and_retried(tmp_path):
    now, waits, wait = _fake_time(1000.0, stop_after=4)
    started: list[float] = []

    async def work() -> dict:
        started.append(now[0])
        if len(started) == 2:
            raise InputError("the disk is on fire", code="disk_on_fire")
        if len(started) == 3:
            now[0] += 150  # this run overran two intervals
        return {"n": len(started)}

    journal = Journal(tmp_path / "journal.jsonl")
    job = PeriodicJob("backup", 60, work, journal=journal, wall=lambda: now[0], wait=wait)
    asyncio.run(job.run_forever(asyncio.Event()))
    # at once (no run recorded yet), every 60 s, the overrun followed at once
    assert started == [1000, 1060, 1120, 1270, 1330]
    assert waits == [60, 60, 60, 60]
    records = list(journal.records())
    assert [r["ok"] for r in records] == [True, False, True, True, True]
    assert records[1]["error"] == {"code": "disk_on_fire", "message": "the disk is on fire"}
    assert job.failures == 1 and job.runs == 5 and job.status()["last"]["ok"]

    now[0] = 1350.0  # a restart 20 s after the last run: the next is due 40 s later
    waits.clear()
    again = PeriodicJob("backup", 60, work, journal=journal, wall=lambda: now[0], wait=wait)
    asyncio.run(again.run_forever(asyncio.Event()))
    assert waits[0] == pytest.approx(40)


def test_a_crashing_run_is_an_internal_error_not_a_dead_daemon(tmp_path):
    async def work() -> dict:
        raise ZeroDivisionError("bug")

    async def main() -> tuple:
        job = PeriodicJob("archive", 60, work)
        outcome = await job.run_once()
        return outcome, await job.run_once()

    first, second = asyncio.run(main())
    assert not first.ok and first.error["code"] == "internal_error" and not second.ok


def _gate(root: Path, clock: FakeClock) -> Replica:
    """A gate holding an event (created by an admin, received by sync) and 20 participants."""
    Replica.init(root / "hq", role=Role.ADMIN, name="hq")
    Replica.init(root / "a", role=Role.GATE, name="a")
    replica = Replica.open(root / "a", wall_clock=clock)
    with Replica.open(root / "hq", wall_clock=clock) as admin:
        admin.create_event(EV, "Conf")
        sync(admin, replica)
    replica.import_participants(EV, [{"id": f"P{i}", "qr_token": f"Q{i}"} for i in range(20)])
    return replica


def test_an_incremental_schedule_chains_then_starts_a_new_full_and_keeps_whole_chains(
    tmp_path, clock
):
    a = _gate(tmp_path, clock)
    schedule = BackupSchedule(3600, tmp_path / "dest", Kind.INCREMENTAL, full_every=3, keep=2)
    runs, scans = [], []
    for i in range(7):
        scans.append(a.check_in(EV, f"Q{i}").scan.id)
        runs.append(run_scheduled_backup(a.data_dir, schedule, a.device_id))
    assert [r["kind"] for r in runs] == ["full", "incremental", "incremental"] * 2 + ["full"]
    assert "no backup" in runs[0]["full_reason"] and "full_every" in runs[3]["full_reason"]
    assert [len(r["pruned"]) for r in runs] == [0] * 6 + [3]  # the first chain, whole
    left = [[m.id for m in chain] for chain in chains(Catalog(schedule.dest), a.device_id)]
    assert left == [[r["backup"] for r in runs[3:6]], [runs[6]["backup"]]]
    for chain in left:
        assert verify_backup(chain[-1], schedule.dest).chain == chain
    a.close()
    restore_backup(runs[5]["backup"], schedule.dest, tmp_path / "restored")  # the chain's end
    with Replica.open(tmp_path / "restored") as restored:
        assert reads(restored)["scans"] == sorted(scans[:6])


def test_an_incremental_that_cannot_continue_the_chain_falls_back_to_a_full_one(tmp_path, clock):
    a = _gate(tmp_path, clock)
    device = a.device_id
    schedule = BackupSchedule(3600, tmp_path / "dest")
    first = run_scheduled_backup(a.data_dir, schedule, device)
    a.check_in(EV, "Q1")
    second = run_scheduled_backup(a.data_dir, schedule, device)
    assert (first["kind"], second["kind"]) == ("full", "incremental")
    a.close()
    restore_backup(first["backup"], schedule.dest, tmp_path / "a")  # the store goes back
    third = run_scheduled_backup(tmp_path / "a", schedule, device)
    assert third["kind"] == "full" and "does not continue" in third["full_reason"]
    keyed = BackupSchedule(3600, tmp_path / "dest", secret=KEY)
    fourth = run_scheduled_backup(tmp_path / "a", keyed, device)
    assert fourth["kind"] == "full" and "encryption changed" in fourth["full_reason"]
    fifth = run_scheduled_backup(tmp_path / "a", keyed, device)
    assert fifth["kind"] == "incremental"


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    kinds=st.lists(st.sampled_from(["full", "incremental"]), min_size=1, max_size=7),
    keep=st.integers(1, 3),
)
def test_retention_deletes_whole_chains_and_never_strands_an_incremental(kinds, keep):
    kinds = ["full", *kinds]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clock = FakeClock(T0)
        a = _gate(root, clock)
        dest = root / "dest"
        made = []
        for n, kind in enumerate(kinds):
            a.check_in(EV, f"Q{n}")
            made.append(create_backup(a.data_dir, kind, dest=dest))
        other = create_backup(a.data_dir, Kind.ATTENDANCE, dest=dest)  # not a chain: kept
        a.close()
        roots = [i for i, k in enumerate(kinds) if k == "full"]
        first_kept = roots[-keep] if len(roots) >= keep else 0
        deleted = prune_chains(Catalog(dest), made[0].device, keep)
        assert sorted(deleted) == sorted(m.id for m in made[:first_kept])
        left = {e.id for e in Catalog(dest).entries()}
        assert left == {m.id for m in made[first_kept:]} | {other.id}
        for m in made[first_kept:]:  # every kept backup still restores: its chain is whole
            assert Catalog(dest).chain(m)[0].kind is Kind.FULL
        assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_a_failing_scheduled_backup_is_recorded_and_the_daemon_keeps_working(tmp_path, capsys):
    org = init_org(tmp_path / "org", "Example Events")
    gate = enrolled_dir(tmp_path, org, "gate", Role.ADMIN)
    with Replica.open(gate) as r:
        r.create_event(EV, "Conf")
        r.import_participants(EV, [{"id": "P1", "qr_token": "Q1"}])
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the backup directory should be")
    dest = blocker / "backups"
    (tmp_path / "gate.toml").write_text(
        f'data_dir = "{gate}"\n[backup]\ninterval = 0.05\nkind = "full"\n'
        f'dest = "{dest}"\nkeep = 2\n'
    )
    daemon = Daemon(load_config(tmp_path / "gate.toml", None))
    journal = Journal(dest / "journal.jsonl")

    def runs() -> list[dict]:
        return [r for r in journal.records()] if dest.is_dir() else []

    async def scenario() -> tuple:
        task = asyncio.create_task(daemon.run())
        job = daemon.housekeeping.jobs["backup"]
        await await_until(lambda: job.failures >= 2, DEADLINE_S, "two failed runs")
        status = await asyncio.to_thread(request, daemon.config.control_socket, {"op": "status"})
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["--data-dir", str(gate), "status"]) == 0
        text = capsys.readouterr().out
        assert "backup: last run" in text and "FAILED: io_error" in text, text
        scan = await asyncio.to_thread(
            request,
            daemon.config.control_socket,
            {"op": "scan", "kind": "in", "event": EV, "who": "Q1"},
        )
        blocker.unlink()  # the operator fixes the disk
        await await_until(lambda: any(r["ok"] for r in runs()), DEADLINE_S, "a successful run")
        daemon.stop()
        await task
        return status, scan

    status, scan = asyncio.run(asyncio.wait_for(scenario(), DEADLINE_S * 2))
    backup = status["jobs"]["backup"]
    assert backup["failures"] >= 2 and not backup["last"]["ok"]
    assert backup["last"]["error"]["code"] == "io_error"
    assert scan["recorded"]  # the daemon kept recording while backups failed
    ok = [r for r in runs() if r["ok"]]
    assert ok and ok[0]["kind"] == "full" and (dest / ok[0]["backup"]).is_dir()
    code = main(
        ["--data-dir", str(gate), "--json", "backup", "list", "--runs", "--dest", str(dest)]
    )
    assert code == 0
    with Replica.open(gate) as r:  # the lock was released, the scan is on disk
        assert r.status(EV).scans == 1


def test_the_relay_backs_up_on_schedule_and_exports_metrics(tmp_path):
    org = init_org(tmp_path / "org", "Example Events")
    relay_dir = enrolled_dir(tmp_path, org, "relay", Role.RELAY)
    (tmp_path / "relay.toml").write_text(
        f'https = "127.0.0.1:0"\nops = "127.0.0.1:0"\n[backup]\ninterval = "1h"\n'
        f'dest = "{tmp_path / "dest"}"\n'
    )
    config = load_relay_config(tmp_path / "relay.toml", relay_dir)
    assert config.backup is not None and config.backup.kind is Kind.INCREMENTAL
    relay = Relay(config)

    async def scenario() -> bytes:
        task = asyncio.create_task(relay.run())
        job = relay.housekeeping.jobs["backup"]
        # due at start
        await await_until(lambda: job.runs >= 1, DEADLINE_S, "the first scheduled backup")
        text = generate_latest(relay.metrics.registry)
        relay.stopped.set()
        await task
        return text

    text = asyncio.run(asyncio.wait_for(scenario(), DEADLINE_S * 2)).decode()
    assert 'headcount_job_runs_total{job="backup"} 1.0' in text
    success = 'headcount_job_last_success_timestamp_seconds{job="backup"}'
    [line] = [x for x in text.splitlines() if x.startswith(success)]
    assert float(line.split()[-1]) > 1e9
    assert [m.kind for m in (e.manifest for e in Catalog(tmp_path / "dest").entries())] == [
        Kind.FULL
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ('[backup]\ninterval = "1x"\n', "not a duration"),
        ('[backup]\ninterval = "1h"\nkind = "attendance"\n', "full"),
        ('[backup]\ninterval = "1h"\nkeep = 0\n', "at least 1"),
        ('[backup]\ninterval = "1h"\npassphrase_file = "/nonexistent/p"\n', "cannot read"),
        ('[backup]\ninterval = "1h"\npassphrase_file = "p"\nkey_file = "k"\n', "not both"),
        ('[backup]\ninterval = "1h"\nkey_file = "/nonexistent/k"\n', "cannot read"),
        ('[backup]\nkind = "full"\n', "needs an interval"),
        ("[backup]\nbogus = 1\n", "unknown keys"),
        ("backup = 5\n", "must be a table"),
        ('[archive]\ninterval = "1d"\nolder_than = 90\n', "give a unit"),
        ('[archive]\ninterval = "1d"\nretention = "30d"\n', "not be shorter"),
        ('[archive]\nolder_than = "10d"\n', "needs an interval"),
    ],
)
def test_bad_schedule_sections_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for load in (load_config, load_relay_config):
        with pytest.raises(InputError, match=message):
            load(path, tmp_path)


def test_schedule_defaults(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text('[backup]\ninterval = "1h"\n[archive]\ninterval = "1d"\n')
    config = load_config(path, tmp_path / "gate")
    assert config.backup is not None and config.archive is not None
    assert (config.backup.dest, config.backup.kind) == (tmp_path / "gate/backups", Kind.INCREMENTAL)
    assert (config.backup.full_every, config.backup.keep, config.backup.secret) == (24, 7, None)
    assert config.archive.policy.directory == tmp_path / "gate/archive"
    assert config.archive.policy.older_than_s == 90 * 86400
    assert config.archive.policy.retention_s == 365 * 86400
    assert parse_backup_section({}, tmp_path) is None  # off unless an interval is given
    shutil.rmtree(tmp_path / "gate", ignore_errors=True)
