"""Durations in configuration files and on the command line: ``90d``, ``12h``, ``30m``.

One parser for every interval, age and retention a user writes, so that
``interval = "1h"`` in a daemon's TOML and ``--older-than 90d`` on the
command line mean the same thing.
"""

from __future__ import annotations

import argparse
import math
import re

from .errors import InputError

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")


def parse_duration(value: object, what: str, *, bare_seconds: bool = True) -> float:
    """The number of seconds ``value`` stands for.

    Args:
        value: a string ``<number><unit>`` (units ``s``, ``m``, ``h``, ``d``,
            ``w``), or, if ``bare_seconds``, a number of seconds.
        what: the key or option named in the error message.
        bare_seconds: accept a plain number. Ages and retention periods
            refuse one: ``older_than = 90`` meaning 90 seconds would archive
            everything.

    Raises:
        InputError: not a duration, or not positive.
    """
    if isinstance(value, bool):
        raise InputError(f'{what}: expected a duration such as "1h", not a boolean')
    if isinstance(value, int | float):
        if not bare_seconds:
            raise InputError(f'{what}: give a unit, e.g. "90d" or "12h" (got {value!r})')
        seconds = float(value)
    elif isinstance(value, str) and (match := _PATTERN.fullmatch(value)):
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    else:
        units = ", ".join(UNITS)
        raise InputError(f"{what}: {value!r} is not a duration (a number and one of {units})")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{what}: a duration must be positive (got {value!r})")
    return seconds


def duration_arg(text: str) -> float:
    """``argparse`` type for a duration with a unit (a bad one is a usage error)."""
    try:
        return parse_duration(text, "duration", bare_seconds=False)
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def format_duration(seconds: float) -> str:
    """``7776000`` -> ``90d`` (the largest unit that divides it), else seconds."""
    for unit in ("w", "d", "h", "m"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            return f"{int(seconds // UNITS[unit])}{unit}"
    return f"{seconds:g}s"
