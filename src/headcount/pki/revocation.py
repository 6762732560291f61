"""Revoked devices: the list in force, a grow-only set.

A :class:`RevocationList` is what a device enforces: every peer certificate
is checked against it (:func:`~headcount.pki.verify.verify_peer_certificate`).
It is never written by hand nor read from event data: it is computed from
the organisation's signed revocation records
(:mod:`~headcount.pki.revocation_record`, gathered and verified by
:class:`~headcount.pki.revocation_book.RevocationBook`), which devices gossip
to each other. :meth:`RevocationList.merge` is a set union (commutative,
associative, idempotent). A revocation is never undone: re-admit a device by
enrolling a new key.

The JSON form (``headcount-revocations/1``) is for people and for the
unsigned lists of earlier versions, which the CA can re-sign
(:func:`headcount.pki.org.load_revocations`); devices never trust it.
Serials are hex strings: X.509 serials have up to 159 bits, beyond what JSON
numbers carry safely.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from headcount.core.errors import InputError
from headcount.core.identity import check_device_id

FORMAT = "headcount-revocations/1"
_MAX_TEXT = 256


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revoked device (every certificate of it) or, with ``serial``, one certificate."""

    device_id: str
    serial: int | None = None
    revoked_at_ms: int = 0
    revoked_by: str = ""
    reason: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.device_id, -1 if self.serial is None else self.serial)

    @property
    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (*self.key, self.revoked_at_ms, self.revoked_by, self.reason)

    def covers(self, device_id: str, serial: int) -> bool:
        return self.device_id == device_id and self.serial in (None, serial)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "serial": None if self.serial is None else format(self.serial, "x"),
            "revoked_at_ms": self.revoked_at_ms,
            "revoked_by": self.revoked_by,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Revocation:
        """Raises: InputError: a malformed entry."""
        if not isinstance(data, dict):
            raise InputError("a revocation must be a JSON object", code="invalid_revocation_list")
        serial = data.get("serial")
        at, by, reason = (
            data.get("revoked_at_ms", 0),
            data.get("revoked_by", ""),
            data.get("reason", ""),
        )
        ok = (
            isinstance(at, int)
            and not isinstance(at, bool)
            and at >= 0
            and isinstance(by, str)
            and isinstance(reason, str)
            and len(by) <= _MAX_TEXT
            and len(reason) <= _MAX_TEXT
            and (
                serial is None
                or (isinstance(serial, str) and re.fullmatch(r"[0-9a-f]{1,40}", serial))
            )
        )
        if not ok:
            raise InputError(f"malformed revocation {data!r}", code="invalid_revocation_list")
        return cls(
            device_id=check_device_id(data.get("device_id")),
            serial=None if serial is None else int(serial, 16),
            revoked_at_ms=at,
            revoked_by=by,
            reason=reason,
        )


@dataclass(frozen=True, slots=True)
class RevocationList:
    """The revocations of one organisation (``org`` is its CA key id, hex).

    ``entries`` is sorted and holds at most one entry per (device, serial).
    """

    org: str = ""
    entries: tuple[Revocation, ...] = field(default=())

    def find(self, device_id: str, serial: int) -> Revocation | None:
        """The entry revoking this device or this certificate, if any."""
        return next((e for e in self.entries if e.covers(device_id, serial)), None)

    def merge(self, other: RevocationList) -> RevocationList:
        """The union of two lists; for a repeated entry the earliest wins.

        Raises:
            InputError: the lists belong to different organisations.
        """
        if self.org and other.org and self.org != other.org:
            raise InputError("cannot merge revocation lists of two organisations")
        best: dict[tuple[str, int], Revocation] = {}
        for entry in sorted(
            self.entries + other.entries, key=lambda e: (e.revoked_at_ms, e.sort_key)
        ):
            best.setdefault(entry.key, entry)
        entries = tuple(sorted(best.values(), key=lambda e: e.sort_key))
        return RevocationList(self.org or other.org, entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "org": self.org,
            "revocations": [e.to_dict() for e in self.entries],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> RevocationList:
        """Raises: InputError: not a headcount revocation list."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"not a {FORMAT} document", code="invalid_revocation_list")
        org, items = data.get("org", ""), data.get("revocations")
        if not isinstance(org, str) or not isinstance(items, list):
            raise InputError("malformed revocation list", code="invalid_revocation_list")
        return RevocationList(org).merge(
            RevocationList(org, tuple(Revocation.from_dict(i) for i in items))
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RevocationList:
        """Raises: InputError: not JSON, or not a revocation list."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(
                f"revocation list is not JSON: {exc}", code="invalid_revocation_list"
            ) from None
        return cls.from_dict(data)


def revoke(
    revocations: RevocationList,
    device_id: str,
    *,
    at_ms: int,
    by: str,
    serial: int | None = None,
    reason: str = "",
) -> RevocationList:
    """A copy of ``revocations`` that also revokes ``device_id`` (or one serial of it).

    Raises:
        InputError: a malformed device id, or texts longer than 256 characters.
    """
    entry = Revocation.from_dict(
        Revocation(check_device_id(device_id), serial, at_ms, by, reason).to_dict()
    )
    return revocations.merge(RevocationList(revocations.org, (entry,)))
