"""A validly enrolled gate running modified code (issue 11's attacker).

It holds its own key and certificate, so every entry it sends is correctly
chained and signed: the signature checks pass. What it writes into the Y
update is whatever it likes: deletions of other devices' items, register
entries naming another author or role, scans under another device's name,
items under another device's Y client id, configuration.
"""

from __future__ import annotations

from collections.abc import Callable

from pycrdt import Array, Doc, TransactionEvent

from headcount import Replica
from headcount.core import registers as R
from headcount.core.chain import Segment, sign_head, with_digest
from headcount.core.eventdoc import encode_scan
from headcount.core.model import LogEntry, Method, Scan, ScanKind
from headcount.core.yclient import derive_client_id
from headcount.replica.log import ReplicaLog

Body = Callable[["Crafting"], None]


class NothingWritten(Exception):
    """An attack body that changed nothing: there is no entry to send."""


class Crafting:
    """What an attack body writes with: the attacker's copy of the event's
    document (its client id chosen by the attack) and the entry's stamp."""

    def __init__(self, doc: Doc, device: str, seq: int, hlc: int) -> None:
        self.doc = doc
        self.device = device
        self.seq = seq
        self.hlc = hlc
        self.dot = f"{device}:{seq}"
        self.regs: Array[str] = doc.get("r", type=Array)
        self.scans: Array[str] = doc.get("s", type=Array)
        self.history: Array[str] = doc.get("h", type=Array)

    def register(
        self,
        record: str,
        fields: dict[str, object],
        *,
        kind: str = "p",
        dot: str | None = None,
        role: str = "gate",
        sup: frozenset[str] = frozenset(),
        aux: object = None,
        hlc: int | None = None,
    ) -> None:
        raw = R.encode_entry(
            kind, record, dot or self.dot, fields, self.hlc if hlc is None else hlc, role, sup, aux
        )
        self.regs.append(raw)

    def scan(self, scan_id: str, participant: str, *, device: str | None = None) -> None:
        scan = Scan(
            scan_id,
            participant,
            ScanKind.IN,
            self.hlc >> 16,
            self.hlc,
            "evil",
            Method.QR,
            device or self.device,
        )
        self.scans.append(encode_scan(scan))


class Attacker:
    """Crafts signed entries of ``replica``'s device (a gate) on one event."""

    def __init__(self, replica: Replica, event: str) -> None:
        self.replica = replica
        self.event = event
        self.device = replica.device_id
        own = replica.version_vector(event).get(self.device, 0) if event in replica.events() else 0
        self.seq = own
        self.prev = replica.store.hash_of(event, self.device, own) or b"\x00" * 32

    def craft(self, body: Body, *, client_id: int | None = None) -> Segment:
        """One entry whose update is what ``body`` writes, signed."""
        seq = self.seq + 1
        cid = client_id if client_id is not None else derive_client_id(self.device, self.event, seq)
        doc: Doc = Doc(client_id=cid)
        if self.event in self.replica.events():
            doc.apply_update(self.replica.event(self.event).doc.encode_state())
        captured: list[bytes] = []

        def capture(event: TransactionEvent) -> None:
            captured.append(event.update)

        sub = doc.observe(capture)
        hlc = self.replica.clock.now(self.replica.wall_clock())
        with doc.transaction():
            body(Crafting(doc, self.device, seq, hlc))
        doc.unobserve(sub)
        if not captured:
            raise NothingWritten("the attack body wrote nothing")
        update = captured[-1]
        entry = with_digest(LogEntry(self.event, self.device, seq, hlc, update, self.prev))
        head = sign_head(
            self.replica.identity.private_key, self.event, self.device, seq, entry.digest
        )
        self.seq, self.prev = seq, entry.digest
        return Segment((entry,), head)

    def send(self, segment: Segment, *targets: Replica) -> list[object]:
        """Deliver ``segment`` through each target's receive path (what a
        session does with a ``Segments`` message); their ingest results."""
        return [ReplicaLog(t).ingest(self.event, [segment]) for t in targets]
