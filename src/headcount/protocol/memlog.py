"""An in-memory signed log: the :class:`~headcount.session.LogView` of the
simulator and of protocol unit tests.

It runs the real verification (shape, signature, hash chain, equivocation)
but, unless ``materialize`` is set, never hands updates to pycrdt: it tracks
entries only, which is what lets the simulator run a thousand nodes.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from headcount.core.chain import (
    ZERO_HASH,
    Head,
    Segment,
    Verifier,
    ed25519_verify,
    entry_hash,
    sign_head,
    verify_batch,
)
from headcount.core.errors import LocalProtocolError, RemoteProtocolError
from headcount.core.model import LogEntry

from .logview import IngestResult, RevocationIntake
from .wire import RevocationRecord


@dataclass(slots=True)
class _Chain:
    """One device's entries of one event, with their hashes and signed heads."""

    entries: list[LogEntry] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    head_seqs: list[int] = field(default_factory=list)  # sorted
    heads: dict[int, Head] = field(default_factory=dict)

    def known(self, seq: int) -> bytes | None:
        if seq == 0:
            return ZERO_HASH
        return self.hashes[seq - 1] if seq <= len(self.hashes) else None

    def add_head(self, head: Head) -> None:
        if head.seq not in self.heads:
            bisect.insort(self.head_seqs, head.seq)
        self.heads[head.seq] = head


