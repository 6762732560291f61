"""``headcount token secret|issue``: through the real CLI entry point."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from headcount.cli.main import main
from headcount.cli.token import ROLES
from headcount.relay.tokens import TokenAuthority, UserRole, load_secret_file


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_role_choices_are_the_token_roles() -> None:
    assert set(ROLES) == {r.value for r in UserRole}


def test_secret_then_issue_gives_a_token_the_relay_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "relay.secret"
    code, _, _ = _run(capsys, "token", "secret", "--secret-file", str(secret))
    assert code == 0
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    code, out, _ = _run(
        capsys, "--json", "token", "issue", "--secret-file", str(secret),
        "--user", "p42", "--role", "admin", "--event", "e1", "--event", "e2",
    )  # fmt: skip
    assert code == 0
    issued = json.loads(out)
    authority = TokenAuthority(load_secret_file(secret))
    claims = authority.verify(issued["token"], now_s=int(time.time()))
    assert (claims.user, claims.role, claims.events) == ("p42", UserRole.ADMIN, {"e1", "e2"})


def test_secret_refuses_to_overwrite_and_issue_needs_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "relay.secret"
    assert _run(capsys, "token", "secret", "--secret-file", str(secret))[0] == 0
    before = secret.read_bytes()
    code, _, err = _run(capsys, "token", "secret", "--secret-file", str(secret))
    assert code == 1 and "error" in err
    assert secret.read_bytes() == before
    code, _, err = _run(
        capsys, "token", "issue", "--secret-file", str(tmp_path / "missing"),
        "--user", "u", "--event", "e1",
    )  # fmt: skip
    assert code == 1 and "error" in err
    code, _, _ = _run(
        capsys, "token", "issue", "--secret-file", str(secret), "--user", "u",
        "--event", "e1", "--role", "root",
    )  # fmt: skip
    assert code == 2
