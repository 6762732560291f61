""":class:`ApiError`, the one exception a handler raises to refuse a request.

Pure (no aiohttp): :mod:`.sync` raises it while parsing, and
:func:`.envelope.envelope` answers it with :func:`error_body`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """A request-level failure: answered with ``status`` and a JSON error body.

    Raising it promises that nothing of the request was written.
    """

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_body(exc: ApiError, request_id: str) -> dict[str, Any]:
    """The JSON error body of ``exc`` for the request ``request_id``."""
    error = {"code": exc.code, "message": exc.message}
    return {"success": False, "error": error, "requestId": request_id}
