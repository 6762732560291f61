"""Reading the TOML configuration files of the gate daemon and the relay."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from headcount.core.errors import InputError


def read_toml(path: Path | None) -> dict[str, Any]:
    """The file's tables (empty for no file).

    Raises:
        InputError: the file is missing or not TOML.
    """
    if path is None:
        return {}
    try:
        return tomllib.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"configuration file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from None


def toml_list(table: dict[str, Any], key: str) -> list[Any]:
    """``table[key]`` (default ``[]``). Raises InputError if not a list."""
    value = table.get(key, [])
    if not isinstance(value, list):
        raise InputError(f"{key} must be a list")
    return value


def parse_address(text: Any, what: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``. Raises InputError naming ``what``."""
    if not isinstance(text, str) or ":" not in text:
        raise InputError(f"{what}: expected HOST:PORT, got {text!r}")
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise InputError(f"{what}: bad address {text!r}")
    return host.strip("[]"), int(port)
