"""Local files stay private: the data directory (0700), the store and its
write-ahead log (0600), and files holding secrets (refused when other users
may read them). Every refusal exits non-zero with a clear message and
writes nothing."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from headcount import InputError, Replica, Role
from headcount.backup.schedule import read_secret
from headcount.core.files import create_private_dir, read_secret_file
from headcount.relay.tokens import create_secret_file, load_secret_file
from headcount.store.dbfile import StoreFile, copy_store
from headcount.store.sqlite import DB_FILE

from .support.cli import EVENT, PEOPLE_CSV, Cli

STORE_FILES = (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``path`` with its mode and size."""
    return {str(p.relative_to(path)): (mode(p), p.stat().st_size) for p in sorted(path.rglob("*"))}


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most users have: new files readable by everyone."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def admin_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    cli = Cli(capsys, tmp_path / "admin")
    cli.ok("init", "--name", "hq", "--role", "admin")
    cli.ok("event", "create", EVENT)
    (tmp_path / "people.csv").write_text(PEOPLE_CSV, "utf-8")
    cli.ok("participants", "import", EVENT, str(tmp_path / "people.csv"))
    return cli


# -- the data directory ---------------------------------------------------------------


def test_init_makes_a_private_directory_and_store(tmp_path: Path) -> None:
    data = tmp_path / "new" / "gate"
    Replica.init(data, role=Role.ADMIN)
    with Replica.open(data) as r:
        r.create_event(EVENT)
        assert mode(data) == 0o700
        for name in STORE_FILES:  # all three exist while the store is open (WAL)
            assert mode(data / name) == 0o600, name
    assert {mode(p) for p in data.iterdir()} == {0o600}


def test_init_tightens_an_empty_directory_open_to_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "gate"
    data.mkdir(mode=0o755)
    with caplog.at_level(logging.WARNING):
        Replica.init(data)
    assert mode(data) == 0o700
    assert f"{data} was open to other users (mode 0755): tightened to 0700" in caplog.text


def test_the_command_says_so_on_stderr(tmp_path: Path) -> None:
    data = tmp_path / "gate"
    data.mkdir(mode=0o750)
    done = subprocess.run(
        [sys.executable, "-m", "headcount", "--data-dir", str(data), "init"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        f"headcount: warning: {data} was open to other users (mode 0750): tightened to 0700\n"
    )
    assert mode(data) == 0o700


@pytest.mark.parametrize("as_json", [False, True])
def test_init_refuses_a_shared_directory_that_holds_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, as_json: bool
) -> None:
    data = tmp_path / "shared"
    data.mkdir(mode=0o755)
    (data / "notes.txt").write_text("team notes")
    before = listing(data)
    cli = Cli(capsys, data)
    if as_json:
        error = cli.fail_json("init")
        assert error["code"] == "insecure_dir"
        message = error["message"]
    else:
        message = cli.fail("init")
    assert "open to other users (mode 0755) and holds files (notes.txt)" in message
    assert (mode(data), listing(data)) == (0o755, before)


def test_init_refuses_a_directory_of_another_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "theirs"
    data.mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: data.stat().st_uid + 1)
    with pytest.raises(InputError, match="belongs to another user") as info:
        Replica.init(data)
    assert info.value.code == "insecure_dir"
    assert listing(data) == {}


def test_a_private_directory_is_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "mine"
    data.mkdir(mode=0o700)
    (data / "README").write_text("my own notes")
    create_private_dir(data)
    assert mode(data) == 0o700 and [p.name for p in data.iterdir()] == ["README"]


# -- the store ----------------------------------------------------------------------------


