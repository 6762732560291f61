"""The gate daemon as real processes: TOML config, control socket, SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from headcount import InputError, Replica, Role
from headcount.pki.org import init_org
from headcount.service.daemon import load_config

from .support.devices import enrolled_dir
from .support.wait import wait_until

EV = "ev"
DEADLINE_S = 30.0


def _start(config: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "headcount", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], DEADLINE_S)
    line = proc.stdout.readline().decode() if ready else ""
    if "listening on" not in line:
        proc.kill()
        raise AssertionError(f"daemon did not start: {line!r} {proc.stderr.read().decode()}")
    return proc, int(line.rsplit(":", 1)[1])


def _cli(data: Path, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "headcount", "--data-dir", str(data), "--json", *args],
        capture_output=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode() + out.stdout.decode()
    return json.loads(out.stdout)


def test_two_gate_daemons_sync_and_stop_cleanly_on_sigterm(tmp_path):
    org = init_org(tmp_path / "org", "Example Events")
    a = enrolled_dir(tmp_path, org, "admin", Role.ADMIN)
    b = enrolled_dir(tmp_path, org, "gate", Role.GATE)
    with Replica.open(a) as r:
        r.create_event(EV, "Conf")
        r.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(5)])
    (tmp_path / "a.toml").write_text(
        f'data_dir = "{a}"\n[network]\nlisten = "127.0.0.1:0"\n[sync]\ngossip_interval = 0.5\n'
    )
    procs = []
    try:
        pa, port = _start(tmp_path / "a.toml")
        procs.append(pa)
        (tmp_path / "b.toml").write_text(
            f'data_dir = "{b}"\n[network]\nlisten = "127.0.0.1:0"\n'
            f'peers = ["127.0.0.1:{port}"]\n[sync]\ngossip_interval = 0.5\nbackoff_base = 0.1\n'
        )
        pb, _ = _start(tmp_path / "b.toml")
        procs.append(pb)
        seen: dict[str, dict] = {}

        def gate_has_event() -> dict | None:
            status = seen["gate"] = _cli(b, "status")
            ok = status["events"] and status["events"][0]["participants"] == 5
            return status if ok else None

        status = wait_until(
            gate_has_event, DEADLINE_S, lambda: f"the event reached the gate ({seen['gate']})"
        )
        assert status["peers"] and status["peers"][0]["status"] in ("synced", "pending", "sending")
        scan = _cli(b, "checkin", EV, "p2", "--gate", "north")  # through the gate's daemon
        assert scan["recorded"]

        def admin_has_scan() -> bool:
            seen["admin"] = _cli(a, "status")
            return seen["admin"]["events"][0]["scans"] == 1

        wait_until(
            admin_has_scan, DEADLINE_S, lambda: f"the scan reached the admin ({seen['admin']})"
        )
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=DEADLINE_S) == 0, proc.stderr.read().decode()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with Replica.open(b) as r:  # the lock was released and the scan is on disk
        assert scan["scan"]["id"] in r.event(EV).doc.scans
    assert not (a / "control.sock").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("[network]\nlisten = 5\n", "HOST:PORT"),
        ('[network]\npeers = "x"\n', "must be a list"),
        ("[sync]\nfanout = 0\n", "at least 1"),
        ("[sync]\ngossip_interval = true\n", "not a boolean"),
        ("[bogus]\n", "unknown configuration keys"),
        ('[network]\nlisten = "h:99999"\n', "bad address"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_config(path, tmp_path)


def test_retry_without_a_daemon_fails_clearly(tmp_path):
    Replica.init(tmp_path / "g")
    out = subprocess.run(
        [sys.executable, "-m", "headcount", "--data-dir", str(tmp_path / "g"), "retry"],
        capture_output=True,
        timeout=DEADLINE_S,
        check=False,
        env={**os.environ},
    )
    assert out.returncode == 1 and b"no gate daemon" in out.stderr


def test_the_live_demo_converges(tmp_path):
    """The README's main command, small: gate processes over TLS (in a private
    network namespace with mDNS as root, else static peers on loopback)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "headcount",
            "demo",
            "--gates",
            "2",
            "--participants",
            "8",
            "--scans",
            "6",
            "--timeout",
            "30",
        ],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    text = out.stdout.decode()
    assert out.returncode == 0, text + out.stderr.decode()
    assert "OK: every device converged" in text and "lost 0" in text
    assert "counted twice: 0" in text and "open conflicts awaiting an admin: 1" in text
