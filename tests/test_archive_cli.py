"""``headcount archive``: the commands, damaged archives, dates, dry runs, and
archiving as a scheduled job."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path

import pytest

from headcount import Replica, Role
from headcount.archive import ArchivePolicy, ArchiveQuery, ArchiveSchedule, Steps, archive_now
from headcount.archive.writer import RAW_PAYLOAD, RECORDS_PAYLOAD
from headcount.cli.main import main
from headcount.service.housekeeping import Housekeeping

from .support.backup import tree_hashes
from .support.clock import FakeClock

DAY = 86_400_000
EV = "ev"


def _now() -> int:
    return time.time_ns() // 1_000_000


def _device(root: Path, events: dict[str, int]) -> Path:
    """A device holding events written ``days`` ago each (real clock)."""
    Replica.init(root / "a", role=Role.ADMIN, name="a")
    clock = FakeClock(_now())
    with Replica.open(root / "a", wall_clock=clock) as r:
        for event, days in sorted(events.items(), key=lambda e: -e[1]):  # the HLC never goes back
            clock.now = _now() - days * DAY
            r.create_event(event, event.upper())
            r.import_participants(event, [{"id": f"P{i}", "qr_token": f"Q{i}"} for i in range(3)])
            for i in range(3):
                r.check_in(event, f"Q{i}", at_ms=clock.now - i * 60_000)
    return root / "a"


def _cli(capsys, data: Path, *args: str) -> tuple[int, list[str], str]:
    code = main(["--data-dir", str(data), "--json", "archive", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_run_query_list_prune_restore_through_the_cli(tmp_path, capsys):
    data = _device(tmp_path, {"old": 120, "older": 200, "live": 3})
    code, out, err = _cli(capsys, data, "run", "--dry-run")
    assert code == 0 and {e["event"] for e in json.loads("\n".join(out))["events"]} == {
        "old",
        "older",
    }
    code, out, err = _cli(capsys, data, "run")
    report = json.loads("\n".join(out))
    assert code == 0 and sorted(a["event"] for a in report["archived"]) == ["old", "older"]
    steps = [json.loads(line)["archive_step"]["step"] for line in err.splitlines()]
    assert steps.count("removed") == 2 and "verified" in steps  # structured lines on stderr
    with Replica.open(data, read_only=True) as r:
        assert r.events() == ["live"]
    day = time.strftime("%Y-%m-%d", time.gmtime((_now() - 120 * DAY) / 1000))
    code, out, _ = _cli(capsys, data, "query", "--from", day, "--to", day, "--kind", "attendance")
    records = [json.loads(line) for line in out]
    assert code == 0 and {r["event"] for r in records} == {"old"}
    assert sorted(r["participant"] for r in records if r["type"] == "scan") == ["P0", "P1", "P2"]
    code, out, _ = _cli(capsys, data, "list")
    listed = json.loads("\n".join(out))
    assert [a["event"] for a in listed["archives"]].count("old") == 1
    assert {e["event"] for e in listed["archived_events"]} == {"old", "older"}
    code, out, _ = _cli(capsys, data, "prune", "--retention", "150d")
    assert code == 0 and json.loads("\n".join(out))["deleted"] == []  # archived just now
    code, out, _ = _cli(capsys, data, "restore", "old")
    assert code == 0 and json.loads("\n".join(out))["event"] == "old"
    with Replica.open(data, read_only=True) as r:
        assert r.events() == ["live", "old"] and r.status("old").scans == 3
    journal = [
        json.loads(line) for line in (data / "archive" / "journal.jsonl").read_text().splitlines()
    ]
    assert [j["step"] for j in journal if j["event"] == "old"][-1] == "restored"


def test_a_dry_run_changes_nothing(tmp_path, capsys):
    data = _device(tmp_path, {"old": 100})
    before = tree_hashes(data)
    code, out, _ = _cli(capsys, data, "run", "--dry-run", "--older-than", "30d")
    found = json.loads("\n".join(out))["events"]
    assert code == 0 and [e["event"] for e in found] == ["old"] and found[0]["live_bytes"] > 0
    assert tree_hashes(data) == before and not (data / "archive").exists()
    code, out, _ = _cli(capsys, data, "prune", "--dry-run", "--retention", "1s")
    assert code == 0 and tree_hashes(data) == before


@pytest.mark.parametrize(
    "args",
    [
        ["query", "--from", "2026-13-01", "--to", "2026-12-01"],
        ["query", "--from", "yesterday", "--to", "2026-12-01"],
        ["query", "--from", "2026-01-01T10:00:00", "--to", "2026-12-01"],  # no time zone
        ["query", "--to", "2026-12-01"],
        ["run", "--older-than", "90"],  # an age needs a unit
        ["run", "--older-than", "-5d"],
        ["prune", "--retention", "0d"],
    ],
)
def test_bad_dates_and_ages_are_usage_errors(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(["--data-dir", str(tmp_path), "archive", *args])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_from_after_to_is_an_error(tmp_path, capsys):
    code, out, _ = _cli(capsys, tmp_path, "query", "--from", "2026-12-02", "--to", "2026-12-01")
    assert code == 1 and json.loads(out[-1])["error"]["code"] == "invalid_input"


def _damage(path: Path, how: str) -> None:
    if how == "flipped byte":
        data = bytearray((path / RECORDS_PAYLOAD).read_bytes())
        data[len(data) // 2] ^= 0x40
        (path / RECORDS_PAYLOAD).write_bytes(bytes(data))
    elif how == "truncated":
        data = (path / RAW_PAYLOAD).read_bytes()
        (path / RAW_PAYLOAD).write_bytes(data[: len(data) // 2])
    elif how == "missing payload":
        (path / RECORDS_PAYLOAD).unlink()
    elif how == "edited manifest":
        raw = json.loads((path / "manifest.json").read_text())
        raw["last_ms"] += 1
        (path / "manifest.json").write_text(json.dumps(raw))
    elif how == "garbage manifest":
        (path / "manifest.json").write_bytes(b"\x00garbage")
    elif how == "replaced payload":  # valid gzip of other records: the checksums catch it
        size = (path / RECORDS_PAYLOAD).stat().st_size
        line = b'{"event":"bad","type":"scan","time_ms":1}\n'
        (path / RECORDS_PAYLOAD).write_bytes(gzip.compress(line * size, compresslevel=0))


@pytest.mark.parametrize(
    "how, code",
    [
        ("flipped byte", "archive_corrupt"),
        ("truncated", "archive_truncated"),
        ("missing payload", "archive_truncated"),
        ("edited manifest", "archive_tampered"),
        ("garbage manifest", "archive_corrupt"),
        ("replaced payload", "archive_corrupt"),
    ],
)
def test_a_damaged_archive_is_a_clear_error_and_the_others_are_still_read(
    tmp_path, capsys, how, code
):
    data = _device(tmp_path, {"good": 100, "bad": 100})
    with Replica.open(data) as r:
        archive_now(r, ArchivePolicy(data / "archive"), _now(), Steps(None))
    [bad] = [p for p in (data / "archive").iterdir() if "-bad-" in p.name]
    _damage(bad, how)
    query = ArchiveQuery(data / "archive", 0, _now())
    events = {r["event"] for r in query}
    assert events == {"good"} and [e.code for e in query.errors] == [code]
    rc, out, _ = _cli(capsys, data, "query", "--from", "2000-01-01", "--to", "2100-01-01")
    assert rc == 1 and json.loads(out[-1])["error"]["code"] == code
    assert {json.loads(line)["event"] for line in out[:-1]} == {"good"}
    rc, out, _ = _cli(capsys, data, "list", "--verify")
    states = {a["id"]: a["state"] for a in json.loads("\n".join(out))["archives"]}
    assert states[bad.name].startswith(code) and list(states.values()).count("ok") == 1


def test_archiving_runs_as_a_scheduled_job_and_journals_every_step(tmp_path):
    data = _device(tmp_path, {"old": 100, "live": 1, "ancient": 500})
    policy = ArchivePolicy(data / "archive", retention_s=365 * 86400.0)
    with Replica.open(data) as replica:  # archived 400 days ago: past retention now
        archive_now(replica, policy, _now() - 400 * DAY, Steps(None), events=["ancient"])

        async def main() -> dict:
            jobs = Housekeeping(replica, None, ArchiveSchedule(3600.0, policy))
            outcome = await jobs.jobs["archive"].run_once()
            return {"outcome": outcome.to_dict(), "status": jobs.status()}

        first = asyncio.run(main())
        assert first["outcome"]["ok"], first
        assert [a["event"] for a in first["outcome"]["archived"]] == ["old"]
        assert len(first["outcome"]["pruned"]) == 1
        assert replica.events() == ["live"] and "old" in replica.store.archived()
        assert first["status"]["archive"]["last"]["ok"]
    left = {p.name.split("-")[1] for p in (data / "archive").iterdir() if p.is_dir()}
    assert left == {"old"}
    journal = (data / "archive" / "journal.jsonl").read_text().splitlines()
    steps = [json.loads(line).get("step") or "job" for line in journal]
    assert steps == ["selected", "written", "verified", "removed", "pruned", "job"]