def test_a_store_opened_with_wider_modes_is_tightened(
    admin_cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    data = admin_cli.data_dir
    with Replica.open(data) as writer:  # the -wal and -shm files exist while it is open
        for name in STORE_FILES:
            os.chmod(data / name, 0o644)
        os.chmod(data / DB_FILE, 0o664)
        with caplog.at_level(logging.WARNING), Replica.open(data, read_only=True) as reader:
            assert reader.event(EVENT).participant("P1").fields["name"] == "Ann"
        assert {name: mode(data / name) for name in STORE_FILES} == dict.fromkeys(
            STORE_FILES, 0o600
        )
        assert writer.check_in(EVENT, "Q1").recorded
    warned = sorted(r.getMessage() for r in caplog.records if "tightened" in r.getMessage())
    assert warned == [
        f"store file {data / name} was accessible by other users (mode {old:04o}): "
        "tightened to 0600"
        for name, old in sorted(
            [(DB_FILE, 0o664), (f"{DB_FILE}-shm", 0o644), (f"{DB_FILE}-wal", 0o644)]
        )
    ]


def test_a_read_only_open_and_a_copy_are_private_too(admin_cli: Cli, tmp_path: Path) -> None:
    store = admin_cli.data_dir / DB_FILE
    os.chmod(store, 0o644)
    with StoreFile.open_read_only(store) as f:
        assert f.events() == [EVENT]
    assert mode(store) == 0o600
    copy = tmp_path / "copy.db"
    copy_store(store, copy)
    assert mode(copy) == 0o600


def test_a_backup_restore_leaves_a_private_store(
    admin_cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    made = admin_cli("backup", "create", as_json=True)  # warns: the key is unencrypted
    assert made.code == 0, made
    with caplog.at_level(logging.WARNING):
        admin_cli.ok_json("backup", "restore", made.json["id"])
    assert "tightened" not in caplog.text  # the staged store was private from the start
    data = admin_cli.data_dir
    assert {mode(p) for p in data.iterdir() if p.name.startswith(DB_FILE)} == {0o600}


# -- files holding secrets -----------------------------------------------------------------


@pytest.mark.parametrize("option", ["--passphrase-file", "--key-file"])
@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604])
def test_a_secret_file_other_users_may_read_is_refused(
    admin_cli: Cli, tmp_path: Path, option: str, file_mode: int
) -> None:
    secret = tmp_path / "secret"
    if option == "--key-file":
        admin_cli.ok_json("backup", "keygen", str(secret))
    else:
        secret.write_text("correct horse battery staple\n")
    os.chmod(secret, file_mode)
    dest = tmp_path / "backups"
    before = admin_cli.state()
    error = admin_cli.fail_json("backup", "create", "--dest", str(dest), option, str(secret))
    assert error["code"] == "insecure_secret_file"
    assert (
        f"{secret} is accessible by other users (mode {file_mode:04o}); chmod 600 it"
        in (error["message"])
    )
    message = admin_cli.fail("backup", "create", "--dest", str(dest), option, str(secret))
    assert "chmod 600" in message
    assert not dest.exists() or listing(dest) == {}
    assert admin_cli.state() == before
    os.chmod(secret, 0o600)
    made = admin_cli.ok_json("backup", "create", "--dest", str(dest), option, str(secret))
    assert made["encrypted"]


def test_a_scheduled_backup_refuses_a_readable_passphrase_file(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("s3cret\n")
    with pytest.raises(InputError, match="accessible by other users") as info:
        read_secret({"passphrase_file": str(secret)}, "backup")
    assert info.value.code == "insecure_secret_file"
    os.chmod(secret, 0o600)
    assert read_secret({"passphrase_file": str(secret)}, "backup") is not None


def test_the_token_secret_uses_the_same_check(tmp_path: Path) -> None:
    path = tmp_path / "relay.secret"
    secret = create_secret_file(path)
    assert load_secret_file(path) == secret
    os.chmod(path, 0o640)
    with pytest.raises(InputError, match="accessible by other users") as info:
        load_secret_file(path)
    assert info.value.code == "insecure_secret_file"


def test_read_secret_file_checks_the_file_it_reads(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"secret")
    os.chmod(real, 0o600)
    link = tmp_path / "link"
    link.symlink_to(real)  # a symlink's own mode (0777) is not the file's
    assert read_secret_file(link, "the test secret") == b"secret"
    with pytest.raises(InputError, match=r"cannot read the test secret .*missing"):
        read_secret_file(tmp_path / "missing", "the test secret")
