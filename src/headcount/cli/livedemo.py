"""``headcount demo``: several gate processes syncing live on this machine.

1. An organisation and N devices (an admin and gates) are created in a
   temporary directory and enrolled; the admin creates the event and imports
   participants.
2. Every device runs as its own ``headcount run`` process (mutual TLS on
   127.0.0.1). As root the whole demo runs inside a private network namespace
   (``netns-run``) and the gates find each other with mDNS; otherwise they use
   static peers (each gate knows the admin and the previous gate).
3. Traffic: check-ins at every gate (some guests at two gates, some scans
   re-sent), one gate goes offline and keeps recording on its own store, two
   gates edit the same guest's allergies while apart (a critical field:
   a manual-merge conflict), then the gate comes back.
4. A live table shows every gate's scans, entries and lag; at the end every
   device's state is compared: identical, no scan lost, none counted twice.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from headcount.core.errors import HeadcountError
from headcount.core.identity import Role
from headcount.pki.device import install_certificate
from headcount.pki.org import enroll, init_org
from headcount.replica.replica import Replica
from headcount.service import control, netns
from headcount.service.daemon import CONTROL_SOCKET

EVENT = "demo-2026"
Say = Callable[[str], None]


class Gate:
    """One device directory and its daemon process."""

    def __init__(self, base: Path, name: str, role: Role) -> None:
        self.name = name
        self.role = role
        self.dir = base / name
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, peers: list[int], discovery: bool) -> None:
        config = self.dir / "gate.toml"
        peer_list = ", ".join(f'"127.0.0.1:{p}"' for p in peers)
        config.write_text(
            f'data_dir = "{self.dir}"\n[network]\nlisten = "127.0.0.1:0"\n'
            f"peers = [{peer_list}]\ndiscovery = {str(discovery).lower()}\n"
            "[sync]\ngossip_interval = 0.5\nbackoff_base = 0.2\nbackoff_max = 2.0\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "headcount", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "listening on" not in line:
            self.stop()
            raise HeadcountError(f"gate {self.name} did not start", code="demo_failed")
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ask(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A request to the daemon, or straight to the store when it is down
        (a gate keeps working offline)."""
        reply = control.request(self.dir / CONTROL_SOCKET, payload) if self.running else None
        if reply is not None:
            return reply
        with Replica.open(self.dir) as r:
            op = payload["op"]
            if op == "scan":
                fn = r.check_in if payload["kind"] == "in" else r.check_out
                res = fn(EVENT, payload["who"], gate=self.name, scan_id=payload.get("scan_id"))
                return {"recorded": res.recorded, "scan": res.scan.to_dict()}
            if op == "upsert":
                return {
                    "changed": r.upsert_participant(
                        EVENT, payload["participant"], payload["fields"]
                    )
                }
            ev = r.event(EVENT)
            return {
                "scans": sorted(ev.doc.scans),
                "attendance": [a.to_dict() for a in ev.attendance_list()],
                "participants": [p.to_dict() for p in ev.participants(include_deleted=True)],
                "conflicts": [c.to_dict() for c in ev.conflicts()],
                "version_vector": r.version_vector(EVENT),
            }


def _setup(base: Path, gates: int, participants: int) -> list[Gate]:
    org = init_org(base / "org", "headcount demo")
    devices = [Gate(base, "admin", Role.ADMIN)] + [
        Gate(base, f"gate-{i}", Role.GATE) for i in range(1, gates + 1)
    ]
    for g in devices:
        Replica.init(g.dir, role=g.role, name=g.name)
        with Replica.open(g.dir) as r:
            cert = enroll(org, r.identity.public_key_raw, r.device_id, g.role, ["*"])
        install_certificate(
            g.dir, cert.public_bytes(serialization.Encoding.PEM), org.certificate_pem
        )
    with Replica.open(devices[0].dir) as admin:
        admin.create_event(EVENT, "headcount live demo")
        admin.import_participants(
            EVENT,
            [
                {
                    "id": f"P{i:04d}",
                    "name": f"Guest {i}",
                    "qr_token": f"QR-{i:04d}",
                    "allergies": "none",
                }
                for i in range(participants)
            ],
        )
    return devices


def _table(devices: list[Gate], say: Say) -> bool:
    """Print one progress table; True when every device holds the same entries."""
    views = {g.name: g.ask({"op": "view", "event": EVENT}) for g in devices}
    totals = {n: sum(v["version_vector"].values()) for n, v in views.items()}
    top = max(totals.values())
    say(
        f"  {'device':<8} {'state':<8} {'scans':>6} {'checked in':>10} {'conflicts':>9} "
        f"{'entries':>8} {'lag':>5}"
    )
    for g in devices:
        v = views[g.name]
        checked = sum(1 for a in v["attendance"] if a["check_in"])
        say(
            f"  {g.name:<8} {'online' if g.running else 'OFFLINE':<8} {len(v['scans']):>6} "
            f"{checked:>10} {len(v['conflicts']):>9} {totals[g.name]:>8} "
            f"{top - totals[g.name]:>5}"
        )
    vvs = [v["version_vector"] for v in views.values()]
    return all(vv == vvs[0] for vv in vvs)


