"""The command line: every command's happy path, ``--json`` output, and bad
input for every command (exit 1 with a clear message, or 2 for usage errors;
nothing written).

Most tests call :func:`headcount.cli.main.main` in-process; a few run the real
``headcount`` console script to check its exit codes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from headcount import Replica, Role, __version__

from .support.cli import EVENT, PEOPLE_CSV, Cli, create_on_admin, creator
from .support.sync import sync


def _device(capsys: pytest.CaptureFixture[str], path: Path, role: str, name: str) -> Cli:
    cli = Cli(capsys, path)
    cli.ok("init", "--role", role, "--name", name)
    if role == "admin":
        cli.ok("event", "create", EVENT, "--name", "Conf 2026")
    else:
        create_on_admin(cli, EVENT, "--name", "Conf 2026")
    csv = path.parent / f"{name}-people.csv"
    csv.write_text(PEOPLE_CSV, "utf-8")
    cli.ok("participants", "import", EVENT, str(csv))
    return cli


@pytest.fixture(autouse=True)
def default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default data directory into tmp_path, so that a command that
    ignores --data-dir cannot touch the real home directory."""
    path = tmp_path / "default-device"
    monkeypatch.setenv("HEADCOUNT_DATA_DIR", str(path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("HEADCOUNT_FUTURE_TOLERANCE", raising=False)
    return path


@pytest.fixture
def gate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    """A gate device with event e1 and participants P1..P3 (QR tokens Q1..Q3)."""
    return _device(capsys, tmp_path / "gate", "gate", "north")


@pytest.fixture
def admin(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    return _device(capsys, tmp_path / "admin", "admin", "hq")


@pytest.fixture
def conflicted(
    admin: Cli, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> tuple[Cli, Cli, dict[str, Any]]:
    """An admin and a gate that both hold one concurrent-edit conflict on P1's allergies."""
    gate_dir = tmp_path / "gate2"
    Replica.init(gate_dir, role=Role.GATE, name="south")
    with Replica.open(admin.data_dir) as a, Replica.open(gate_dir) as g:
        sync(a, g)
        a.upsert_participant(EVENT, "P1", {"allergies": "shellfish"})
        g.upsert_participant(EVENT, "P1", {"allergies": "peanuts"})
        sync(a, g)
        sync(g, a)
        (conflict,) = a.conflicts(EVENT)
        assert [c.id for c in g.conflicts(EVENT)] == [conflict.id]
    return admin, Cli(capsys, gate_dir), conflict.to_dict()


def _write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data, "utf-8")
    else:
        path.write_bytes(data)
    return path


# -- init --------------------------------------------------------------------


def test_init_creates_a_device(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cli = Cli(capsys, tmp_path / "dev")
    data = cli.ok_json("init", "--role", "admin", "--name", "hq")
    assert data["role"] == "admin"
    assert data["name"] == "hq"
    assert data["data_dir"] == str(tmp_path / "dev")
    assert len(data["device_id"]) == 20
    assert (tmp_path / "dev" / "device.key").exists()
    status = cli.ok_json("status")
    assert status == {
        "device": {"device_id": data["device_id"], "role": "admin", "name": "hq"},
        "events": [],
        "peers": None,  # no gate daemon running
    }
    text = Cli(capsys, tmp_path / "dev2").ok("init")
    assert text.startswith("created device ") and "(gate)" in text


def test_init_twice_fails_and_keeps_the_identity(gate: Cli) -> None:
    before = gate.state()
    err = gate.fail("init", "--name", "other")
    assert "already holds a device" in err
    assert gate.fail_json("init")["code"] == "exists"
    assert gate.state() == before


def test_init_on_a_file_fails_cleanly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = _write(tmp_path / "not-a-dir", "hello")
    cli = Cli(capsys, target)
    err = cli.fail("init")
    assert str(target) in err
    assert cli.fail_json("init")["code"]
    assert target.read_text() == "hello"


def test_corrupt_store_fails_cleanly(gate: Cli) -> None:
    (gate.data_dir / "headcount.db").write_bytes(b"not a database" * 1000)
    for argv in (["status"], ["checkin", EVENT, "P1"], ["event", "list"]):
        assert "cannot open store" in gate.fail(*argv)
        assert gate.fail_json(*argv)["code"] == "store_error"


def test_init_bad_role_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cli = Cli(capsys, tmp_path / "dev")
    err = cli.fail("init", "--role", "king", code=2)
    assert "invalid choice" in err
    assert not (tmp_path / "dev").exists()


# -- event -------------------------------------------------------------------


def test_event_create_and_list(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cli = Cli(capsys, tmp_path / "dev")
    cli.ok("init", "--role", "admin")
    assert cli.ok("event", "list").strip() == "(no events)"
    assert cli.ok_json("event", "list") == []
    assert cli.ok("event", "create", "conf26", "--name", "Conf 2026").strip() == (
        "created event conf26"
    )
    assert cli.ok_json("event", "create", "meetup") == {"event": "meetup", "name": "meetup"}
    assert cli.ok("event", "list").splitlines() == ["conf26\tConf 2026", "meetup\tmeetup"]
    assert cli.ok_json("event", "list") == [
        {"event": "conf26", "name": "Conf 2026"},
        {"event": "meetup", "name": "meetup"},
    ]


def test_event_create_by_gate_is_denied(gate: Cli) -> None:
    before = gate.state()
    err = gate.fail("event", "create", "e2", "--name", "Gate's own")
    assert "only an admin or relay device may create an event" in err
    assert gate.fail_json("event", "create", "e2")["code"] == "permission_denied"
    assert gate.state() == before
    # The gate holds the event an admin created, received by sync.
    assert [e["event"] for e in gate.ok_json("event", "list")] == [EVENT]


def test_event_create_with_schema_file(admin: Cli, tmp_path: Path) -> None:
    schema = _write(tmp_path / "fields.toml", '[participant]\ncompany = "lww"\n')
    admin.ok("event", "create", "e2", "--schema", str(schema))
    admin.ok("participants", "set", "e2", "P1", "company=ACME", "name=Ann")
    assert admin.ok_json("participants", "show", "e2", "P1")["company"] == "ACME"
    # The field exists only in e2.
    err = admin.fail("participants", "set", EVENT, "P1", "company=ACME")
    assert "unknown participant field 'company'" in err


def test_event_create_duplicate_fails(admin: Cli) -> None:
    before = admin.state()
    assert "already exists" in admin.fail("event", "create", EVENT, "--name", "again")
    assert admin.fail_json("event", "create", EVENT)["code"] == "exists"
    assert admin.state() == before


@pytest.mark.parametrize("bad_id", ["", " padded", "tab\there", "x" * 129, "nl\n"])
def test_event_create_bad_id_fails(admin: Cli, bad_id: str) -> None:
    before = admin.state()
    err = admin.fail("event", "create", bad_id)
    assert "event id" in err
    assert admin.fail_json("event", "create", bad_id)["code"] == "invalid_input"
    assert admin.state() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[participant\nname = 'lww'\n", "not valid TOML"),
        (b"\xff\xfe[participant]\n", "not valid TOML"),
        ('[participant]\ncompany = "sometimes"\n', "unknown policy"),
        ('[participants]\ncompany = "lww"\n', "unknown schema section [participants]"),
        ('[attendance]\ncheck_in = "union"\n', "check_in may be earliest, latest or lww"),
        ('[participant]\nCompany = "lww"\n', "field names are lower-case"),
        ('[participant]\nid = "lww"\n', "'id' is reserved"),
        ('participant = "lww"\n', "must be a table"),
    ],
    ids=[
        "not-toml",
        "not-utf8",
        "unknown-policy",
        "unknown-section",
        "bad-attendance-policy",
        "bad-field-name",
        "reserved-field",
        "section-not-table",
    ],
)
def test_event_create_bad_schema_fails(
    admin: Cli, tmp_path: Path, content: str | bytes, message: str
) -> None:
    schema = _write(tmp_path / "schema.toml", content)
    before = admin.state()
    err = admin.fail("event", "create", "e2", "--schema", str(schema))
    assert message in err
    assert admin.fail_json("event", "create", "e2", "--schema", str(schema))["code"] == (
        "invalid_input"
    )
    assert admin.state() == before
    assert [e["event"] for e in admin.ok_json("event", "list")] == [EVENT]


def test_event_create_missing_schema_file_fails(admin: Cli, tmp_path: Path) -> None:
    before = admin.state()
    err = admin.fail("event", "create", "e2", "--schema", str(tmp_path / "nope.toml"))
    assert "schema file not found" in err
    assert admin.state() == before


# -- participants ------------------------------------------------------------


def test_participants_import_list_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cli = Cli(capsys, tmp_path / "dev")
    cli.ok("init", "--role", "admin")
    cli.ok("event", "create", EVENT)
    assert cli.ok("participants", "list", EVENT).strip() == "(no participants)"
    csv = _write(tmp_path / "people.csv", PEOPLE_CSV)
    report = cli.ok_json("participants", "import", EVENT, str(csv))
    assert report == {"rows": 3, "changed": 3, "entries": 1}
    # Importing the same file again changes nothing and writes nothing.
    before = cli.state()
    text = cli.ok("participants", "import", EVENT, str(csv))
    assert text.strip() == "imported 3 rows: 0 participants created or changed"
    assert cli.state() == before
    assert cli.ok("participants", "list", EVENT).splitlines() == ["P1\tAnn", "P2\tBob", "P3\tCy"]
    people = cli.ok_json("participants", "list", EVENT)
    assert people[0] == {"id": "P1", "name": "Ann", "qr_token": "Q1", "email": "ann@example.org"}
    assert "email" not in people[1]  # empty cells are left unset
    shown = cli.ok_json("participants", "show", EVENT, "P2")
    assert shown == {
        "id": "P2",
        "name": "Bob",
        "qr_token": "Q2",
        "attendance": {"participant": "P2", "check_in": None, "check_out": None, "scans": []},
    }
    assert json.loads(cli.ok("participants", "show", EVENT, "P2")) == shown


def test_participants_import_utf8_bom_and_quoted_newline(gate: Cli, tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "bom.csv",
        '\ufeffid,name,medical_notes\nP4,Dee,"line one\nline two"\nP5,Émile,\n'.encode(),
    )
    assert gate.ok_json("participants", "import", EVENT, str(csv))["changed"] == 2
    assert gate.ok_json("participants", "show", EVENT, "P4")["medical_notes"] == (
        "line one\nline two"
    )
    assert gate.ok_json("participants", "show", EVENT, "P5")["name"] == "Émile"


BAD_CSVS = [
    pytest.param(b"", ["empty file"], id="empty"),
    pytest.param(b"name,email\nAnn,a@x\n", [":1:", "no 'id' column"], id="no-id-column"),
    pytest.param(
        b"id,name,shoe_size\nP9,Zed,44\n",
        [":1:", "unknown column 'shoe_size'"],
        id="unknown-column",
    ),
    pytest.param(
        b"id,name,id\nP9,Zed,P9\n", [":1:", "column 'id' appears twice"], id="duplicate-column"
    ),
    pytest.param(
        b"id,name\nP9,Zed\nP10\nP11,Ann\n",
        [":3:", "expected 2 columns, found 1"],
        id="too-few-cells",
    ),
    pytest.param(
        b"id,name\nP9,Zed\nP10,Ann\nP11,Bob,extra\n",
        [":4:", "expected 2 columns, found 3"],
        id="too-many-cells",
    ),
    pytest.param(
        b'id,name\nP9,"Zed\nZedson"\nP10,Ann,extra\n',
        [":4:", "expected 2 columns, found 3"],
        id="line-number-after-quoted-newline",
    ),
    pytest.param(
        b"id,name\nP9,Zed\nP10,Ann\nP9,Zed again\n",
        [":4:", "'P9' already on line 2"],
        id="duplicate-id",
    ),
    pytest.param(b"id,name\nP9,Zed\nP10,Ann\xe9\n", ["not UTF-8"], id="latin1-bytes"),
    pytest.param(b"\xff\xfei\x00d\x00\n\x00", ["not UTF-8"], id="utf16"),
    pytest.param(b"id,name\nP9,Zed\n,Nobody\n", [":3:", "participant id"], id="empty-id"),
    pytest.param(b"id,name\nP9,Zed\nP\x0110,Ann\n", [":3:", "control characters"], id="control-id"),
    pytest.param(
        b"id,name\nP9,Zed\nP10," + b"x" * 9000 + b"\n", [":3:", "larger than"], id="oversize-value"
    ),
    pytest.param(b'id,name\nP9,"Zed\n', ["malformed CSV"], id="unclosed-quote"),
]


@pytest.mark.parametrize(("content", "fragments"), BAD_CSVS)
def test_participants_import_bad_csv_writes_nothing(
    gate: Cli, tmp_path: Path, content: bytes, fragments: list[str]
) -> None:
    csv = _write(tmp_path / "bad.csv", content)
    before = gate.state()
    err = gate.fail("participants", "import", EVENT, str(csv))
    assert str(csv) in err, err
    for fragment in fragments:
        assert fragment in err, err
    error = gate.fail_json("participants", "import", EVENT, str(csv))
    assert error["code"] == "invalid_input"
    assert fragments[0] in error["message"]
    assert gate.state() == before


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_participants_import_unreadable_path_fails(gate: Cli, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "people.csv"
    if kind == "directory":
        path.mkdir()
    before = gate.state()
    err = gate.fail("participants", "import", EVENT, str(path))
    assert ("no such file" if kind == "missing" else "is a directory") in err
    assert gate.fail_json("participants", "import", EVENT, str(path))["code"] == "invalid_input"
    assert gate.state() == before


def test_participants_set_creates_and_updates(gate: Cli) -> None:
    res = gate.ok_json("participants", "set", EVENT, "P9", "name=Zed", "qr_token=Q9")
    assert res == {"changed": True, "participant": {"id": "P9", "name": "Zed", "qr_token": "Q9"}}
    assert gate.ok("participants", "set", EVENT, "P9", "name=Zed").strip() == "no change"
    assert gate.ok("participants", "set", EVENT, "P9", "email=z=z@x").strip() == "updated"
    assert gate.ok_json("participants", "show", EVENT, "P9")["email"] == "z=z@x"
    gate.ok("checkin", EVENT, "Q9")  # the new QR token works at once


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["name"], "expected FIELD=VALUE"),
        (["=Zed"], "expected FIELD=VALUE"),
        (["name=Zed", "shoe_size=44"], "unknown participant field 'shoe_size'"),
        (["deleted=true"], "unknown participant field 'deleted'"),
    ],
    ids=["no-equals", "no-field", "unknown-field", "reserved-field"],
)
def test_participants_set_bad_fields_fail(gate: Cli, fields: list[str], message: str) -> None:
    before = gate.state()
    assert message in gate.fail("participants", "set", EVENT, "P1", *fields)
    assert gate.fail_json("participants", "set", EVENT, "P1", *fields)["code"] == "invalid_input"
    assert gate.state() == before


def test_participants_set_without_fields_is_a_usage_error(gate: Cli) -> None:
    before = gate.state()
    gate.fail("participants", "set", EVENT, "P1", code=2)
    assert gate.state() == before


def test_participants_show_unknown_fails(gate: Cli) -> None:
    assert "no participant 'P404'" in gate.fail("participants", "show", EVENT, "P404")
    assert gate.fail_json("participants", "show", EVENT, "P404")["code"] == "not_found"


def test_participants_delete_by_admin(admin: Cli) -> None:
    admin.ok("checkin", EVENT, "P2")
    assert admin.ok("participants", "delete", EVENT, "P2").strip() == "deleted P2"
    assert [p["id"] for p in admin.ok_json("participants", "list", EVENT)] == ["P1", "P3"]
    listed = admin.ok_json("participants", "list", EVENT, "--deleted")
    assert [(p["id"], p.get("deleted", False)) for p in listed] == [
        ("P1", False),
        ("P2", True),
        ("P3", False),
    ]
    assert "P2\tBob\t(deleted)" in admin.ok("participants", "list", EVENT, "--deleted")
    shown = admin.ok_json("participants", "show", EVENT, "P2")
    assert shown["deleted"] is True
    assert len(shown["attendance"]["scans"]) == 1  # scans are kept
    before = admin.state()
    # A deleted participant can be neither scanned, nor edited, nor deleted again.
    assert admin.fail_json("checkin", EVENT, "Q2")["code"] == "not_found"
    assert admin.fail_json("participants", "set", EVENT, "P2", "name=B")["code"] == "not_found"
    assert admin.fail_json("participants", "delete", EVENT, "P2")["code"] == "not_found"
    assert admin.state() == before
    assert admin.ok_json("participants", "delete", EVENT, "P3") == {"deleted": "P3"}


def test_participants_delete_by_gate_is_denied(gate: Cli) -> None:
    before = gate.state()
    assert "only an admin device may delete" in gate.fail("participants", "delete", EVENT, "P1")
    assert gate.fail_json("participants", "delete", EVENT, "P1")["code"] == "permission_denied"
    assert gate.state() == before


def test_participants_delete_unknown_fails(admin: Cli) -> None:
    before = admin.state()
    assert "no participant 'P404'" in admin.fail("participants", "delete", EVENT, "P404")
    assert admin.state() == before


# -- checkin / checkout / attendance -----------------------------------------


def test_checkin_and_checkout(gate: Cli) -> None:
    text = gate.ok("checkin", EVENT, "Q1")
    assert text.startswith("recorded: check-in of P1 (scan ")
    res = gate.ok_json("checkin", EVENT, "P2", "--gate", "east", "--method", "manual")
    assert res["recorded"] is True
    scan = res["scan"]
    assert (scan["participant"], scan["kind"], scan["gate"], scan["method"]) == (
        "P2",
        "in",
        "east",
        "manual",
    )
    assert res["attendance"]["check_in"] == scan
    assert res["attendance"]["check_out"] is None
    out = gate.ok_json("checkout", EVENT, "Q2", "--method", "ble")
    assert (out["scan"]["kind"], out["scan"]["gate"]) == ("out", "north")  # default: device name
    assert out["attendance"]["check_in"] == scan
    assert out["attendance"]["check_out"] == out["scan"]
    status = gate.ok_json("status", EVENT)["events"][0]
    assert (status["checked_in"], status["checked_out"], status["scans"]) == (2, 1, 3)


def test_checkin_repeat_with_same_key_is_applied_once(gate: Cli) -> None:
    key = str(uuid.uuid4())
    first = gate.ok_json("checkin", EVENT, "Q1", "--key", key)
    assert first["recorded"] is True
    assert first["scan"]["id"] == key
    before = gate.state()
    text = gate.ok("checkin", EVENT, "P1", "--key", key.upper())
    assert text.strip() == f"already recorded: check-in of P1 (scan {key})"
    again = gate.ok_json("checkin", EVENT, "Q1", "--key", key)
    assert again["recorded"] is False
    assert again["scan"] == first["scan"]
    assert gate.state() == before


def test_checkin_key_reused_for_another_scan_fails(gate: Cli) -> None:
    key = str(uuid.uuid4())
    gate.ok("checkin", EVENT, "P1", "--key", key)
    before = gate.state()
    assert "already used for a different scan" in gate.fail("checkin", EVENT, "P2", "--key", key)
    assert gate.fail_json("checkout", EVENT, "P1", "--key", key)["code"] == "invalid_input"
    assert gate.state() == before


def test_checkin_at_explicit_times(gate: Cli) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    earlier = now - timedelta(hours=2)
    res = gate.ok_json("checkin", EVENT, "P1", "--at", earlier.isoformat().replace("+00:00", "Z"))
    assert res["scan"]["ts_ms"] == int(earlier.timestamp() * 1000)
    tokyo = (now - timedelta(hours=1)).astimezone(timezone(timedelta(hours=9)))
    res = gate.ok_json("checkin", EVENT, "P2", "--at", tokyo.isoformat())
    assert res["scan"]["ts_ms"] == int(tokyo.timestamp() * 1000)
    ms = int(now.timestamp() * 1000) - 5000
    res = gate.ok_json("checkout", EVENT, "P1", "--at", str(ms))
    assert res["scan"]["ts_ms"] == ms
    assert res["attendance"]["check_in"]["ts_ms"] == int(earlier.timestamp() * 1000)


def _future_iso() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    ("command", "args", "code", "message"),
    [
        ("checkin", ["nobody"], "not_found", "no participant or QR token 'nobody'"),
        ("checkout", ["Q404"], "not_found", "no participant or QR token 'Q404'"),
        ("checkin", ["P1", "--key", "not-a-uuid"], "invalid_input", "is not a UUID"),
        (
            "checkin",
            ["P1", "--key", "8753fed4-e7f3-11f1-bef9-02fc00000001"],
            "invalid_input",
            "not a UUID v4",
        ),
        ("checkout", ["P1", "--at", "FUTURE"], "future_timestamp", "in the future"),
        ("checkin", ["P1", "--at", "99999999999999"], "future_timestamp", "in the future"),
        ("checkin", ["P1", "--at", "yesterday"], "invalid_input", "expected ISO 8601"),
        ("checkin", ["P1", "--at", "-5"], "invalid_input", "expected ISO 8601"),
        ("checkin", ["P1", "--at", "2026-13-01T00:00:00Z"], "invalid_input", "expected ISO 8601"),
        ("checkin", ["P1", "--at", "2026-05-01T09:30:00"], "invalid_input", "give a time zone"),
        ("checkin", ["P1", "--at", "2026-05-01"], "invalid_input", "give a time zone"),
        ("checkin", ["P1", "--at", "0"], "invalid_input", "not a positive integer"),
        ("checkin", ["P1", "--gate", " "], "invalid_input", "gate must be"),
        ("checkin", ["P1", "--gate", "g" * 65], "invalid_input", "gate must be"),
    ],
    ids=[
        "unknown-participant",
        "unknown-qr",
        "key-not-uuid",
        "key-not-v4",
        "future-iso",
        "future-ms",
        "at-garbage",
        "at-negative",
        "at-bad-month",
        "at-no-timezone",
        "at-date-only",
        "at-zero",
        "gate-blank",
        "gate-too-long",
    ],
)
def test_scan_bad_input_fails(
    gate: Cli, command: str, args: list[str], code: str, message: str
) -> None:
    args = [_future_iso() if a == "FUTURE" else a for a in args]
    gate.ok("checkin", EVENT, "P3")
    before = gate.state()
    assert message in gate.fail(command, EVENT, *args)
    error = gate.fail_json(command, EVENT, *args)
    assert error["code"] == code
    assert message in error["message"]
    assert gate.state() == before


def test_future_tolerance_option(gate: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    ahead = datetime.now(UTC) + timedelta(minutes=30)
    at = ahead.isoformat()
    assert gate.fail_json("checkin", EVENT, "P1", "--at", at)["code"] == "future_timestamp"
    res = gate.ok_json("checkin", EVENT, "P1", "--at", at, "--future-tolerance", "3600")
    assert res["scan"]["ts_ms"] == int(ahead.timestamp() * 1000)
    monkeypatch.setenv("HEADCOUNT_FUTURE_TOLERANCE", "3600")
    assert gate.ok_json("checkout", EVENT, "P1", "--at", at)["recorded"] is True


@pytest.mark.parametrize(
    ("value", "code"), [("-1", 1), ("86401", 1), ("nan", 1), ("inf", 1), ("soon", 2)]
)
def test_future_tolerance_bad_values(gate: Cli, value: str, code: int) -> None:
    before = gate.state()
    err = gate.fail("checkin", EVENT, "P1", "--future-tolerance", value, code=code)
    assert "future-tolerance" in err
    assert gate.state() == before


def test_future_tolerance_bad_environment(gate: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    before = gate.state()
    for value in ["soon", "-5", "1e9"]:
        monkeypatch.setenv("HEADCOUNT_FUTURE_TOLERANCE", value)
        assert "HEADCOUNT_FUTURE_TOLERANCE" in gate.fail("checkin", EVENT, "P1")
        assert gate.fail_json("status")["code"] == "invalid_input"
    assert gate.state() == before


@pytest.mark.parametrize("command", ["checkin", "checkout"])
def test_scan_bad_method_is_a_usage_error(gate: Cli, command: str) -> None:
    before = gate.state()
    err = gate.fail(command, EVENT, "P1", "--method", "telepathy", code=2)
    assert "invalid choice: 'telepathy'" in err
    assert gate.state() == before


def test_attendance_has_one_record_per_participant(gate: Cli) -> None:
    assert gate.ok("attendance", EVENT).strip() == "(no attendance)"
    for who in ["Q1", "P1", "Q2", "Q1"]:
        gate.ok("checkin", EVENT, who)
    gate.ok("checkout", EVENT, "P1")
    records = gate.ok_json("attendance", EVENT)
    assert [r["participant"] for r in records] == ["P1", "P2"]
    p1 = records[0]
    assert len(p1["scans"]) == 4
    assert p1["check_in"]["id"] == p1["scans"][0]  # earliest check-in wins
    assert p1["check_out"]["kind"] == "out"
    lines = gate.ok("attendance", EVENT).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("P1\tin=") and lines[0].endswith("scans=4")
    assert "\tout=-\t" in lines[1]


# -- config ------------------------------------------------------------------


def test_config_set_and_show(admin: Cli) -> None:
    assert admin.ok("config", "set", EVENT, "capacity", "500").strip() == "capacity = 500"
    cfg = admin.ok_json("config", "set", EVENT, "greeting", "hello there")
    assert cfg == {"capacity": 500, "greeting": "hello there", "name": "Conf 2026"}
    admin.ok("config", "set", EVENT, "doors", '{"open": "09:00", "gates": [1, 2]}')
    shown = admin.ok_json("config", "show", EVENT)
    assert shown["doors"] == {"open": "09:00", "gates": [1, 2]}
    assert shown["capacity"] == 500
    text = admin.ok("config", "show", EVENT)
    assert 'greeting = "hello there"' in text.splitlines()


def test_config_set_by_gate_is_denied(gate: Cli) -> None:
    before = gate.state()
    err = gate.fail("config", "set", EVENT, "capacity", "500")
    assert "only an admin or relay device may change an event's configuration" in err
    assert gate.fail_json("config", "set", EVENT, "capacity", "500")["code"] == (
        "permission_denied"
    )
    assert gate.state() == before
    assert gate.ok_json("config", "show", EVENT) == {"name": "Conf 2026"}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("bad key", "1", "invalid configuration key"),
        ("_schema", "{}", "invalid configuration key"),
        ("k" * 129, "1", "invalid configuration key"),
        ("big", "x" * 9000, "larger than"),
        ("nan", "NaN", "not JSON data"),
    ],
    ids=["space", "schema", "too-long", "oversize-value", "nan"],
)
def test_config_set_bad_input_fails(admin: Cli, key: str, value: str, message: str) -> None:
    admin.ok("config", "set", EVENT, "capacity", "500")
    before = admin.state()
    assert message in admin.fail("config", "set", EVENT, key, value)
    assert admin.fail_json("config", "set", EVENT, key, value)["code"] == "invalid_input"
    assert admin.state() == before


# -- status ------------------------------------------------------------------


def test_status(gate: Cli) -> None:
    create_on_admin(gate, "e2")
    gate.ok("checkin", EVENT, "Q1")
    data = gate.ok_json("status")
    assert data["device"]["role"] == "gate"
    assert data["device"]["name"] == "north"
    assert [e["event"] for e in data["events"]] == [EVENT, "e2"]
    e1 = data["events"][0]
    assert {k: v for k, v in e1.items() if k != "version_vector"} == {
        "event": EVENT,
        "participants": 3,
        "checked_in": 1,
        "checked_out": 0,
        "scans": 1,
        "open_conflicts": 0,
    }
    # The admin's entry creating the event, the gate's import and check-in.
    admin = creator(gate).ok_json("status")["device"]["device_id"]
    assert e1["version_vector"] == {admin: 1, data["device"]["device_id"]: 2}
    one = gate.ok_json("status", EVENT)
    assert one["events"] == [e1]
    text = gate.ok("status", EVENT).splitlines()
    assert text[0] == f"device {data['device']['device_id']} (gate, north)"
    assert text[1].startswith("e1: 3 participants, 1 checked in, 0 checked out, 1 scans")


# -- conflicts ---------------------------------------------------------------


def test_conflicts_list_and_resolve_by_choosing(conflicted: tuple[Cli, Cli, dict]) -> None:
    admin, gate, conflict = conflicted
    listed = admin.ok_json("conflicts", "list", EVENT)
    assert listed == [conflict]
    assert gate.ok_json("conflicts", "list", EVENT) == [conflict]  # same id everywhere
    assert conflict["kind"] == "concurrent_edit"
    assert (conflict["participant"], conflict["field"]) == ("P1", "allergies")
    assert sorted(c["value"] for c in conflict["candidates"]) == ["peanuts", "shellfish"]
    text = admin.ok("conflicts", "list", EVENT)
    assert text.startswith(f"{conflict['id']}  concurrent_edit  participant=P1")
    for cand in conflict["candidates"]:
        assert f"--choose {cand['dot']}" in text
    assert admin.ok_json("participants", "show", EVENT, "P1")["conflicts"] == ["allergies"]
    assert admin.ok_json("status", EVENT)["events"][0]["open_conflicts"] == 1
    peanuts = next(c for c in conflict["candidates"] if c["value"] == "peanuts")
    res = admin.ok_json("conflicts", "resolve", EVENT, conflict["id"], "--choose", peanuts["dot"])
    assert res == {"resolved": conflict["id"]}
    assert admin.ok("conflicts", "list", EVENT).strip() == "(no open conflicts)"
    shown = admin.ok_json("participants", "show", EVENT, "P1")
    assert shown["allergies"] == "peanuts"
    assert "conflicts" not in shown
    (done,) = admin.ok_json("conflicts", "list", EVENT, "--resolved")
    assert done["value"] == "peanuts"
    assert done["conflict"]["id"] == conflict["id"]


def test_conflicts_resolve_with_a_new_value(conflicted: tuple[Cli, Cli, dict]) -> None:
    admin, _gate, conflict = conflicted
    text = admin.ok("conflicts", "resolve", EVENT, conflict["id"], "--value", "peanuts, shellfish")
    assert text.strip() == f"resolved {conflict['id']}"
    assert admin.ok_json("participants", "show", EVENT, "P1")["allergies"] == "peanuts, shellfish"
    assert admin.ok_json("conflicts", "list", EVENT) == []


def test_conflicts_list_empty(gate: Cli) -> None:
    assert gate.ok("conflicts", "list", EVENT).strip() == "(no open conflicts)"
    assert gate.ok_json("conflicts", "list", EVENT) == []
    assert gate.ok("conflicts", "list", EVENT, "--resolved").strip() == "(none)"


def test_conflicts_resolve_errors(conflicted: tuple[Cli, Cli, dict]) -> None:
    admin, gate, conflict = conflicted
    cid = conflict["id"]
    dot = conflict["candidates"][0]["dot"]
    admin_before, gate_before = admin.state(), gate.state()

    assert "no open conflict 'ffffffffffffffff'" in admin.fail(
        "conflicts", "resolve", EVENT, "ffffffffffffffff", "--choose", dot
    )
    error = admin.fail_json("conflicts", "resolve", EVENT, "ffffffffffffffff", "--value", "x")
    assert error["code"] == "not_found"

    assert "has no candidate 'nobody:1'" in admin.fail(
        "conflicts", "resolve", EVENT, cid, "--choose", "nobody:1"
    )
    error = admin.fail_json("conflicts", "resolve", EVENT, cid, "--choose", "nobody:1")
    assert error["code"] == "not_found"

    assert "only an admin device may resolve" in gate.fail(
        "conflicts", "resolve", EVENT, cid, "--choose", dot
    )
    error = gate.fail_json("conflicts", "resolve", EVENT, cid, "--value", "none")
    assert error["code"] == "permission_denied"

    # Exactly one way of resolving must be given (argparse).
    assert "one of the arguments" in admin.fail("conflicts", "resolve", EVENT, cid, code=2)
    assert "not allowed with" in admin.fail(
        "conflicts", "resolve", EVENT, cid, "--choose", dot, "--value", "x", code=2
    )
    assert admin.state() == admin_before
    assert gate.state() == gate_before


@pytest.mark.parametrize("flag", ["--delete", "--restore"])
def test_conflicts_resolve_delete_flags_refused_for_a_concurrent_edit(
    conflicted: tuple[Cli, Cli, dict], flag: str
) -> None:
    """--delete/--restore are for modified-deleted conflicts; on a concurrent
    edit they must not write the word "delete" into the participant's allergies."""
    admin, _gate, conflict = conflicted
    before = admin.state()
    error = admin.fail_json("conflicts", "resolve", EVENT, conflict["id"], flag)
    assert error["code"] == "invalid_input"
    assert admin.state() == before


# -- demo --------------------------------------------------------------------


def test_demo_small(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cli = Cli(capsys, tmp_path / "unused")
    res = cli.raw("demo", "--in-process", "--participants", "6", "--seed", "3")
    assert res.code == 0, res
    assert "OK: every device converged" in res.out
    assert "lost 0" in res.out
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize(
    ("args", "code"), [(["--participants", "1"], 1), (["--participants", "many"], 2)]
)
def test_demo_bad_participants(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], code: int
) -> None:
    res = Cli(capsys, tmp_path).raw("demo", *args)
    assert res.code == code, res
    if code == 1:
        assert res.err.strip() == "headcount: error: --participants must be at least 2"


# -- every command: no device, unknown event ---------------------------------

DEVICE_COMMANDS = [
    ["event", "create", "e9"],
    ["event", "list"],
    ["participants", "import", EVENT, "people.csv"],
    ["participants", "list", EVENT],
    ["participants", "show", EVENT, "P1"],
    ["participants", "set", EVENT, "P1", "name=Ann"],
    ["participants", "delete", EVENT, "P1"],
    ["checkin", EVENT, "P1"],
    ["checkout", EVENT, "P1"],
    ["attendance", EVENT],
    ["config", "set", EVENT, "capacity", "5"],
    ["config", "show", EVENT],
    ["status"],
    ["status", EVENT],
    ["conflicts", "list", EVENT],
    ["conflicts", "resolve", EVENT, "0123456789abcdef", "--value", "x"],
]


def _cmd_id(argv: list[str]) -> str:
    return "-".join(a for a in argv[:2] if a != EVENT)


@pytest.mark.parametrize("argv", DEVICE_COMMANDS, ids=_cmd_id)
def test_every_command_without_a_device_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    missing = tmp_path / "nowhere"
    _write(tmp_path / "people.csv", PEOPLE_CSV)
    argv = [str(tmp_path / a) if a == "people.csv" else a for a in argv]
    cli = Cli(capsys, missing)
    err = cli.fail(*argv)
    assert f"no device in {missing}" in err
    assert "headcount init" in err
    assert cli.fail_json(*argv)["code"] == "not_initialised"
    assert not missing.exists()


EVENT_COMMANDS = [argv for argv in DEVICE_COMMANDS if EVENT in argv]


@pytest.mark.parametrize("argv", EVENT_COMMANDS, ids=_cmd_id)
def test_every_event_command_with_an_unknown_event_fails(
    admin: Cli, tmp_path: Path, argv: list[str]
) -> None:
    _write(tmp_path / "people.csv", PEOPLE_CSV)
    argv = [str(tmp_path / a) if a == "people.csv" else "nope" if a == EVENT else a for a in argv]
    before = admin.state()
    err = admin.fail(*argv)
    assert "no event 'nope'" in err
    assert admin.fail_json(*argv)["code"] == "not_found"
    assert admin.state() == before


def test_writes_refused_while_another_process_holds_the_device(gate: Cli) -> None:
    before = gate.state()
    with Replica.open(gate.data_dir):
        assert "in use by another headcount process" in gate.fail("checkin", EVENT, "P1")
        assert gate.fail_json("event", "create", "e2")["code"] == "locked"
        # Reads need no lock.
        assert len(gate.ok_json("participants", "list", EVENT)) == 3
        gate.ok("status")
    assert gate.state() == before
    gate.ok("checkin", EVENT, "P1")  # and the lock is free again


# -- options and entry points ------------------------------------------------


def test_data_dir_from_the_environment(
    capsys: pytest.CaptureFixture[str], default_dir: Path
) -> None:
    cli = Cli(capsys, default_dir)
    res = cli.raw("init", "--name", "envgate")
    assert res.code == 0, res
    assert (default_dir / "device.key").exists()
    res = cli.raw("status", "--json")
    assert res.code == 0, res
    assert res.json["device"]["name"] == "envgate"


def test_global_options_before_the_subcommand(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, default_dir: Path
) -> None:
    """`headcount --data-dir DIR --json COMMAND` must behave like the options
    given after the command (the README: "--data-dir on every command")."""
    cli = Cli(capsys, tmp_path / "dev")
    res = cli.raw("--data-dir", str(tmp_path / "dev"), "--json", "init", "--name", "first")
    assert res.code == 0, res
    assert json.loads(res.out)["data_dir"] == str(tmp_path / "dev")
    assert (tmp_path / "dev" / "device.key").exists()
    assert not default_dir.exists(), "the command wrote to the default data directory"
    res = cli.raw("--json", "--data-dir", str(tmp_path / "dev"), "status")
    assert res.code == 0, res
    assert res.json["device"]["name"] == "first"


def test_usage_without_a_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cli = Cli(capsys, tmp_path)
    res = cli.raw()
    assert res.code == 2
    assert "COMMAND" in res.out
    for group in ["event", "participants", "config", "conflicts"]:
        res = cli.raw(group)
        assert res.code == 2, res
        assert "usage:" in res.err
    assert cli.raw("frobnicate").code == 2
    res = cli.raw("--version")
    assert (res.code, res.out.strip()) == (0, f"headcount {__version__}")


def _console_script() -> str:
    script = Path(sys.executable).parent / "headcount"
    assert script.exists(), f"console script not installed next to {sys.executable}"
    return str(script)


def test_console_script_exit_codes(tmp_path: Path) -> None:
    env = {**os.environ, "HEADCOUNT_DATA_DIR": str(tmp_path / "default-device")}
    dev = str(tmp_path / "dev")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_console_script(), *argv], capture_output=True, text=True, env=env, timeout=60
        )

    res = run("status", "--data-dir", dev)
    assert res.returncode == 1, res
    assert res.stderr.startswith("headcount: error: no device in"), res
    res = run("init", "--name", "cli", "--role", "admin", "--data-dir", dev)
    assert res.returncode == 0, res
    res = run("event", "create", EVENT, "--data-dir", dev, "--json")
    assert res.returncode == 0, res
    assert json.loads(res.stdout) == {"event": EVENT, "name": EVENT}
    res = run("checkin", EVENT, "P1", "--data-dir", dev, "--json")
    assert res.returncode == 1, res
    assert json.loads(res.stdout)["error"]["code"] == "not_found"
    assert res.stderr == ""
    res = run("checkin", "--data-dir", dev)
    assert res.returncode == 2, res
    assert "the following arguments are required" in res.stderr
    res = run("--version")
    # the installed distribution's version is read from the package (one copy)
    assert (res.returncode, res.stdout.strip()) == (0, f"headcount {version('headcount')}")
