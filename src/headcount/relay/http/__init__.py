"""The relay's HTTP API (aiohttp): the attendance sync endpoint, the read
endpoints, and the operations endpoints (metrics, health, readiness)."""
