"""A replica seen by the sync protocol: the :class:`~headcount.session.LogView`
over a :class:`~headcount.replica.Replica` and its SQLite store.

Outgoing: the entries a peer lacks, as segments ending at signed heads (this
device signs its own heads when it first sends them; others' entries travel
with the heads their origin signed). Incoming: every segment is checked
(known device, shape, signature, hash chain, equivocation) before any of its
entries reaches the replica, and a batch with a forged segment applies
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager

from headcount.core.chain import (
    Head,
    Segment,
    Verifier,
    ed25519_verify,
    entry_hash,
    sign_head,
    verify_batch,
)
from headcount.core.errors import BehindHorizonError, HeadcountError, StoreError
from headcount.core.model import LogEntry
from headcount.pki.revocation import RevocationList
from headcount.pki.revocation_book import RevocationBook
from headcount.pki.revocation_record import SignedRevocation
from headcount.protocol.logview import IngestResult, RevocationIntake
from headcount.protocol.wire import RevocationRecord
from headcount.store.interface import LogStore

from . import compaction
from .replica import Replica

READ_CHUNK = 2000  # own entries read per query while cutting a batch
RECENT_SEGMENTS = 8  # verified segments kept in memory per device and event, for forwarding


class ReplicaLog:
    """The LogView of a replica (see :class:`~headcount.session.LogView`)."""

    def __init__(
        self,
        replica: Replica,
        verify: Verifier = ed25519_verify,
        vouch: Callable[[bytes], tuple[str, bytes, str]] | None = None,
        group_commit: Callable[[], None] | None = None,
    ) -> None:
        """``vouch(der) -> (device_id, public_key_raw, role)`` checks a
        certificate a peer shares against the organisation (raising
        HeadcountError if it does not verify); without it shared
        certificates are ignored.

        ``group_commit``: if given, what :meth:`ingest` and
        :meth:`segments_since` write joins the store's open group instead of
        being committed before they return, and ``group_commit()`` is called
        after each such write to get the group committed soon; the driver
        must make sure the group is committed before it sends anything
        (:class:`~headcount.net.groupcommit.GroupCommit` does both). Without
        it every call is durable when it returns."""
        self.replica = replica
        self.store: LogStore = replica.store
        self.verify = verify
        self.vouch = vouch
        self.group_commit = group_commit
        # Forwarding cache: the latest verified segments per (event, device),
        # by first sequence number. A relay forwards what it just received to
        # every other peer of the event: from here, not from the database.
        self._recent: dict[tuple[str, str], dict[int, Segment]] = {}
        self.store.on_rollback.append(self._recent.clear)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        if self.group_commit is None:
            with self.store.atomic():
                yield
            return
        with self.store.deferred():
            yield
        if self.store.uncommitted:
            self.group_commit()

    @property
    def device_id(self) -> str:
        return self.replica.device_id

    def events(self) -> list[str]:
        return self.replica.events()

    def version_vector(self, event: str) -> dict[str, int]:
        return self.store.version_vector(event)

    # -- outgoing -------------------------------------------------------------

    def segments_since(self, event: str, vv: Mapping[str, int], max_bytes: int) -> list[Segment]:
        if event in self.store.archived():
            return []  # archived here: its entries are in the archive file, not the log
        self.store.flush()
        for device, (seq, _) in self.store.horizon(event).items():
            if vv.get(device, 0) < seq:
                raise BehindHorizonError(f"the peer lacks entries of {device} folded at {seq}")
        out: list[Segment] = []
        budget = max_bytes
        for device, high in sorted(self.store.version_vector(event).items()):
            start = vv.get(device, 0) + 1
            while start <= high and (budget > 0 or not out):
                seg = self._segment(event, device, start, high, budget)
                if seg is None:
                    break
                out.append(seg)
                budget -= max(1, seg.size)
                start = seg.head.seq + 1
            if budget <= 0:
                break
        return out

    def _segment(
        self, event: str, device: str, start: int, high: int, budget: int
    ) -> Segment | None:
        if device != self.device_id:
            cached = self._recent.get((event, device), {}).get(start)
            if cached is not None and cached.head.seq <= high:
                return cached
            head = self.store.head_at_or_after(event, device, start)
            if head is None or head.seq > high:
                return None  # not verifiable by anyone yet: nothing to forward
            return Segment(tuple(self.store.entries_range(event, device, start, head.seq)), head)
        entries: list[LogEntry] = []
        size = 0
        while start + len(entries) <= high:
            first = start + len(entries)
            chunk = self.store.entries_range(event, device, first, min(high, first + READ_CHUNK))
            if not chunk:
                raise StoreError(f"entries {first}..{high} of {device} are missing from the log")
            for entry in chunk:
                if entries and size + len(entry.update) > budget:
                    break
                entries.append(entry)
                size += len(entry.update)
            else:
                continue
            break
        end = entries[-1].seq
        head = self.store.head_at_or_after(event, device, end)
        if head is None or head.seq != end:
            head = sign_head(
                self.replica.identity.private_key, event, device, end, entry_hash(entries[-1])
            )
            with self._writing():  # the only write on the way out
                self.store.add_heads([head])
        return Segment(tuple(entries), head)

    # -- directory --------------------------------------------------------------

    def certificates(self, devices: Collection[str]) -> dict[str, bytes]:
        return self.store.certificates(devices)

    def learn_certificates(self, certs: Sequence[bytes]) -> int:
        if self.vouch is None or self.replica.read_only:
            return 0
        known = self.store.devices()
        learnt = 0
        for der in certs:
            try:
                device, key, role = self.vouch(der)
            except HeadcountError:
                continue  # expired, revoked, another organisation's...: not trusted
            if device not in known:
                self.replica.trust(device, key, role, der)
                learnt += 1
        return learnt

    # -- the organisation's revocations -----------------------------------------

    _book: RevocationBook | None = None  # set by use_revocations
    _revocation_records: Sequence[RevocationRecord] = ()

    def use_revocations(self, book: RevocationBook) -> None:
        """Verify peers' revocation records with ``book`` (which holds the
        organisation CA) and keep the valid ones in the store; ``book`` is
        filled with the records stored before. Without this call the log
        holds no revocations and ignores the ones peers send."""
        stored = self.store.revocations()
        book.load(SignedRevocation(body, sig, cert) for _, body, sig, cert in stored)
        self._book = book
        self._revocation_records = [RevocationRecord(r.body, r.sig, r.cert) for r in book.records()]

    def revocation_list(self) -> RevocationList | None:
        """The revocations in force (None before :meth:`use_revocations`)."""
        return None if self._book is None else self._book.revocations()

    def revocations(self) -> Sequence[RevocationRecord]:
        return self._revocation_records

    def learn_revocations(self, records: Sequence[RevocationRecord]) -> RevocationIntake:
        book = self._book
        if book is None or self.replica.read_only:
            return RevocationIntake()
        accepted, refusals = book.check([SignedRevocation(r.body, r.sig, r.cert) for r in records])
        if accepted:  # durable before anyone hears of them
            rows = [(v.digest, v.record.body, v.record.sig, v.record.cert) for v in accepted]
            self.store.add_revocations(rows, self.replica.wall_clock())
            book.add(accepted)
            self._revocation_records = [
                *self._revocation_records,
                *(RevocationRecord(v.record.body, v.record.sig, v.record.cert) for v in accepted),
            ]
        return RevocationIntake(len(accepted), [(r.code, r.detail) for r in refusals])

    def role_of(self, device: str) -> str | None:
        return self.store.devices().get(device)

    # -- compaction -----------------------------------------------------------

    def record_ack(self, peer: str, event: str, vv: Mapping[str, int]) -> None:
        if self.replica.read_only or not self.store.has_event(event):
            return
        self.store.record_ack(peer, event, vv, self.replica.wall_clock())
        if event in self.replica.rejoin_pending:
            self._maybe_rejoined(peer, event, vv)

    def _maybe_rejoined(self, peer: str, event: str, vv: Mapping[str, int]) -> None:
        """A device restored from a backup has caught up with its own chain
        once a trusted peer holds no more of its entries than it does."""
        own = self.device_id
        if peer == own or self.store.public_key(peer) is None:
            return
        if vv.get(own, 0) <= self.store.version_vector(event).get(own, 0):
            self.replica.mark_rejoined(event)

    def snapshot_for(self, event: str) -> tuple[bytes, list[Head]]:
        return compaction.snapshot_for(self.replica, event)

    def install_snapshot(self, event: str, state: bytes, heads: Sequence[Head], sender: str) -> int:
        return compaction.install_snapshot(self.replica, event, state, heads, sender)

    # -- incoming -------------------------------------------------------------

    def ingest(self, event: str, segments: Sequence[Segment]) -> IngestResult:
        with self._writing():
            return self._ingest(event, segments)

    def _ingest(self, event: str, segments: Sequence[Segment]) -> IngestResult:
        quarantined = set(self.store.quarantined(event))
        vv, pending = self.store.version_vector(event), self.store.pending_keys(event)

        def known(device: str, seq: int) -> bytes | None:
            if seq > vv.get(device, 0) and (device, seq) not in pending:
                return None  # not held here: no need to ask the database
            for seg in self._recent.get((event, device), {}).values():
                if seg.head.seq == seq:
                    return seg.head.hash
            return self.store.hash_of(event, device, seq)

        batch = verify_batch(
            event,
            segments,
            public_key=self.store.public_key,
            skip=quarantined.__contains__,
            known=known,
            verify=self.verify,
        )
        result = IngestResult(gaps=batch.gaps, duplicates=batch.duplicates)
        staged, heads, caught = batch.staged, batch.heads, batch.caught
        entries = [e for device in staged for e, _ in staged[device]]
        # Everything verified: only now change state, in one transaction.
        # (What each entry does is checked against its signer's certified
        # role by the replica; a device caught there is refused whole, as
        # for equivocation: its heads are not kept.)
        refused: set[str] = set()
        with self.store.transaction():
            for device, exc in caught.items():
                self.store.quarantine(event, device, exc.seq, self.replica.wall_clock())
                result.equivocations.append(exc)
            if entries:
                applied = self.replica.apply_entries(entries)
                result.applied += applied.applied
                result.pending += applied.pending
                result.violations += applied.refused
                refused = {v.device for v in applied.refused}
            kept = [
                h
                for h in heads
                if h.device not in caught
                and h.device not in refused
                and h.device not in quarantined
            ]
            if kept and self.store.has_event(event):
                self.store.add_heads(kept)
                self._remember(event, segments, {h.device for h in kept})
        return result

    def _remember(self, event: str, segments: Sequence[Segment], trusted: set[str]) -> None:
        """Cache the segments now held whole (their heads stored), for forwarding."""
        vv = self.store.version_vector(event)
        for seg in segments:
            device = seg.head.device
            if device in trusted and seg.entries and vv.get(device, 0) >= seg.head.seq:
                recent = self._recent.setdefault((event, device), {})
                recent[seg.first] = seg
                while len(recent) > RECENT_SEGMENTS:
                    del recent[next(iter(recent))]  # the oldest
