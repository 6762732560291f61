"""Checks on the ids and values users and peers supply (pure).

One definition of what a participant, event or device id may be, what a
field value may hold, and what an idempotency key is, for the CLI, CSV
import, the replica, the relay's HTTP API and the PKI.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .errors import InputError
from .registers import SEP

MAX_ID_LEN = 128
MAX_VALUE_BYTES = 8192


def check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        raise InputError(f"{kind} id must be a non-empty string of at most {MAX_ID_LEN} characters")
    if any(ord(c) < 32 or c == SEP for c in value) or value != value.strip():
        raise InputError(f"{kind} id {value!r} contains control characters or edge spaces")
    return value


def check_value(name: str, value: object) -> object:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise InputError(f"{name}: value {value!r} is not JSON data") from None
    if len(text.encode("utf-8")) > MAX_VALUE_BYTES:
        raise InputError(f"{name}: value is larger than {MAX_VALUE_BYTES} bytes")
    return value


def union_value(name: str, value: object) -> list[Any]:
    """A union field's value as a list of scalars (a scalar is one member)."""
    members = value if isinstance(value, list) else [value]
    for m in members:
        if isinstance(m, dict | list):
            raise InputError(f"{name}: a union field holds strings, numbers or booleans")
    return list(members)


def parse_scan_id(value: str | None) -> str:
    """A canonical UUID v4 string; a fresh one for ``None``."""
    if value is None:
        return str(uuid.uuid4())
    try:
        parsed = uuid.UUID(str(value))
    except ValueError:
        raise InputError(f"idempotency key {value!r} is not a UUID") from None
    if parsed.version != 4:
        raise InputError(f"idempotency key {value!r} is not a UUID v4")
    return str(parsed)
