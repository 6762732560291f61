"""The relay's cloud bridge: the HTTP API, its tokens and its audit trail.

Wiring, for a driver::

    tokens = TokenAuthority(load_secret_file(Path("relay.secret")))
    app = create_app(replica, tokens, audit=AuditLog(data_dir / "audit.sqlite3"))
    web.run_app(app)
"""

from headcount.relay.http.app import SYNC_PATH, ApiLimits, create_app
from headcount.store.audit import AuditLog, AuditRecord

from .ratelimit import RateLimit
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
    "TokenAuthority",
    "TokenError",
    "UserRole",
    "create_app",
    "create_secret_file",
    "load_secret_file",
]
