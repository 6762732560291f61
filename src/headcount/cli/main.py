"""The ``headcount`` command line.

Every subcommand takes ``--json`` for machine-readable output and
``--data-dir`` (default: ``$HEADCOUNT_DATA_DIR`` or the platform data dir).
Exit codes: 0 success, 1 a headcount error (message on stderr, or a JSON
``{"error": {...}}`` on stdout with ``--json``), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from headcount import __version__
from headcount.core.errors import HeadcountError
from headcount.core.hlc import DEFAULT_FUTURE_TOLERANCE_MS
from headcount.core.identity import default_data_dir

from .archive import register as register_archive
from .backup import register as register_backup
from .pki import register as register_pki
from .records import register as register_records
from .revoke import register as register_revoke
from .service import register as register_service
from .sim import register as register_sim
from .token import register as register_token
from .util import TOLERANCE_ENV, Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    _show_warnings()
    try:
        result = args.handler(args)
    except HeadcountError as exc:
        return _fail(args, exc.code, exc.message)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", "interrupted")
    _emit(args, result)
    return 0


def _show_warnings() -> None:
    """Warnings the library logs (a directory or store tightened to owner
    only...) go to stderr as ``headcount: warning: ...``, unless logging is
    configured already (the daemons log structured lines; tests capture)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("headcount: warning: %(message)s"))
        root.addHandler(handler)


def _fail(args: argparse.Namespace, code: str, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        print(f"headcount: error: {message}", file=sys.stderr)
    return 1


def _emit(args: argparse.Namespace, result: Any) -> None:
    if result is None:
        return
    data, text = result
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    elif text:
        print(text)


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after the command name.

    The copy given to subcommands uses SUPPRESS defaults so that it does not
    overwrite a value given before the command. Two separate parsers are
    needed: argparse shares action objects between parents and children, and
    ``set_defaults`` would change both.
    """

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=default(None),
        help=f"device data directory (default: $HEADCOUNT_DATA_DIR or {default_data_dir()})",
    )
    common.add_argument("--json", action="store_true", default=default(False), help="print JSON")
    common.add_argument(
        "--future-tolerance",
        type=float,
        metavar="SECONDS",
        default=default(None),
        help="reject timestamps further ahead of this device's clock "
        f"(default: ${TOLERANCE_ENV} or {DEFAULT_FUTURE_TOLERANCE_MS // 1000})",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(defaults=False)
    parser = argparse.ArgumentParser(
        prog="headcount",
        description="Offline-first, peer-to-peer check-in replication for events.",
        epilog="Run `headcount COMMAND --help` for a command's options.",
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"headcount {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def cmd(
        group: Any, name: str, handler: Handler, help_: str, **kw: Any
    ) -> argparse.ArgumentParser:
        p = group.add_parser(name, parents=[common], help=help_, description=help_, **kw)
        p.set_defaults(handler=handler)
        return p

    register_records(sub, cmd)  # init, event, participants, checkin, ...
    register_service(sub, cmd)  # demo, status, compact, run, retry, relay
    register_sim(sub, cmd)  # headcount sim ...
    devices = register_pki(sub, cmd)  # headcount org init, device enroll/show/...
    register_revoke(devices, cmd)  # headcount device revoke
    register_token(sub, cmd)  # headcount token secret/issue (the relay's HTTP API)
    register_backup(sub, cmd)  # headcount backup create/list/verify/restore
    register_archive(sub, cmd)  # headcount archive run/query/list/prune/restore
    return parser
