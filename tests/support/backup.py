"""Helpers of the backup and archive tests: devices, event contents, reads to compare,
file hashes."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from headcount import Replica, Role
from headcount.backup import Secret, manifest
from headcount.core.identity import load_identity

from .clock import T0, FakeClock
from .replicas import introduce
from .sync import sync

EV = "ev"
FAST_SCRYPT = 2**10  # tests only: the cost is recorded in the manifest and honoured
PASSPHRASE = Secret(passphrase=b"correct horse battery staple")
KEY = Secret(key=bytes(range(32)))
SECRETS = {"plain": None, "passphrase": PASSPHRASE, "keyfile": KEY}


@dataclass
class Content:
    """What a generated event holds (see :func:`contents`)."""

    people: list[dict[str, Any]]
    scans: list[tuple[str, int, int]]  # (kind, participant index, minutes before T0)
    config: dict[str, Any] = field(default_factory=dict)
    conflict: tuple[int, str, str] | None = None  # participant, value at A, value at B
    deleted: list[int] = field(default_factory=list)


_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=12)


@st.composite
def contents(draw: st.DrawFn) -> Content:
    """Participants with random fields, check-ins and check-outs, configuration,
    deletions, and (sometimes) a concurrent edit of a critical field."""
    n = draw(st.integers(1, 6))
    people = []
    for i in range(n):
        row: dict[str, Any] = {"id": f"P{i}", "name": draw(_text), "qr_token": f"Q{i}"}
        for name in ("email", "phone", "allergies"):
            if draw(st.booleans()):
                row[name] = draw(_text)
        people.append(row)
    scans = draw(
        st.lists(
            st.tuples(st.sampled_from(["in", "out"]), st.integers(0, n - 1), st.integers(0, 600)),
            max_size=12,
        )
    )
    config = draw(
        st.dictionaries(st.sampled_from(["venue", "doors", "capacity"]), _text | st.integers(0, 9))
    )
    conflict = None
    if draw(st.booleans()):
        conflict = (draw(st.integers(0, n - 1)), draw(_text), draw(_text))
    deleted = draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True))
    return Content(people, scans, config, conflict, deleted)


def build(root: Path, content: Content) -> tuple[Replica, Replica]:
    """A gate ``a`` holding ``content`` (participants and scans written at
    ``a``; the event, its configuration, deletions and a concurrent critical
    edit written at an admin ``b``, which alone may create an event and set
    its configuration, and synced to ``a``). Both stay open."""
    clock = FakeClock(T0)
    a, b = open_pair(root, clock)
    b.create_event(EV, "Conference")
    for key, value in content.config.items():
        b.set_config(EV, key, value)
    sync(b, a)
    a.import_participants(EV, content.people)
    for n, (kind, who, minutes) in enumerate(content.scans):
        scan = a.check_in if kind == "in" else a.check_out
        scan(EV, f"P{who}", at_ms=T0 - minutes * 60_000, scan_id=_uuid(n), gate=f"g{n % 2}")
    sync(a, b)
    if content.conflict is not None:
        who, at_a, at_b = content.conflict
        clock.advance(1000)
        a.upsert_participant(EV, f"P{who}", {"allergies": at_a})
        b.upsert_participant(EV, f"P{who}", {"allergies": at_b})
    for who in content.deleted:
        b.delete_participant(EV, f"P{who}")
    sync(b, a)
    return a, b


def open_device(path: Path, role: Role, clock: FakeClock) -> Replica:
    """A new device at ``path`` (named after it), open on ``clock``."""
    Replica.init(path, role=role, name=path.name)
    return Replica.open(path, wall_clock=clock)


def open_pair(root: Path, clock: FakeClock) -> tuple[Replica, Replica]:
    """A new gate ``root/a`` and admin ``root/b``, open on ``clock``, trusting each other."""
    a, b = open_device(root / "a", Role.GATE, clock), open_device(root / "b", Role.ADMIN, clock)
    introduce(a, b)
    return a, b


def _uuid(n: int) -> str:
    return str(uuid.UUID(int=n + 1, version=4))


def reads(replica: Replica) -> dict[str, Any]:
    """Everything a user can read of the event, to compare before and after."""
    ev = replica.event(EV)
    return {
        "participants": [p.to_dict() for p in ev.participants(include_deleted=True)],
        "attendance": [a.to_dict() for a in ev.attendance_list()],
        "conflicts": [c.to_dict() for c in ev.conflicts()],
        "config": ev.config(),
        "vv": replica.version_vector(EV),
        "scans": sorted(ev.doc.scans),
    }


def tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (and the set of directories).

    SQLite's shared-memory index (``-shm``) and an empty ``-wal`` are left
    out: any reader of a WAL database creates them (``headcount status``
    does too), and neither holds data.
    """
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.name.endswith("-shm") or (path.name.endswith("-wal") and not path.stat().st_size):
            continue
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def resign(backup_dir: Path, data_dir: Path, change: dict[str, Any]) -> None:
    """Rewrite a backup's manifest with ``change`` applied, validly signed by its device
    (what a buggy or future headcount would write)."""
    raw = json.loads((backup_dir / manifest.MANIFEST_FILE).read_text())
    body = {k: v for k, v in raw.items() if k not in ("signature", "public_key")}
    body.update(change)
    signed = manifest.sign(body, load_identity(data_dir))
    (backup_dir / manifest.MANIFEST_FILE).write_bytes(signed.to_json())


def edit_manifest(backup_dir: Path, change: dict[str, Any]) -> None:
    """Change manifest fields without re-signing (what a tamperer does)."""
    path = backup_dir / manifest.MANIFEST_FILE
    raw = json.loads(path.read_text())
    raw.update(change)
    path.write_text(json.dumps(raw))
