"""The command line in-process: :class:`Cli` runs ``headcount ... --data-dir
DIR`` through :func:`headcount.cli.main.main` and captures what it printed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headcount import Replica
from headcount.cli.main import main

from .sync import sync

EVENT = "e1"
PEOPLE_CSV = (
    "id,name,qr_token,email\nP1,Ann,Q1,ann@example.org\nP2,Bob,Q2,\nP3,Cy,Q3,cy@example.org\n"
)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """Runs ``headcount ... --data-dir DIR`` in-process and captures its output."""

    def __init__(self, capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
        self.capsys = capsys
        self.data_dir = data_dir

    def raw(self, *argv: str) -> Result:
        self.capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors, --help, --version
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def __call__(self, *argv: str, as_json: bool = False) -> Result:
        extra = ["--json"] if as_json else []
        return self.raw(*argv, "--data-dir", str(self.data_dir), *extra)

    def ok(self, *argv: str) -> str:
        res = self(*argv)
        assert res.code == 0, res
        assert res.err == "", res
        return res.out

    def ok_json(self, *argv: str) -> Any:
        res = self(*argv, as_json=True)
        assert res.code == 0, res
        assert res.err == "", res
        return res.json

    def fail(self, *argv: str, code: int = 1) -> str:
        """Run a command that must fail; returns its stderr (the message)."""
        res = self(*argv)
        assert res.code == code, res
        assert res.out == "", res
        if code == 1:
            assert res.err.startswith("headcount: error: "), res
            assert "Traceback" not in res.err, res
        return res.err

    def fail_json(self, *argv: str) -> dict[str, str]:
        """A failing command under ``--json``: the error object on stdout."""
        res = self(*argv, as_json=True)
        assert res.code == 1, res
        assert res.err == "", res
        error = res.json["error"]
        assert set(error) == {"code", "message"}, error
        assert error["code"] and error["message"], error
        return error

    def state(self) -> dict[str, Any]:
        """Everything the device holds, read through the API (read-only, no lock)."""
        with Replica.open(self.data_dir, read_only=True) as r:
            out: dict[str, Any] = {"device": r.device_id, "role": r.role.value}
            for e in r.events():
                ev = r.event(e)
                out[e] = {
                    "status": r.status(e).to_dict(),
                    "participants": [p.to_dict() for p in ev.participants(include_deleted=True)],
                    "scans": sorted(ev.doc.scans),
                    "conflicts": [c.to_dict() for c in ev.conflicts()],
                    "config": ev.config(),
                    "resolutions": ev.resolutions(),
                }
            return out


def creator(device: Cli) -> Cli:
    """The admin device that creates events for ``device``, next to its data
    directory (initialised on first use)."""
    admin = Cli(device.capsys, device.data_dir.parent / f"{device.data_dir.name}-creator")
    if not admin.data_dir.exists():
        admin.ok("init", "--role", "admin", "--name", "creator")
    return admin


def create_on_admin(device: Cli, *argv: str) -> None:
    """``event create *argv`` on :func:`creator` (only an admin or relay may
    create an event), then sync every event it holds to ``device``: a gate
    receives its events, it never creates them."""
    admin = creator(device)
    admin.ok("event", "create", *argv)
    with Replica.open(admin.data_dir) as src, Replica.open(device.data_dir) as dst:
        sync(src, dst)
