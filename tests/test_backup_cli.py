"""``headcount backup …`` through :func:`headcount.cli.main.main`: create, list,
verify, restore, keygen and rejoin, their ``--json`` output and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headcount.backup import payload

from .support.cli import EVENT, PEOPLE_CSV, Cli, create_on_admin


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADCOUNT_DATA_DIR", str(tmp_path / "default-device"))
    for name in ("HEADCOUNT_BACKUP_PASSPHRASE", "HEADCOUNT_BACKUP_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def gate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    cli = Cli(capsys, tmp_path / "gate")
    cli.ok("init", "--name", "north")
    create_on_admin(cli, EVENT)
    (tmp_path / "people.csv").write_text(PEOPLE_CSV, "utf-8")
    cli.ok("participants", "import", EVENT, str(tmp_path / "people.csv"))
    cli.ok("checkin", EVENT, "Q1")
    return cli


def created(cli: Cli, *argv: str) -> dict:
    res = cli("backup", "create", *argv, as_json=True)
    assert res.code == 0, res
    return res.json


def test_create_list_verify_restore_round_trip(gate: Cli, tmp_path: Path) -> None:
    res = gate("backup", "create")
    assert res.code == 0, res
    assert "created full backup" in res.out
    assert "copying the store" in res.err  # progress on stderr
    assert "private key unencrypted" in res.err
    before = gate.state()
    gate.ok("checkin", EVENT, "Q2")
    [row] = gate.ok_json("backup", "list")
    assert row["kind"] == "full" and row["state"] == "not verified" and row["events"] == [EVENT]
    assert (tmp_path / "gate" / "backups" / row["id"]).is_dir()
    [row] = gate.ok_json("backup", "list", "--verify")
    assert row["state"] == "ok"
    assert gate.ok_json("backup", "verify", row["id"])["content_checked"] is True
    done = gate.ok_json("backup", "restore", row["id"])
    assert done["rejoin"] == [EVENT] and done["pre_restore"]
    assert gate.state() == before
    assert gate.fail_json("checkin", EVENT, "Q3")["code"] == "rejoin_pending"
    gate.ok_json("backup", "rejoin", EVENT, "--force")
    gate.ok("checkin", EVENT, "Q3")


def test_incremental_chain_and_list_text(gate: Cli, tmp_path: Path) -> None:
    dest = str(tmp_path / "dest")
    full = created(gate, "--dest", dest)
    gate.ok("checkin", EVENT, "Q2")
    inc = created(gate, "--dest", dest, "--kind", "incremental")
    assert inc["parent"] == full["id"]
    res = gate("backup", "list", "--dest", dest)
    assert res.code == 0 and f"(on {full['id']})" in res.out and "incremental" in res.out
    verified = gate.ok_json("backup", "verify", inc["id"], "--dest", dest)
    assert verified["chain"] == [full["id"], inc["id"]]


def test_encrypted_backup_with_a_passphrase_file(
    gate: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("s3cret phrase\n")
    secret.chmod(0o600)  # a passphrase file other users may read is refused
    made = created(gate, "--passphrase-file", str(secret))
    assert made["encrypted"]
    without = gate.ok_json("backup", "verify", made["id"])
    assert without["content_checked"] is False and "only" in without["state"]
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope")
    wrong.chmod(0o600)
    err = gate.fail_json("backup", "restore", made["id"], "--passphrase-file", str(wrong))
    assert err["code"] == "wrong_key"
    assert gate.fail_json("backup", "restore", made["id"])["code"] == "key_required"
    monkeypatch.setenv("HEADCOUNT_BACKUP_PASSPHRASE", "s3cret phrase")
    assert gate.ok_json("backup", "verify", made["id"])["content_checked"] is True


def test_keygen_and_key_file(gate: Cli, tmp_path: Path) -> None:
    key = tmp_path / "backup.key"
    gate.ok_json("backup", "keygen", str(key))
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) == 64
    assert gate.fail_json("backup", "keygen", str(key))["code"] == "invalid_input"
    made = created(gate, "--key-file", str(key), "--kind", "attendance")
    assert gate.ok_json("backup", "verify", made["id"], "--key-file", str(key))["state"] == "ok"
    both = gate.fail_json(
        "backup", "verify", made["id"], "--key-file", str(key), "--passphrase-file", str(key)
    )
    assert both["code"] == "invalid_input"


def test_errors_are_json_with_codes_and_leave_the_device(gate: Cli, tmp_path: Path) -> None:
    made = created(gate, "--dest", str(tmp_path / "dest"))
    path = tmp_path / "dest" / made["id"] / payload.STORE_PAYLOAD
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    before = gate.state()
    err = gate.fail_json("backup", "restore", made["id"], "--dest", str(tmp_path / "dest"))
    assert err["code"] == "backup_corrupt"
    assert gate.state() == before
    [row] = gate.ok_json("backup", "list", "--dest", str(tmp_path / "dest"), "--verify")
    assert row["state"].startswith("backup_corrupt")
    res = gate("backup", "verify", made["id"], "--dest", str(tmp_path / "dest"))
    last = res.err.splitlines()[-1]  # after the progress lines
    assert res.code == 1 and last.startswith("headcount: error: ") and "SHA-256" in last
    assert (
        gate.fail_json(
            "backup", "create", "--kind", "incremental", "--dest", str(tmp_path / "empty")
        )["code"]
        == "needs_full_backup"
    )
    assert gate.fail_json("backup", "rejoin", EVENT, "--force")["code"] == "not_pending"


def test_restore_by_path_into_a_destroyed_data_dir(gate: Cli, tmp_path: Path) -> None:
    import shutil

    made = created(gate, "--dest", str(tmp_path / "usb"))
    before = gate.state()
    shutil.rmtree(tmp_path / "gate")
    done = gate.ok_json("backup", "restore", made["path"])
    assert done["rebuilt"] is True
    assert gate.state() == before


def test_backup_dir_from_the_environment(
    gate: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADCOUNT_BACKUP_DIR", str(tmp_path / "envdest"))
    made = created(gate, "--kind", "participants")
    assert Path(made["path"]).parent == tmp_path / "envdest"
    assert [r["id"] for r in gate.ok_json("backup", "list")] == [made["id"]]


@pytest.mark.parametrize("sub", ["create", "list", "verify", "restore", "keygen", "rejoin"])
def test_every_subcommand_has_help(gate: Cli, sub: str) -> None:
    res = gate.raw("backup", sub, "--help")
    assert res.code == 0 and "usage: headcount backup" in res.out


def test_manifest_is_json_a_person_can_read(gate: Cli, tmp_path: Path) -> None:
    made = created(gate, "--dest", str(tmp_path / "d"))
    raw = json.loads((Path(made["path"]) / "manifest.json").read_text())
    assert raw["format"] == "1.0" and raw["kind"] == "full" and raw["signature"]
    assert {f["name"] for f in raw["files"]} == {payload.STORE_PAYLOAD, payload.IDENTITY_PAYLOAD}
    assert all(len(f["sha256"]) == 64 for f in raw["files"])
