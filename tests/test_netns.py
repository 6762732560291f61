"""The project's own private-network-namespace helper (headcount.service.netns)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from headcount.service import netns


def test_command_wraps_and_is_plain_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(netns.INSIDE_ENV, raising=False)
    wrapped = netns.command(["echo", "hi"])
    assert wrapped[:3] == ["unshare", "--net", "--"] and wrapped[-2:] == ["echo", "hi"]
    monkeypatch.setenv(netns.INSIDE_ENV, "1")
    assert netns.command(["echo", "hi"]) == ["echo", "hi"]
    with pytest.raises(ValueError):
        netns.command([])


def test_a_command_inside_sees_only_loopback_with_a_multicast_route() -> None:
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"no private network namespace here: {reason}")
    code = (
        "import json, os, socket, subprocess; print(json.dumps(["
        "[n for _, n in socket.if_nameindex()], os.environ.get('NETNS_RUN_INSIDE'),"
        "subprocess.run(['ip', 'route', 'show', 'table', 'all'], capture_output=True,"
        " text=True).stdout]))"
    )
    out = subprocess.run(
        netns.command([sys.executable, "-c", code]),
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    interfaces, inside, routes = json.loads(out.stdout)
    assert interfaces == ["lo"]
    assert inside == "1"
    assert "224.0.0.0/4 dev lo" in routes


def test_the_module_runs_a_command_and_reports_its_exit_code() -> None:
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"no private network namespace here: {reason}")
    run = [sys.executable, "-m", "headcount.service.netns"]
    assert subprocess.run([*run, "--check"], capture_output=True, timeout=30).returncode == 0
    done = subprocess.run([*run, sys.executable, "-c", "raise SystemExit(7)"], timeout=30)
    assert done.returncode == 7