class MemLog:
    """A device's log of every event, in memory.

    Args:
        device_id: this device.
        key: its signing key.
        directory: ``device id -> raw Ed25519 public key`` of known devices.
        verify: signature verifier (the simulator passes a memoising one).
        hasher: entry hash function (the simulator passes a memoising one).
        on_apply: called with each entry as it is applied (e.g. to
            materialise documents); None to track entries only.
        roles: ``device id -> certified role`` (``role_of``); devices not
            listed have no role, so their snapshots are refused.

    Revocation records are not verified here (there is no organisation CA):
    ``revocations`` is whatever a test puts in :attr:`revocation_records`,
    and records from peers are ignored, as certificates are.
    """

    def __init__(
        self,
        device_id: str,
        key: Ed25519PrivateKey,
        directory: Mapping[str, bytes],
        *,
        verify: Verifier = ed25519_verify,
        hasher: Callable[[LogEntry], bytes] = entry_hash,
        on_apply: Callable[[LogEntry], None] | None = None,
        roles: Mapping[str, str] | None = None,
    ) -> None:
        self._device_id = device_id
        self.key = key
        self.directory = directory
        self.verify = verify
        self.hasher = hasher
        self.on_apply = on_apply
        self.chains: dict[str, dict[str, _Chain]] = {}
        self.equivocators: set[tuple[str, str]] = set()
        self._vv: dict[str, dict[str, int]] = {}  # cached version vectors
        self._sorted: dict[str, list[str]] = {}
        self.acks: dict[tuple[str, str], dict[str, int]] = {}
        self.roles: dict[str, str] = dict(roles or {})
        self.revocation_records: list[RevocationRecord] = []

    @property
    def device_id(self) -> str:
        return self._device_id

    def events(self) -> list[str]:
        return sorted(self.chains)

    def version_vector(self, event: str) -> dict[str, int]:
        return dict(self._vv.get(event, ()))

    def entry_count(self, event: str) -> int:
        return sum(len(c.entries) for c in self.chains.get(event, {}).values())

    def _chain(self, event: str, device: str) -> _Chain:
        chains = self.chains.setdefault(event, {})
        chain = chains.get(device)
        if chain is None:
            chain = chains[device] = _Chain()
            self._sorted.pop(event, None)
        return chain

    def restore(self, chains: dict[str, dict[str, _Chain]]) -> None:
        """Replace the whole state (tests and the fuzzer reset a victim log
        between inputs); the caches are rebuilt from it."""
        self.chains = chains
        self.equivocators.clear()
        self._sorted.clear()
        self._vv = {
            event: {d: len(c.entries) for d, c in devices.items() if c.entries}
            for event, devices in chains.items()
        }

    def _devices(self, event: str) -> list[str]:
        """The event's devices in a stable order (cached; sorting a thousand
        ids on every summary dominated large simulations)."""
        devices = self._sorted.get(event)
        if devices is None:
            devices = self._sorted[event] = sorted(self.chains.get(event, {}))
        return devices

    # -- local writes -------------------------------------------------------

    def append(self, event: str, update: bytes, hlc: int) -> LogEntry:
        """Append a local entry (unsigned until it is first sent)."""
        chain = self._chain(event, self._device_id)
        entry = LogEntry(
            event,
            self._device_id,
            len(chain.entries) + 1,
            hlc,
            update,
            chain.known(len(chain.entries)) or ZERO_HASH,
        )
        chain.entries.append(entry)
        chain.hashes.append(self.hasher(entry))
        self._vv.setdefault(event, {})[self._device_id] = entry.seq
        if self.on_apply:
            self.on_apply(entry)
        return entry

    # -- LogView ------------------------------------------------------------

    def segments_since(self, event: str, vv: Mapping[str, int], max_bytes: int) -> list[Segment]:
        if vv == self._vv.get(event, {}):
            return []  # the common "anything else?" call, answered without a scan
        out: list[Segment] = []
        budget = max_bytes
        chains = self.chains.get(event, {})
        for device in self._devices(event):
            chain = chains[device]
            start = vv.get(device, 0) + 1
            while start <= len(chain.entries) and (budget > 0 or not out):
                seg = self._segment(event, device, chain, start, budget)
                out.append(seg)
                budget -= max(1, seg.size)
                start = seg.head.seq + 1
            if budget <= 0:
                break
        return out

    def _segment(self, event: str, device: str, chain: _Chain, start: int, budget: int) -> Segment:
        if device == self._device_id:
            # Our own entries: cut at the budget and sign that head if needed.
            end, size = start, len(chain.entries[start - 1].update)
            while end < len(chain.entries) and size + len(chain.entries[end].update) <= budget:
                size += len(chain.entries[end].update)
                end += 1
            head = chain.heads.get(end) or sign_head(
                self.key, event, device, end, chain.hashes[end - 1]
            )
            chain.add_head(head)
        else:
            # Others' entries travel as they came: up to the next signed head.
            i = bisect.bisect_left(chain.head_seqs, start)
            head = chain.heads[chain.head_seqs[i]]
        return Segment(tuple(chain.entries[start - 1 : head.seq]), head)

    def record_ack(self, peer: str, event: str, vv: Mapping[str, int]) -> None:
        self.acks[(peer, event)] = dict(vv)

    def certificates(self, devices: Collection[str]) -> dict[str, bytes]:
        return {}  # the directory is given at construction

    def learn_certificates(self, certs: Sequence[bytes]) -> int:
        return 0

    def role_of(self, device: str) -> str | None:
        return self.roles.get(device)

    def revocations(self) -> Sequence[RevocationRecord]:
        return self.revocation_records

    def learn_revocations(self, records: Sequence[RevocationRecord]) -> RevocationIntake:
        return RevocationIntake()  # nothing to verify them against: ignored

    def snapshot_for(self, event: str) -> tuple[bytes, list[Head]]:
        raise LocalProtocolError("an in-memory log never compacts")

    def install_snapshot(self, event: str, state: bytes, heads: Sequence[Head], sender: str) -> int:
        raise RemoteProtocolError("this log does not accept snapshots", code="unauthorised")

    def ingest(self, event: str, segments: Sequence[Segment]) -> IngestResult:
        """Verify every segment, then apply them all (nothing on error)."""
        chains = self.chains.get(event, {})

        def known(device: str, seq: int) -> bytes | None:
            chain = chains.get(device)
            return chain.known(seq) if chain is not None else (ZERO_HASH if seq == 0 else None)

        batch = verify_batch(
            event,
            segments,
            public_key=self.directory.get,
            skip=lambda device: (event, device) in self.equivocators,
            known=known,
            verify=self.verify,
            hasher=self.hasher,
        )
        result = IngestResult(gaps=batch.gaps, duplicates=batch.duplicates)
        staged, heads, caught = batch.staged, batch.heads, batch.caught
        # Everything verified: only now change state.
        for device, exc in caught.items():
            self.equivocators.add((event, device))
            result.equivocations.append(exc)
        for device, fresh in staged.items():
            chain = self._chain(event, device)
            for entry, digest in fresh:
                chain.entries.append(entry)
                chain.hashes.append(digest)
                if self.on_apply:
                    self.on_apply(entry)
            if fresh:
                self._vv.setdefault(event, {})[device] = len(chain.entries)
            result.applied += len(fresh)
        for head in heads:
            if head.device not in caught and (event, head.device) not in self.equivocators:
                chains = self.chains.get(event, {})
                if head.device in chains:
                    chains[head.device].add_head(head)
        return result
