"""Revocation records between two peers (:class:`RevocationGossip`).

The organisation's revocation list travels as signed records
(``Revocations`` messages), apart from any event. Each side offers the
other every record it holds once the peer's ``Hello`` arrives, then, on
every gossip round (:meth:`Session.anti_entropy`), the records it learnt
since: the driver starts a round on every link as soon as its list grows,
so a revocation crosses the network at the speed of entries.

Nothing here verifies a record: the log does (``LogView.learn_revocations``),
record by record, and reports each refusal. This module bounds what a peer
may send: at most :data:`~.wire.MAX_REVOCATIONS_PER_MESSAGE` records per
message (the decoder's check), ``max_revocations`` per session, and
:data:`MAX_BAD_RECORDS` records that do not verify: an honest peer only
passes on records it verified, against the same organisation, so each of
those is a forgery or corruption, and verifying them costs signature checks.
(Records refused because their signer was revoked before it signed, or
because the list is full, are not counted: honest peers pass those on.)
"""

from __future__ import annotations

from collections.abc import Sequence

from headcount.core.errors import RemoteProtocolError

from .config import SessionConfig
from .effects import Effect, RevocationRefused, RevocationsLearnt
from .logview import LogView
from .wire import MAX_REVOCATIONS_PER_MESSAGE, RevocationRecord, Revocations

MAX_BAD_RECORDS = 16
_NOT_THE_PEERS_FAULT = frozenset({"signer_revoked", "list_full"})
_FRAME_OVERHEAD = 200  # message header, with room to spare
_RECORD_OVERHEAD = 16  # msgpack headers of one record, at most


class RevocationGossip:
    """One session's exchange of revocation records.

    Args:
        log: the local log (whose ``revocations()`` only ever grows at the end).
        config: the session's limits (``max_frame``, ``max_revocations``).
    """

    def __init__(self, log: LogView, config: SessionConfig) -> None:
        self.log = log
        self.config = config
        self._offered = 0  # the log's records up to here were offered (or came from the peer)
        self._received = 0  # records the peer sent this session
        self._bad = 0  # ... that did not verify

    def offer(self) -> list[Revocations]:
        """Messages carrying the records the peer was not offered yet."""
        records = self.log.revocations()
        new = records[self._offered :]
        self._offered = len(records)
        return _messages(new, self.config.max_frame)

    def receive(self, message: Revocations) -> list[Effect]:
        """The peer's records: hand them to the log; report what it kept and refused.

        The caller ends the session once :attr:`offending`.

        Raises:
            RemoteProtocolError: ``too_big``: more than ``max_revocations``
                records in this session (none of this message was looked at).
        """
        self._received += len(message.records)
        if self._received > self.config.max_revocations:
            raise RemoteProtocolError(
                f"more than {self.config.max_revocations} revocation records in one session",
                code="too_big",
            )
        caught_up = self._offered >= len(self.log.revocations())
        intake = self.log.learn_revocations(message.records)
        if caught_up:  # what we add now came from the peer: never echo it back
            self._offered = len(self.log.revocations())
        effects: list[Effect] = [RevocationsLearnt(intake.added)] if intake.added else []
        effects += [RevocationRefused(code, detail) for code, detail in intake.refused]
        self._bad += sum(code not in _NOT_THE_PEERS_FAULT for code, _ in intake.refused)
        return effects

    @property
    def offending(self) -> str | None:
        """Why the peer must be cut off, once it sent more than
        :data:`MAX_BAD_RECORDS` records that do not verify; else None."""
        if self._bad <= MAX_BAD_RECORDS:
            return None
        return f"{self._bad} revocation records that do not verify in one session"


def _messages(records: Sequence[RevocationRecord], max_frame: int) -> list[Revocations]:
    """``records`` in messages that fit a frame and the per-message count; a
    record no frame can hold is left out (the decoder bounds records far
    below the default frame, so only a tiny ``max_frame`` drops one)."""
    limit = max_frame - _FRAME_OVERHEAD
    out: list[Revocations] = []
    batch: list[RevocationRecord] = []
    size = 0
    for record in records:
        need = len(record.body) + len(record.sig) + len(record.cert) + _RECORD_OVERHEAD
        if need > limit:
            continue
        if batch and (size + need > limit or len(batch) >= MAX_REVOCATIONS_PER_MESSAGE):
            out.append(Revocations(tuple(batch)))
            batch, size = [], 0
        batch.append(record)
        size += need
    if batch:
        out.append(Revocations(tuple(batch)))
    return out


__all__ = ["MAX_BAD_RECORDS", "RevocationGossip"]
