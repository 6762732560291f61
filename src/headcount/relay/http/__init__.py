"""The relay's HTTP API (aiohttp): the attendance sync endpoint, the read
endpoints, and the operations endpoints (metrics, health, readiness).

``app`` wires the routes; ``errors``, ``envelope``, ``strictjson`` and
``common`` hold what every handler shares (``ApiError``, request ids and
JSON errors, strict JSON, the app's state, authentication, bounded bodies
and parameters); ``sync_handler`` + ``sync``, ``reads`` + ``paging``,
``conflicts`` and ``audit_trail`` are the handlers by resource; ``ops``
adds metrics, access logs, probes and the operations app; ``listener``
serves an app with a deadline on request headers."""
