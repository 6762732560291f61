"""Request ids and JSON errors: the :func:`envelope` middleware.

Every request of the API goes through :func:`envelope`, which gives it a
request id (the client's ``X-Request-Id`` if it is well formed, otherwise a
fresh one), echoes it on the response, and turns every failure into one JSON
body::

    {"success": false, "error": {"code": "...", "message": "..."}, "requestId": "..."}
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import ApiError, error_body

REQUEST_ID_HEADER = "X-Request-Id"
# aiohttp >= 3.12 wants typed request keys; older versions take strings.
REQUEST_ID_KEY: Any = (
    web.RequestKey("request_id", str) if hasattr(web, "RequestKey") else "request_id"
)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# The logger's name predates this module; operators' log filters know it.
log = logging.getLogger("headcount.relay.http.app")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the request id to the request and the response; answer every
    exception of the handler with a JSON error (:class:`ApiError` as given,
    the router's 404 and 405 with their reason as code, anything else logged
    and answered 500 ``internal_error``)."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    request[REQUEST_ID_KEY] = rid
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _error(exc, rid)
    except web.HTTPException as exc:  # the router's 404 and 405
        code = exc.reason.lower().replace(" ", "_")
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        response = _error(ApiError(exc.status, code, exc.reason, allow), rid)
    except Exception:
        log.exception("unhandled error", extra={"request_id": rid})
        response = _error(ApiError(500, "internal_error", "internal server error"), rid)
    response.headers[REQUEST_ID_HEADER] = rid
    log.info(
        "%s %s -> %d",
        request.method,
        request.path,
        response.status,
        extra={"request_id": rid},
    )
    return response


def _error(exc: ApiError, rid: str) -> web.Response:
    return web.json_response(error_body(exc, rid), status=exc.status, headers=exc.headers)
