"""``headcount token …``: the secret and the bearer tokens of the HTTP API.

Registered into the main parser by :func:`register` (one line in
``headcount/cli/main.py``)::

    headcount token secret --secret-file relay.secret          # once, mode 0600
    headcount token issue --secret-file relay.secret --user p42 \\
        --role user --event e1 --hours 24
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .util import Command, Result, command_group

# The values of headcount.relay.tokens.UserRole, spelled out so that building
# the parser loads no relay code (tests/test_token_cli.py keeps them equal).
ROLES = ("user", "admin")


def register(sub: Any, cmd: Command) -> None:
    """Add the ``token`` command group with the main CLI's ``cmd`` helper."""
    group = command_group(sub, "token", "bearer tokens for the HTTP API")
    s = cmd(group, "secret", _secret, "create the token signing secret (a new 0600 file)")
    s.add_argument("--secret-file", type=Path, required=True, help="where to create it")
    s = cmd(group, "issue", _issue, "issue a token for a user")
    s.add_argument("--secret-file", type=Path, required=True, help="the signing secret (0600)")
    s.add_argument("--user", required=True, help="the user: the participant id attending")
    s.add_argument("--role", choices=ROLES, default="user", help="what the holder may write (user)")
    s.add_argument(
        "--event",
        dest="events",
        action="append",
        required=True,
        metavar="EV",
        help="an event the token grants; repeat for more; '*' for all",
    )
    s.add_argument("--hours", type=float, default=24.0, help="validity in hours (default 24)")


def _secret(args: argparse.Namespace) -> Result:
    from headcount.relay.tokens import create_secret_file

    create_secret_file(args.secret_file)
    return {"secret_file": str(args.secret_file)}, f"created {args.secret_file} (mode 0600)"


def _issue(args: argparse.Namespace) -> Result:
    from headcount.relay.tokens import TokenAuthority, load_secret_file

    authority = TokenAuthority(load_secret_file(args.secret_file))
    now = int(time.time())
    ttl = max(1, round(args.hours * 3600))
    events: list[str] | str = "*" if "*" in args.events else args.events
    token = authority.issue(args.user, args.role, events, now_s=now, ttl_s=ttl)
    expires = datetime.fromtimestamp(now + ttl, UTC).isoformat()
    data = {"token": token, "user": args.user, "role": args.role, "events": events}
    return {**data, "expires": expires}, token
