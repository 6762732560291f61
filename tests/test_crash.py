"""Crash test: SIGKILL a scanning process at random moments; no acknowledged
scan may be lost, and the data directory must reopen cleanly every time.

The worker (tests/support/crash_worker.py) prints a scan id only after ``check_in``
returned, so every id the test reads was acknowledged as durable. Set
``HEADCOUNT_CRASH_SEED`` to replay a failing run; the seed is in every
assertion message.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from headcount import Replica, Role, StoreError
from headcount.store import DB_FILE, StoreFile

from .support.seeds import reported_seed
from .support.sync import sync

WORKER = Path(__file__).parent / "support" / "crash_worker.py"
EVENT = "crash26"
KILLS = 24
PARTICIPANTS = 40
MAX_DELAY_S = 0.35  # random time between "ready" and SIGKILL
READY_TIMEOUT_S = 30.0


def _seed() -> int:
    env = os.environ.get("HEADCOUNT_CRASH_SEED")
    return int(env) if env else random.SystemRandom().randrange(2**32)


def _read_available(fd: int, timeout: float) -> bytes | None:
    """Bytes readable from ``fd`` within ``timeout`` s; b"" on EOF, None if none came."""
    ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
    if not ready:
        return None
    return os.read(fd, 65536)


def _wait_ready(proc: subprocess.Popen[bytes], ctx: str) -> bytes:
    """Read the worker's stdout until its "ready" line; return what followed it."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while b"\n" not in buf:
        chunk = _read_available(fd, deadline - time.monotonic())
        if chunk is None:
            proc.kill()
            pytest.fail(f"{ctx}: worker not ready after {READY_TIMEOUT_S} s")
        if chunk == b"":
            proc.wait()
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"{ctx}: worker exited ({proc.returncode}) before ready:\n{err}")
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    assert line == b"ready", f"{ctx}: unexpected first line {line!r}"
    return rest


def _run_and_kill(data: Path, rng: random.Random, ctx: str) -> list[str]:
    """Start a worker, SIGKILL it after a random delay; the scan ids it acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(data), EVENT, str(rng.randrange(2**32)), "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out = _wait_ready(proc, ctx)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        # Keep draining stdout while waiting so the worker never blocks on a full pipe.
        kill_at = time.monotonic() + rng.uniform(0.0, MAX_DELAY_S)
        while (remaining := kill_at - time.monotonic()) > 0:
            chunk = _read_available(fd, remaining)
            if chunk == b"":
                break
            out += chunk or b""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        out += proc.stdout.read()
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"{ctx}: worker ended by itself with {proc.returncode} before the kill:\n{err}"
    )
    *complete, _partial = out.split(b"\n")  # a line without its newline was not acknowledged
    ids = [line.decode() for line in complete]
    for sid in ids:
        assert str(uuid.UUID(sid)) == sid, f"{ctx}: garbled line {sid!r}"
    return ids


def _check_reopens(data: Path, acked: set[str], ctx: str) -> int:
    """Reopen after a kill: lock free, log intact, every acknowledged scan present."""
    with Replica.open(data) as replica:  # writable: fails if the dead worker's lock survived
        with pytest.raises(StoreError) as locked:
            Replica.open(data)
        assert locked.value.code == "locked", ctx
        with StoreFile.open_read_only(data / DB_FILE) as on_disk:
            integrity = on_disk.integrity_check()
        assert integrity == "ok", f"{ctx}: SQLite integrity_check: {integrity}"
        vv = replica.version_vector(EVENT)
        assert replica.store.log_count(EVENT) == sum(vv.values()), (
            f"{ctx}: log has gaps or duplicates: {vv} vs {replica.store.log_count(EVENT)} rows"
        )
        ev = replica.event(EVENT)
        missing = acked - set(ev.doc.scans)
        assert not missing, (
            f"{ctx}: {len(missing)} of {len(acked)} acknowledged scans lost after SIGKILL, "
            f"e.g. {sorted(missing)[:3]}"
        )
        records = [a.participant for a in ev.attendance_list()]
        assert len(records) == len(set(records)), f"{ctx}: duplicate attendance records"
        assert len(records) <= PARTICIPANTS, f"{ctx}: {len(records)} attendance records"
        for record in ev.attendance_list():
            for scan in (record.check_in, record.check_out):
                assert scan is None or scan.participant == record.participant, ctx
        status = replica.status(EVENT)
        assert status.scans == len(ev.doc.scans), ctx
        assert status.checked_in <= status.participants == PARTICIPANTS, ctx
        return len(ev.doc.scans)


def test_sigkill_never_loses_an_acknowledged_scan(tmp_path: Path) -> None:
    seed = _seed()
    rng = random.Random(seed)
    data = tmp_path / "gate"
    Replica.init(data, name="gate")
    Replica.init(tmp_path / "admin", role=Role.ADMIN, name="admin")
    with Replica.open(data) as replica:
        with Replica.open(tmp_path / "admin") as admin:
            admin.create_event(EVENT, "crash test")  # the gate receives it
            sync(admin, replica)
        replica.import_participants(
            EVENT,
            [
                {"id": f"P{i:03d}", "name": f"Guest {i}", "qr_token": f"QR-{i:03d}"}
                for i in range(PARTICIPANTS)
            ],
        )
    acked: set[str] = set()
    scans = 0
    for run in range(KILLS):
        ctx = f"seed={seed} (HEADCOUNT_CRASH_SEED), run {run + 1}/{KILLS}"
        with reported_seed(seed, f"HEADCOUNT_CRASH_SEED={seed}, run {run + 1}/{KILLS}"):
            # (also an error that is no assertion: the store failing to reopen)
            acked.update(_run_and_kill(data, rng, ctx))
            scans = _check_reopens(data, acked, ctx)
    # Sanity: the workers really scanned (a kill loop that never scans proves nothing).
    assert len(acked) >= KILLS, f"seed={seed}: only {len(acked)} scans acknowledged"
    assert scans >= len(acked), f"seed={seed}"
