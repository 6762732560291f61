"""Compaction in real gate daemon processes: three ``headcount run`` processes
on loopback (static peers, a full mesh) compacting every second while they
record check-ins. Observed only through the public surface: the control
socket, ``headcount status --json`` and ``headcount compact --json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headcount import Replica, Role
from headcount.pki.org import init_org

from .support.daemons import DEADLINE_S, LISTENING, Proc
from .support.devices import enrolled_dir
from .support.wait import wait_until

EV = "ev"
PEOPLE = 30
POLL_DAEMONS_S = 0.1  # asking three daemons costs: not more often


class Gate(Proc):
    """One ``headcount run`` process (stderr to a file: its JSON log lines)."""

    def __init__(self, root: Path, name: str, data: Path, peers: list[int]) -> None:
        config = root / f"{name}.toml"
        peer_list = ", ".join(f'"127.0.0.1:{p}"' for p in peers)
        config.write_text(
            f'data_dir = "{data}"\n'
            f'[network]\nlisten = "127.0.0.1:0"\npeers = [{peer_list}]\n'
            "[sync]\ngossip_interval = 0.3\nbackoff_base = 0.1\nbackoff_max = 1.0\n"
            "ack_delay = 0.1\n"
            "[compaction]\ninterval = 1\n"
        )
        super().__init__(root, name, data, ["run", "--config", str(config)], LISTENING)

    def cli_json(self, *argv: str) -> dict[str, Any]:
        out = self.cli(*argv)
        assert out.returncode == 0, out.stderr.decode() + out.stdout.decode()
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def compaction_lines(self) -> list[str]:
        """The messages of the daemon's log lines about compaction runs."""
        lines = self.log_lines()
        return [x["message"] for x in lines if x.get("message", "").startswith("compaction run")]


def _converged(gates: list[Gate], scans: set[str]) -> Callable[[], bool]:
    def check() -> bool:
        views = [g.ask({"op": "view", "event": EV}) for g in gates]
        return all(set(v["scans"]) == scans for v in views) and all(
            v["version_vector"] == views[0]["version_vector"] for v in views
        )

    return check


def _fully_folded(gates: list[Gate]) -> Callable[[], list[dict[str, Any]] | None]:
    """Every daemon folded every entry every peer holds: its horizon equals
    its version vector and no row is left in its log."""

    def check() -> list[dict[str, Any]] | None:
        sizes = []
        for g in gates:
            status = g.ask({"op": "status"})
            [vv] = [e["version_vector"] for e in status["events"] if e["event"] == EV]
            [size] = [s for s in status["log"] if s["event"] == EV]
            if size["horizon"] != vv or size["log_entries"] != 0:
                return None
            sizes.append(size)
        return sizes

    return check


def _check_in(gate: Gate, who: str) -> str:
    reply = gate.ask({"op": "scan", "kind": "in", "event": EV, "who": who, "gate": gate.name})
    assert reply["recorded"]
    return reply["scan"]["id"]


def test_gate_daemons_compact_what_every_peer_holds_and_lose_nothing(tmp_path):
    org = init_org(tmp_path / "org", "Example Events")
    dirs = {
        "hq": enrolled_dir(tmp_path, org, "hq", Role.ADMIN),
        "north": enrolled_dir(tmp_path, org, "north", Role.GATE),
        "south": enrolled_dir(tmp_path, org, "south", Role.GATE),
    }
    with Replica.open(dirs["hq"]) as r:
        r.create_event(EV, "Conf")
        r.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(PEOPLE)])
    gates: list[Gate] = []
    try:
        hq = Gate(tmp_path, "hq", dirs["hq"], [])
        hq.start()
        gates.append(hq)
        north = Gate(tmp_path, "north", dirs["north"], [hq.port])
        north.start()
        gates.append(north)
        south = Gate(tmp_path, "south", dirs["south"], [hq.port, north.port])
        south.start()
        gates.append(south)

        def have_participants() -> bool:
            return all(
                [e["participants"] for e in g.ask({"op": "status"})["events"]] == [PEOPLE]
                for g in gates
            )

        wait_until(
            have_participants, DEADLINE_S, "the event on every gate", interval=POLL_DAEMONS_S
        )
        # 1. Check-ins everywhere, then convergence and a full fold on every daemon.
        scans = {_check_in(g, f"p{i}") for i, g in enumerate(gates * 4)}
        assert len(scans) == 12
        wait_until(
            _converged(gates, scans),
            DEADLINE_S,
            "every scan on every gate",
            interval=POLL_DAEMONS_S,
        )
        sizes = wait_until(
            _fully_folded(gates),
            DEADLINE_S,
            "every acknowledged entry folded everywhere",
            interval=POLL_DAEMONS_S,
        )
        assert all(s["folded"] > len(scans) for s in sizes)
        for g in gates:  # still every scan, once, after the fold
            status = g.cli_json("status")
            [ev] = status["events"]
            assert ev["scans"] == len(scans) and ev["checked_in"] == len(scans)
            assert status["jobs"]["compaction"]["runs"] >= 1
            assert status["jobs"]["compaction"]["failures"] == 0
            [log] = status["log"]
            assert log["log_entries"] == 0 and log["horizon"] == ev["version_vector"]
        assert any(
            "log entries removed" in line and " 0 log entries" not in line
            for g in gates
            for line in g.compaction_lines()
        )
        # 2. An operator's run through a daemon: nothing left to fold.
        now = north.cli_json("compact")
        assert now["run"] and now["failed"] == []
        assert [(e["event"], e["log_entries"]) for e in now["events"]] == [(EV, 0)]
        # 3. A gate restarted after the fold reopens from its snapshot and converges.
        south.stop()
        while_down = {_check_in(hq, "p20"), _check_in(north, "p21")}
        south.start()
        after = {_check_in(south, "p22"), _check_in(hq, "p23")}
        everything = scans | while_down | after
        assert len(everything) == 16
        wait_until(
            _converged(gates, everything),
            DEADLINE_S,
            "every scan on every gate after the restart",
            interval=POLL_DAEMONS_S,
        )
        wait_until(
            _fully_folded(gates), DEADLINE_S, "the new entries folded too", interval=POLL_DAEMONS_S
        )
        for g in gates:
            [ev] = g.cli_json("status", EV)["events"]
            assert ev["scans"] == ev["checked_in"] == len(everything), ev  # none lost or doubled
        for g in gates:
            g.stop()
    finally:
        for g in gates:
            g.kill()
    for name, path in dirs.items():  # on disk: the same scans, from snapshots
        with Replica.open(path, read_only=True) as r:
            assert set(r.event(EV).doc.scans) == everything, name
