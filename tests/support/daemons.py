"""Real daemon processes (``headcount run``, ``headcount relay``) for tests:
started, asked through the control socket, stopped cleanly or killed."""

from __future__ import annotations

import json
import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from headcount.service.control import request
from headcount.service.daemon import CONTROL_SOCKET

DEADLINE_S = 60.0
LISTENING = r"listening on .*:(\d+)"  # a gate daemon's first stdout line


class Proc:
    """One ``headcount run`` or ``headcount relay`` process (stderr to a file)."""

    def __init__(self, root: Path, name: str, data: Path, argv: list[str], ready: str) -> None:
        self.name, self.data, self.argv, self.ready = name, data, argv, ready
        self.log = root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "headcount", *self.argv], stdout=subprocess.PIPE, stderr=err
            )
        assert self.proc.stdout is not None
        # selectors, not select.select: a long test run may hold descriptors past 1024
        with selectors.DefaultSelector() as waiting:
            waiting.register(self.proc.stdout, selectors.EVENT_READ)
            ready = waiting.select(DEADLINE_S)
        line = self.proc.stdout.readline().decode() if ready else ""
        found = re.search(self.ready, line)
        if found is None:
            self.proc.kill()
            raise AssertionError(f"{self.name} did not start: {line!r} {self.log.read_text()}")
        self.port = int(found.group(1))

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=DEADLINE_S)
        assert code == 0, f"{self.name} exited with {code}: {self.log.read_text()[-3000:]}"
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def ask(self, payload: dict[str, Any]) -> dict[str, Any]:
        reply = request(self.data / CONTROL_SOCKET, payload)
        assert reply is not None, f"{self.name}'s daemon is not running"
        return reply

    def cli(self, *argv: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "headcount", "--data-dir", str(self.data), "--json", *argv],
            capture_output=True,
            timeout=DEADLINE_S,
            check=False,
        )

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.startswith("{")]
