"""The relay: a store-and-forward hub for many gates (``headcount relay``) and
the cloud bridge, its HTTP API (``http/``), bearer tokens, rate limits and
the throttle of refusals' audit rows.

Wiring, for a driver::

    tokens = TokenAuthority(load_secret_file(Path("relay.secret")))
    app = create_app(replica, tokens, audit=AuditLog(data_dir / "audit.sqlite3"))
    web.run_app(app)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headcount._lazy import exports

if TYPE_CHECKING:
    from headcount.store.audit import AuditLog, AuditRecord

    from .http.app import SYNC_PATH, ApiLimits, create_app
    from .ratelimit import RateLimit
    from .server import Relay, load_relay_config
    from .tokens import (
        Claims,
        TokenAuthority,
        TokenError,
        UserRole,
        create_secret_file,
        load_secret_file,
    )

__all__ = [
    "SYNC_PATH",
    "ApiLimits",
    "AuditLog",
    "AuditRecord",
    "Claims",
    "RateLimit",
    "Relay",
    "TokenAuthority",
    "TokenError",
    "UserRole",
    "create_app",
    "create_secret_file",
    "load_relay_config",
    "load_secret_file",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        "headcount.store.audit": ["AuditLog", "AuditRecord"],
        ".http.app": ["SYNC_PATH", "ApiLimits", "create_app"],
        ".ratelimit": ["RateLimit"],
        ".server": ["Relay", "load_relay_config"],
        ".tokens": [
            "Claims",
            "TokenAuthority",
            "TokenError",
            "UserRole",
            "create_secret_file",
            "load_secret_file",
        ],
    },
)
