"""The organisation's revocation records as one device holds them
(:class:`RevocationBook`): verified, grow-only, and the list they put in force.

1. **What is kept.** A record is kept once it verifies on its own
   (:func:`~headcount.pki.revocation_record.verify_record`: shape,
   organisation, signature, an admin signer's certificate). Anything else is
   refused with a stable code, record by record: one bad record never drops
   the good ones beside it.
2. **Grow-only.** Records are never removed, so merging two books is a
   union, and a device revoked stays revoked.
3. **What is in force** is a function of the records held, whatever order
   they arrived in, so every device holding the same records enforces the
   same list: taken in order of their time, a record is in force if the CA
   signed it, or if its admin signer's certificate (or device) was not
   revoked, by a record in force, strictly before the record's time. A
   record an admin signed after its own revocation is **void**: it has no
   effect, and arriving void it is reported as refused (``signer_revoked``).
   It is kept all the same (and passed on), because whether it is void
   depends on other records: if the revocation that voids it turns out
   void itself, it takes effect, on every device alike.

Limits: at most ``max_records`` records (65,536 by default: far beyond any
organisation's devices), past which new ones are refused (``list_full``);
at most :data:`MAX_VOID_PER_SIGNER` void records per signer are kept (a
revoked admin's key cannot fill the book), past which they are refused
without being kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509

from .revocation import Revocation, RevocationList
from .revocation_record import (
    CA_SIGNER,
    RecordRefused,
    RevocationClaim,
    SignedRevocation,
    VerifiedRevocation,
    verify_record,
)
from .verify import ca_key_id

MAX_RECORDS = 65_536
MAX_VOID_PER_SIGNER = 256


@dataclass(frozen=True, slots=True)
class Refusal:
    """A record that was not accepted: ``code`` (stable, see
    :class:`~headcount.pki.revocation_record.RecordRefused`) and why, for people."""

    code: str
    detail: str


class RevocationBook:
    """Args:
    org_ca: the organisation CA certificate (the trust anchor).
    max_records: how many records the book holds at most.
    """

    def __init__(self, org_ca: x509.Certificate, max_records: int = MAX_RECORDS) -> None:
        self.org_ca = org_ca
        self.org = ca_key_id(org_ca)
        self.max_records = max_records
        self._held: list[VerifiedRevocation] = []
        self._digests: set[bytes] = set()
        self._in_force: RevocationList | None = None  # cached until a record is added

    def __len__(self) -> int:
        return len(self._held)

    def records(self) -> list[SignedRevocation]:
        """Every record held, in the order they were added."""
        return [v.record for v in self._held]

    def revocations(self) -> RevocationList:
        """The revocations in force (cached until the book grows)."""
        if self._in_force is None:
            self._in_force = in_force(self._held, self.org)[0]
        return self._in_force

    def load(self, records: Iterable[SignedRevocation]) -> int:
        """Add records this device verified before (from its store): decoded,
        not verified again. Records that do not decode, or of another
        organisation, are skipped. Returns how many were added."""
        serials: dict[bytes, int | None] = {}
        added = 0
        for record in records:
            try:
                claim = RevocationClaim.decode(record.body)
            except RecordRefused:
                continue
            if claim.org != self.org or record.digest in self._digests:
                continue
            if claim.signer == CA_SIGNER:
                serial = None
            else:
                if record.cert not in serials:
                    serials[record.cert] = _serial(record.cert)
                serial = serials[record.cert]
                if serial is None:
                    continue
            self._add(VerifiedRevocation(record, claim, serial))
            added += 1
        return added

    def check(
        self, records: Sequence[SignedRevocation]
    ) -> tuple[list[VerifiedRevocation], list[Refusal]]:
        """Verify received records against the organisation and the records
        held; changes nothing (persist the records to keep, then :meth:`add` them).

        Returns:
            The new records to keep, in the order given, and a refusal for
            each record refused. A void record is both (see the module
            docstring). Records already held (or repeated) are in neither.
        """
        candidates: list[VerifiedRevocation] = []
        refusals: list[Refusal] = []
        seen: set[bytes] = set()
        for record in records:
            digest = record.digest
            if digest in self._digests or digest in seen:
                continue
            try:
                candidates.append(verify_record(record, self.org_ca))
            except RecordRefused as exc:  # a bad copy does not hide a good one after it
                refusals.append(Refusal(exc.code, exc.message))
                continue
            seen.add(digest)
        room = max(0, self.max_records - len(self._held))
        for late in candidates[room:]:
            refusals.append(
                Refusal("list_full", f"already {self.max_records} records: {_what(late)} not kept")
            )
        candidates = candidates[:room]
        if not candidates:
            return [], refusals
        void = in_force([*self._held, *candidates], self.org)[1]
        void_by = Counter(v.claim.signer for v in self._held if v.digest in void)
        kept: list[VerifiedRevocation] = []
        for v in candidates:
            if v.digest in void:
                refusals.append(
                    Refusal(
                        "signer_revoked",
                        f"{_what(v)}: its signer {v.claim.signer} was revoked before it "
                        "signed (kept without effect)",
                    )
                )
                if void_by[v.claim.signer] >= MAX_VOID_PER_SIGNER:
                    continue
                void_by[v.claim.signer] += 1
            kept.append(v)
        return kept, refusals

    def add(self, verified: Iterable[VerifiedRevocation]) -> None:
        """Keep records :meth:`check` accepted."""
        for v in verified:
            if v.digest not in self._digests:
                self._add(v)

    def _add(self, verified: VerifiedRevocation) -> None:
        self._held.append(verified)
        self._digests.add(verified.digest)
        self._in_force = None


def in_force(records: Iterable[VerifiedRevocation], org: str) -> tuple[RevocationList, set[bytes]]:
    """The revocations ``records`` put in force, and the digests of the void
    records (signed by an admin revoked strictly before; see the module
    docstring). Independent of the records' order."""
    revoked: dict[str, list[tuple[int | None, int]]] = {}  # device -> (serial, at)
    kept: list[Revocation] = []
    void: set[bytes] = set()
    for v in sorted(records, key=lambda v: (v.claim.revoked_at_ms, v.digest)):
        claim = v.claim
        if claim.signer != CA_SIGNER and any(
            (serial is None or serial == v.signer_serial) and at < claim.revoked_at_ms
            for serial, at in revoked.get(claim.signer, ())
        ):
            void.add(v.digest)
            continue
        revoked.setdefault(claim.device_id, []).append((claim.serial, claim.revoked_at_ms))
        kept.append(claim.to_revocation())
    return RevocationList(org).merge(RevocationList(org, tuple(kept))), void


def _serial(cert: bytes) -> int | None:
    try:
        return int(x509.load_der_x509_certificate(cert).serial_number)
    except ValueError:
        return None


def _what(v: VerifiedRevocation) -> str:
    claim = v.claim
    serial = "" if claim.serial is None else f" (certificate {claim.serial:x})"
    return f"the revocation of {claim.device_id}{serial} by {claim.signer}"


__all__ = ["MAX_RECORDS", "MAX_VOID_PER_SIGNER", "Refusal", "RevocationBook", "in_force"]
