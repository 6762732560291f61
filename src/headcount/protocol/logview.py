"""What the session needs from the local log: :class:`LogView`, implemented by
a replica (:class:`headcount.replica.ReplicaLog`) and by the simulator's
in-memory log (:class:`headcount.protocol.MemLog`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from headcount.core.chain import EquivocationError, Head, Segment
from headcount.core.model import Violation

from .wire import RevocationRecord


@dataclass(slots=True)
class IngestResult:
    """What the log did with received segments."""

    applied: int = 0
    duplicates: int = 0
    gaps: int = 0
    pending: int = 0
    equivocations: list[EquivocationError] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)  # refused for what they do


@dataclass(slots=True)
class RevocationIntake:
    """What the log did with received revocation records: how many it kept
    (new and verified), and ``(code, detail)`` for each one it refused."""

    added: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)


class LogView(Protocol):
    """The local log as the session sees it (a replica, or the simulator's
    in-memory log). Synchronous and local: no network, no sleeping."""

    @property
    def device_id(self) -> str: ...

    def events(self) -> list[str]: ...

    def version_vector(self, event: str) -> dict[str, int]: ...

    def segments_since(self, event: str, vv: Mapping[str, int], max_bytes: int) -> list[Segment]:
        """Signed segments holding what a peer with ``vv`` lacks, in order,
        about ``max_bytes`` of updates at most (at least one segment)."""
        ...

    def ingest(self, event: str, segments: Sequence[Segment]) -> IngestResult:
        """Verify and apply segments (shape, signature, chain, then pycrdt).

        Raises:
            RemoteProtocolError: a segment is forged, malformed or from an
                unknown device; nothing of this call was applied.
        """
        ...

    def record_ack(self, peer: str, event: str, vv: Mapping[str, int]) -> None:
        """The peer says it holds ``vv`` (input to compaction)."""
        ...

    def certificates(self, devices: Collection[str]) -> dict[str, bytes]:
        """Certificates (DER) of those of ``devices`` this log trusts (device
        -> certificate), to share."""
        ...

    def learn_certificates(self, certs: Sequence[bytes]) -> int:
        """Trust the devices these certificates vouch for, if they verify;
        returns how many were new. Bad certificates are ignored."""
        ...

    def snapshot_for(self, event: str) -> tuple[bytes, list[Head]]:
        """State and horizon heads for a peer behind the compaction horizon."""
        ...

    def install_snapshot(self, event: str, state: bytes, heads: Sequence[Head], sender: str) -> int:
        """Install a peer's snapshot; returns devices advanced.

        Raises:
            RemoteProtocolError: not acceptable from this sender, or invalid.
        """
        ...

    def role_of(self, device: str) -> str | None:
        """The certified role of a device this log trusts (``"admin"``,
        ``"relay"``, ``"gate"``), None if it is unknown."""
        ...

    def revocations(self) -> Sequence[RevocationRecord]:
        """Every signed revocation record this log holds, verified, in the
        order it learnt them. Append-only: records are only ever added at the
        end (a session offers a peer those past the ones it offered before)."""
        ...

    def learn_revocations(self, records: Sequence[RevocationRecord]) -> RevocationIntake:
        """Verify a peer's revocation records and keep the new valid ones
        (durably, before returning); refuses the others one by one, with a
        reason. Never raises for bad records."""
        ...
