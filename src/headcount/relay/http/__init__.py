"""The relay's HTTP API (aiohttp): the attendance sync endpoint, the read
endpoints, and the operations endpoints (metrics, health, readiness).

``app`` wires the routes; ``errors``, ``envelope`` and ``common`` hold what
every handler shares (``ApiError``, request ids and JSON errors, the app's
state, authentication, bounded bodies); ``sync_handler`` + ``sync``,
``reads`` + ``paging``, ``conflicts`` and ``audit_trail`` are the handlers
by resource; ``ops`` adds metrics, access logs and probes."""
