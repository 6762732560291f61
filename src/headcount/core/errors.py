"""Every error headcount raises on purpose.

The split follows h11: a :class:`LocalProtocolError` is the caller's fault (bad
input, an illegal operation for this device), a :class:`RemoteProtocolError`
is a peer's fault (malformed, forged or impossible data). Both derive from
:class:`HeadcountError`, so a driver can catch one class and keep running.
"""

from __future__ import annotations


class HeadcountError(Exception):
    """Base class of every error headcount raises deliberately.

    Attributes:
        code: a stable machine-readable error code (``snake_case``).
    """

    code = "headcount_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class LocalProtocolError(HeadcountError):
    """The local caller asked for something invalid; nothing was changed."""

    code = "invalid_request"


class InputError(LocalProtocolError):
    """Bad user input (a CSV row, a schema file, a field value)."""

    code = "invalid_input"


class NotFoundError(LocalProtocolError):
    """The event, participant or conflict named does not exist."""

    code = "not_found"


class PermissionDeniedError(LocalProtocolError):
    """This device's role may not perform the operation."""

    code = "permission_denied"


class FutureTimestampError(LocalProtocolError):
    """A timestamp lies further in the future than the configured tolerance."""

    code = "future_timestamp"


class StoreError(HeadcountError):
    """The local store cannot be opened or is in an unusable state."""

    code = "store_error"


class RemoteProtocolError(HeadcountError):
    """A peer sent data that is malformed, corrupt or impossible.

    Raised for the peer's session only; the local state is never changed by
    data that raises this.
    """

    code = "remote_protocol_error"


class BehindHorizonError(HeadcountError):
    """A peer lacks entries that were folded into a snapshot: send it the snapshot."""

    code = "behind_horizon"
