"""Bearer tokens for the cloud bridge HTTP API: issue and verify JWTs.

A token names a *user* (``sub``, the participant id the user attends as), a
*role* (``user`` writes only its own records, ``admin`` writes anyone's), the
*events* it may touch (a list of event ids, or ``"*"`` for every event) and an
expiry (``exp``, seconds since the epoch). Tokens are HS256 JWTs signed with a
shared secret kept in a file of mode 0600 (see :func:`create_secret_file`).

Time is an argument everywhere (``now_s``): PyJWT's own expiry check is off
and :meth:`TokenAuthority.verify` compares ``exp`` with the caller's clock, so
tests and the server use the same injected clock.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt

from headcount.core.errors import HeadcountError, InputError
from headcount.core.files import read_secret_file
from headcount.core.ids import check_id

DEFAULT_ALGORITHM = "HS256"
ISSUER = "headcount"
SECRET_BYTES = 32
ALL_EVENTS = "*"


class UserRole(StrEnum):
    """What a token's holder may write."""

    USER = "user"
    ADMIN = "admin"


class TokenError(HeadcountError):
    """A bearer token is missing, malformed, forged or expired.

    ``code`` is one of ``missing_token``, ``invalid_token``, ``token_expired``.
    """

    code = "invalid_token"


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of a token.

    ``events`` is None when the token grants every event (``"*"``).
    """

    user: str
    role: UserRole
    events: frozenset[str] | None
    expires_s: int

    def may_access(self, event_id: str) -> bool:
        """True if the token grants ``event_id``."""
        return self.events is None or event_id in self.events


class TokenAuthority:
    """Issues and verifies tokens with one key.

    Args:
        secret: the HMAC key (at least 32 bytes).
        algorithm: a PyJWT HMAC algorithm name (default HS256).
        leeway_s: seconds of clock skew tolerated on ``exp``.

    Raises:
        InputError: the secret is too short.
    """

    def __init__(
        self, secret: bytes, *, algorithm: str = DEFAULT_ALGORITHM, leeway_s: int = 0
    ) -> None:
        if len(secret) < SECRET_BYTES:
            raise InputError(f"the token secret must be at least {SECRET_BYTES} bytes")
        self._secret = secret
        self.algorithm = algorithm
        self.leeway_s = leeway_s

    def issue(
        self,
        user: str,
        role: UserRole | str,
        events: Iterable[str] | str,
        *,
        now_s: int,
        ttl_s: int,
    ) -> str:
        """A signed token for ``user`` valid for ``ttl_s`` seconds from ``now_s``.

        Raises:
            InputError: bad user id, role, events or lifetime.
        """
        check_id("user", user)
        role = _role(role)
        if ttl_s <= 0:
            raise InputError("a token's lifetime must be positive")
        grant = _events_claim(events)
        payload = {
            "iss": ISSUER,
            "sub": user,
            "role": role.value,
            "events": grant,
            "iat": now_s,
            "exp": now_s + ttl_s,
        }
        return jwt.encode(payload, self._secret, algorithm=self.algorithm)

    def verify(self, token: str, *, now_s: int) -> Claims:
        """The claims of a token this authority issued and that has not expired.

        Raises:
            TokenError: bad signature, malformed claims (``invalid_token``) or
                expired (``token_expired``). Never any other exception.
        """
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[self.algorithm],
                issuer=ISSUER,
                options={"require": ["sub", "exp", "role", "events"], "verify_exp": False},
            )
        except (jwt.PyJWTError, ValueError) as exc:  # ValueError: not UTF-8 (header bytes)
            raise TokenError(f"the bearer token is not valid: {exc}") from None
        return _claims(payload, now_s - self.leeway_s)


def _claims(payload: dict[str, Any], now_s: int) -> Claims:
    exp = payload["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int):
        raise TokenError("the token's exp claim is not an integer")
    if exp <= now_s:
        raise TokenError("the bearer token has expired", code="token_expired")
    try:
        user = check_id("user", payload["sub"])
        role = _role(payload["role"])
        grant = _events_claim(payload["events"])
    except InputError as exc:
        raise TokenError(f"the token's claims are malformed: {exc}") from None
    events = None if grant == ALL_EVENTS else frozenset(grant)
    return Claims(user, role, events, exp)


def _role(value: object) -> UserRole:
    try:
        if isinstance(value, str):
            return UserRole(value)
    except ValueError:
        pass
    raise InputError(f"role must be user or admin, not {value!r}")


def _events_claim(events: Iterable[str] | str) -> list[str] | str:
    if events == ALL_EVENTS:
        return ALL_EVENTS
    if isinstance(events, str) or not isinstance(events, Iterable):
        raise InputError('events must be a list of event ids or "*"')
    grant = sorted({check_id("event", e) for e in events})
    if ALL_EVENTS in grant:
        return ALL_EVENTS
    if not grant:
        raise InputError("a token must grant at least one event")
    return grant


# -- the secret file -----------------------------------------------------------


def create_secret_file(path: Path) -> bytes:
    """Create ``path`` (mode 0600) holding a fresh random secret; return it.

    Raises:
        InputError: the file exists already or cannot be written.
    """
    secret = secrets.token_hex(SECRET_BYTES).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists already; not overwriting a token secret") from None
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return secret


def load_secret_file(path: Path) -> bytes:
    """The secret stored in ``path``.

    Raises:
        InputError: unreadable, readable by group or others, or too short.
    """
    data = read_secret_file(path, "the token secret").strip()
    if len(data) < SECRET_BYTES:
        raise InputError(f"{path} holds fewer than {SECRET_BYTES} bytes of secret")
    return data
