"""Pagination and change feeds of the read endpoints' lists (see :mod:`.reads`).

Lists are ordered by participant id. ``limit`` defaults to 100 (1..1000,
otherwise 400 ``invalid_parameter``). A page that is not the last carries
``page.nextCursor``; passing it back as ``cursor`` (with the same filters)
yields the next page. Cursors are opaque: base64url of a small JSON object
``{"v": 1, "k": kind, "e": event, "a": last id, "w": watermark}``; a cursor
that does not decode, or was made for another list or event, is 400
``invalid_cursor``.

Each response also carries ``changes.next``, an opaque *change token*: the
highest change position the listing covered (its *watermark*, fixed at the
first page and carried in the cursor, so every page of one walk reports the
same token). Passing it as ``since`` later lists only records that changed
after it:

* attendance: a participant whose scans include one with position
  ``(hlc, scan id)`` greater than the token's; the record is returned whole
  (every scan), so a client replaces what it held;
* participants: a participant with a register entry (any field, or the
  deletion flag) whose ``(hlc, dot)`` is greater than the token's.

A record changed while a walk is under way may appear again in the next
change feed (at least once, never lost) -- with one caveat: positions are
hybrid logical clock values assigned where the write happened, so an entry
written by a device that was offline and reaches the relay *after* a client
took a token with a higher position is not reported by ``since``. Clients
that need every late scan should periodically re-read without ``since``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import strictjson
from .common import EventContext, int_param, ok
from .errors import ApiError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CURSOR_VERSION = 1

Position = tuple[int, str]
"""A change position: (hlc, tie-breaking id)."""

Item = tuple[str, Position | None, dict[str, Any]]
"""A list item: (participant id, highest change position, JSON body)."""


def page_limit(request: web.Request) -> int:
    """The ``limit`` query parameter (default :data:`DEFAULT_LIMIT`).

    Raises:
        ApiError: 400 ``invalid_parameter`` outside 1..:data:`MAX_LIMIT`.
    """
    value = int_param(request, "limit", 1, MAX_LIMIT)
    return DEFAULT_LIMIT if value is None else value


def encode_since(pos: Position) -> str:
    """The opaque change token of a position."""
    return _encode({"v": _CURSOR_VERSION, "p": list(pos)})


def listing(
    request: web.Request,
    ctx: EventContext,
    kind: str,
    items: Callable[[str | None], Iterable[Item]],
) -> web.Response:
    """One page of a list: filter by ``since``, paginate by id after the
    cursor, add the change token.

    Args:
        request: carries ``limit``, ``since``, ``cursor`` and ``participant``.
        ctx: the authenticated event.
        kind: the list's name, bound into its cursors.
        items: the list's items for a participant (None: everyone).

    Raises:
        ApiError: 400 ``invalid_parameter`` / ``invalid_cursor``, 403 ``forbidden``.
    """
    limit = page_limit(request)
    since = _since(request)
    page = _cursor(request, kind, ctx.event)
    who = _wanted_participant(request, ctx)
    rows = sorted(items(who), key=lambda r: r[0])
    if page.watermark is not None:
        watermark: Position | None = page.watermark
    else:
        marks = [pos for _, pos, _ in rows if pos is not None]
        watermark = max(marks) if marks else since
    if since is not None:
        rows = [r for r in rows if r[1] is not None and r[1] > since]
    if page.after is not None:
        rows = [r for r in rows if r[0] > page.after]
    chosen = rows[:limit]
    more = len(rows) > limit
    next_cursor = None
    if more:
        mark = list(watermark) if watermark is not None else None
        next_cursor = _encode(
            {"v": _CURSOR_VERSION, "k": kind, "e": ctx.event, "a": chosen[-1][0], "w": mark}
        )
    return ok(
        [body for _, _, body in chosen],
        page={"limit": limit, "count": len(chosen), "nextCursor": next_cursor},
        changes={"next": encode_since(watermark) if watermark is not None else None},
    )


def _wanted_participant(request: web.Request, ctx: EventContext) -> str | None:
    """The participant filter: forced to ``sub`` for a ``user`` token."""
    asked = request.query.get("participant") or None
    if ctx.admin:
        return asked
    if asked is not None and asked != ctx.claims.user:
        raise ApiError(403, "forbidden", "a user token sees only its own records")
    return ctx.claims.user


# -- opaque tokens ---------------------------------------------------------------


def _encode(obj: dict[str, Any]) -> str:
    raw = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        obj = strictjson.loads(raw, what="the token")
    except (binascii.Error, ValueError, ApiError):
        return None
    if not isinstance(obj, dict) or obj.get("v") != _CURSOR_VERSION:
        return None
    return obj


def _position(value: object) -> Position | None:
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
    ):
        return (value[0], value[1])
    return None


def _since(request: web.Request) -> Position | None:
    raw = request.query.get("since")
    if raw is None or raw == "":
        return None
    obj = _decode(raw)
    pos = _position(obj.get("p")) if obj else None
    if pos is None:
        raise ApiError(400, "invalid_cursor", "since is not a change token of this API")
    return pos


@dataclass(frozen=True, slots=True)
class _Page:
    after: str | None
    watermark: Position | None


def _cursor(request: web.Request, kind: str, event: str) -> _Page:
    raw = request.query.get("cursor")
    if raw is None or raw == "":
        return _Page(None, None)
    obj = _decode(raw)
    bad = ApiError(400, "invalid_cursor", f"cursor is not a cursor of this {kind} list")
    if obj is None or obj.get("k") != kind or obj.get("e") != event:
        raise bad
    after, mark = obj.get("a"), obj.get("w")
    watermark = _position(mark)
    if not isinstance(after, str) or (mark is not None and watermark is None):
        raise bad
    return _Page(after, watermark)
