"""Helpers shared by the modules that add subcommands to ``headcount``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def command_group(sub: Any, name: str, help_: str) -> Any:
    """A subcommand that only groups others (``headcount event ...``); on its
    own it prints its help and exits with 2."""
    p = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(handler=lambda _args, p=p: usage(p))
    return p.add_subparsers(title="commands", metavar="COMMAND")


def usage(parser: argparse.ArgumentParser) -> None:
    parser.print_help(sys.stderr)
    raise SystemExit(2)
