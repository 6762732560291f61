"""Drivers that carry the sans-IO session over real transports (asyncio)."""
