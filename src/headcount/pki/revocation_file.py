"""Signed revocation records in a file: what the organisation CA produces
offline (``headcount device revoke --org-dir``) and an admin daemon imports
(``headcount device revoke --import``).

A JSON document ``{"format": "headcount-signed-revocations/1", "org": <CA key
id>, "records": [...]}``; each record holds its ``body``, ``sig`` and
``cert`` (base64; ``cert`` empty when the CA signed) and, for people only, the
``revocation`` its body says. Reading checks the shape alone: whoever uses
the records verifies them (:class:`~headcount.pki.revocation_book.RevocationBook`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from headcount.core.errors import InputError

from .revocation_record import RecordRefused, RevocationClaim, SignedRevocation

FORMAT = "headcount-signed-revocations/1"
MAX_FILE_RECORDS = 65_536


def record_to_dict(record: SignedRevocation) -> dict[str, Any]:
    """One record as JSON: its bytes (base64) and, for people, what it says."""
    out: dict[str, Any] = {
        "body": base64.b64encode(record.body).decode("ascii"),
        "sig": base64.b64encode(record.sig).decode("ascii"),
        "cert": base64.b64encode(record.cert).decode("ascii"),
    }
    try:
        out["revocation"] = RevocationClaim.decode(record.body).to_dict()
    except RecordRefused:
        out["revocation"] = None
    return out


def record_from_dict(data: Any) -> SignedRevocation:
    """Raises: InputError ``invalid_revocation_record``: not a record's shape."""
    if not isinstance(data, dict):
        raise _invalid("a record must be a JSON object")
    try:
        body, sig, cert = (_b64(data.get(k)) for k in ("body", "sig", "cert"))
    except (binascii.Error, ValueError, TypeError):
        raise _invalid("a record's body, sig and cert must be base64 strings") from None
    return SignedRevocation(body, sig, cert)


def records_to_json(org: str, records: Iterable[SignedRevocation]) -> str:
    data = {"format": FORMAT, "org": org, "records": [record_to_dict(r) for r in records]}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def records_from_json(text: str | bytes) -> list[SignedRevocation]:
    """The records of a revocation file (not verified).

    Raises:
        InputError: ``invalid_revocation_record``: not such a file.
    """
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _invalid(f"not a {FORMAT} document")
    items = data.get("records")
    if not isinstance(items, list) or len(items) > MAX_FILE_RECORDS:
        raise _invalid(f"records must be a list of at most {MAX_FILE_RECORDS}")
    return [record_from_dict(item) for item in items]


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return base64.b64decode(value, validate=True)


def _invalid(why: str) -> InputError:
    return InputError(f"invalid revocation file: {why}", code="invalid_revocation_record")


__all__ = [
    "FORMAT",
    "record_from_dict",
    "record_to_dict",
    "records_from_json",
    "records_to_json",
]
