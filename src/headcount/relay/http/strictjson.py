"""JSON from clients, parsed strictly: what :func:`loads` returns is plain,
finite and shallow, or the request is refused with a 400.

Python's :func:`json.loads` accepts ``NaN``, ``Infinity`` and ``-Infinity``,
turns ``1e400`` into infinity, decodes ``"\ud800"`` into a string no UTF-8
encoder takes (pycrdt panics on it), raises :class:`RecursionError` on deep
nesting and :class:`ValueError` (not :class:`json.JSONDecodeError`) on
integers of more than 4300 digits: each of those would reach a handler, or
escape as a 500. Here every one is an :class:`.errors.ApiError`.

Pure (no aiohttp), like :mod:`.errors`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import ApiError

MAX_DEPTH = 32
"""Arrays and objects nested deeper than this are refused (a sync body is 3 deep)."""


class _NotJson(ValueError):
    """A number JSON has no place for (raised inside the parser's hooks)."""


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"{text} is out of the range of a number")
    return value


def loads(data: bytes | str, *, code: str = "malformed_json", what: str = "the body") -> Any:
    """The JSON value of ``data``.

    Args:
        data: UTF-8 (or UTF-16/32) bytes, or text.
        code: the error code of a refusal.
        what: names the input in the error message.

    Raises:
        ApiError: 400 ``code`` when ``data`` is not JSON, holds a non-finite
            number, or nests arrays and objects deeper than :data:`MAX_DEPTH`.
            Never any other exception.
    """
    try:
        value = json.loads(data, parse_constant=_constant, parse_float=_finite)
    except RecursionError:
        raise _too_deep(code, what) from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, huge ints, _NotJson
        raise ApiError(400, code, f"{what} is not JSON: {_short(str(exc))}") from None
    try:
        deepest = depth(value)
    except UnicodeEncodeError:
        raise ApiError(400, code, f"{what} holds a string that is not Unicode text") from None
    if deepest > MAX_DEPTH:
        raise _too_deep(code, what)
    return value


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar: 0), without
    recursion; it stops early past :data:`MAX_DEPTH`.

    Raises:
        UnicodeEncodeError: a string (or an object's key) is not valid
            Unicode text (a lone surrogate).
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            _text(item)
            continue
        if isinstance(item, dict):
            children: Any = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_DEPTH:
            return deepest  # deep enough to refuse: no need to walk the rest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _text(item: str) -> None:
    if not item.isascii():
        item.encode("utf-8")  # raises on a lone surrogate


def _too_deep(code: str, what: str) -> ApiError:
    return ApiError(400, code, f"{what} nests arrays and objects deeper than {MAX_DEPTH}")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
