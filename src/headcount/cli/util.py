"""Helpers shared by the modules that add subcommands to ``headcount``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from headcount.core.errors import InputError
from headcount.core.hlc import DEFAULT_FUTURE_TOLERANCE_MS
from headcount.core.identity import default_data_dir

if TYPE_CHECKING:
    from headcount.replica.replica import Replica

Handler = Callable[[argparse.Namespace], Any]
Command = Callable[..., argparse.ArgumentParser]  # main.py's ``cmd`` helper
Result = tuple[Any, str]  # a handler's (JSON data, text) result
TOLERANCE_ENV = "HEADCOUNT_FUTURE_TOLERANCE"


def command_group(sub: Any, name: str, help_: str) -> Any:
    """A subcommand that only groups others (``headcount event ...``); on its
    own it prints its help and exits with 2."""
    p = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(handler=lambda _args, p=p: usage(p))
    return p.add_subparsers(title="commands", metavar="COMMAND")


def usage(parser: argparse.ArgumentParser) -> None:
    parser.print_help(sys.stderr)
    raise SystemExit(2)


def daemon_request(
    args: argparse.Namespace, payload: dict[str, Any], timeout: float = 10.0
) -> dict[str, Any] | None:
    """Ask the gate daemon of this data directory, if one is running."""
    from headcount.service import control
    from headcount.service.daemon import CONTROL_SOCKET

    path = (args.data_dir or default_data_dir()) / CONTROL_SOCKET
    return control.request(path, payload, timeout=timeout)


def open_replica(args: argparse.Namespace, read_only: bool = False) -> Replica:
    """The device of ``--data-dir`` (writable unless ``read_only``)."""
    from headcount.replica.replica import Replica

    tolerance = future_tolerance(args)
    return Replica.open(args.data_dir, read_only=read_only, future_tolerance_ms=tolerance)


def future_tolerance(args: argparse.Namespace) -> int:
    """``--future-tolerance`` or ``$HEADCOUNT_FUTURE_TOLERANCE`` in milliseconds."""
    raw = args.future_tolerance
    source = "--future-tolerance"
    if raw is None:
        env = os.environ.get(TOLERANCE_ENV)
        if not env:
            return DEFAULT_FUTURE_TOLERANCE_MS
        source = f"${TOLERANCE_ENV}"
        try:
            raw = float(env)
        except ValueError:
            raise InputError(f"{source}={env!r} is not a number of seconds") from None
    if not 0 <= raw <= 86_400:
        raise InputError(f"{source} must be between 0 and 86400 seconds")
    return int(raw * 1000)