def run_live_demo(
    gates: int = 3,
    participants: int = 100,
    scans: int = 60,
    seed: int = 7,
    say: Say = print,
    timeout: float = 60.0,
) -> bool:
    """Run the demo; True if every device converged with no lost or doubled scan."""
    rng = random.Random(seed)
    discovery = netns.inside()
    base = Path(tempfile.mkdtemp(prefix="headcount-live-"))
    devices: list[Gate] = []
    try:
        say(f"1. enrolling an admin and {gates} gates; importing {participants} participants")
        devices = _setup(base, gates, participants)
        mode = (
            "mDNS discovery in a private network namespace"
            if discovery
            else "static peers on 127.0.0.1"
        )
        say(f"2. starting {len(devices)} processes (mutual TLS, {mode})")
        devices[0].start([], discovery)
        for i, g in enumerate(devices[1:], 1):
            g.start(
                [] if discovery else [devices[0].port, devices[i - 1].port][: 1 + (i > 1)],
                discovery,
            )
        _wait_for_event(devices, participants, time.monotonic() + timeout)
        issued: set[str] = set()
        gates_only = devices[1:]
        say(f"3. {scans} check-ins across the gates (some guests at two gates, some re-sent)")
        for n in range(scans):
            gate = rng.choice(gates_only)
            reply = gate.ask(
                {
                    "op": "scan",
                    "kind": "in",
                    "event": EVENT,
                    "who": f"QR-{rng.randrange(participants):04d}",
                }
            )
            issued.add(reply["scan"]["id"])
            if n % 7 == 0:  # the same operation re-sent to another gate: applied once
                other = rng.choice(gates_only)
                other.ask(
                    {
                        "op": "scan",
                        "kind": "in",
                        "event": EVENT,
                        "who": reply["scan"]["participant"],
                        "scan_id": reply["scan"]["id"],
                    }
                )
        offline = gates_only[-1]
        say(
            f"4. {offline.name} goes offline and keeps recording; two gates edit one guest's "
            "allergies while apart"
        )
        offline.stop()
        for _ in range(max(5, scans // 5)):
            reply = offline.ask(
                {
                    "op": "scan",
                    "kind": "in",
                    "event": EVENT,
                    "who": f"P{rng.randrange(participants):04d}",
                }
            )
            issued.add(reply["scan"]["id"])
        offline.ask(
            {
                "op": "upsert",
                "event": EVENT,
                "participant": "P0001",
                "fields": {"allergies": "peanuts"},
            }
        )
        gates_only[0].ask(
            {
                "op": "upsert",
                "event": EVENT,
                "participant": "P0001",
                "fields": {"allergies": "shellfish"},
            }
        )
        _table(devices, say)
        say(f"5. {offline.name} comes back online")
        offline.start([] if discovery else [devices[0].port], discovery)
        deadline = time.monotonic() + timeout
        converged = False
        while time.monotonic() < deadline:
            time.sleep(1.0)  # the live table's refresh period
            say(f"   t+{timeout - (deadline - time.monotonic()):.0f}s")
            if _table(devices, say):
                converged = True
                break
        return _verify(devices, issued, converged, say)
    finally:
        for g in devices:
            g.stop()
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_event(devices: list[Gate], participants: int, deadline: float) -> None:
    """Until every gate has received the event and its participants."""
    waiting = list(devices)
    while waiting:
        if time.monotonic() > deadline:
            names = ", ".join(g.name for g in waiting)
            raise HeadcountError(f"the event never reached {names}", code="demo_failed")
        status = control.request(waiting[0].dir / CONTROL_SOCKET, {"op": "status"}) or {}
        events = {e["event"]: e for e in status.get("events", [])}
        if events.get(EVENT, {}).get("participants") == participants:
            waiting.pop(0)
        else:
            time.sleep(0.1)  # polling another process: there is no event to await


def _verify(devices: list[Gate], issued: set[str], converged: bool, say: Say) -> bool:
    views = [g.ask({"op": "view", "event": EVENT}) for g in devices]
    same = converged and all(
        json.dumps(v, sort_keys=True) == json.dumps(views[0], sort_keys=True) for v in views
    )
    scans = set(views[0]["scans"])
    lost = issued - scans
    records = [a["participant"] for a in views[0]["attendance"]]
    doubled = len(records) - len(set(records))
    conflicts = len(views[0]["conflicts"])
    ok = same and not lost and not doubled
    say(
        f"6. verify: identical state on all {len(devices)} devices: {same}; scans issued "
        f"{len(issued)}, lost {len(lost)}; attendance records counted twice: {doubled}; "
        f"open conflicts awaiting an admin: {conflicts}"
    )
    say("OK: every device converged" if ok else "FAILED: devices disagree")
    return ok


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def maybe_reexec_in_namespace(argv: list[str], say: Say = _to_stderr) -> int | None:
    """As root, run the demo inside a private network namespace so that mDNS
    discovery cannot reach any real network; None to run here instead (and
    the reason is printed, so a fallback to static peers is never silent)."""
    if netns.inside():
        return None
    reason = netns.unavailable_reason()
    if reason is not None:
        say(f"(no private network namespace: {reason}; using static peers on 127.0.0.1)")
        return None
    return subprocess.call(netns.command([sys.executable, "-m", "headcount", *argv]))
