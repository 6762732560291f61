"""Y client ids bound to the device that writes under them. Pure.

Every Y struct names its writer's *client id*. A signature proves which
device sent an update, not whose client ids its structs use, so a device
could write items under another device's client id (and make that device's
own later items look like duplicates to yrs). headcount therefore derives
the client id a device's document writes under from what the device signs:

    client = prefix(device, event, start) << 16 | start mod 2**16

``start`` is the sequence number of the first log entry the document
instance writes (a fresh one at every start, so an id is never reused:
design.md), and ``prefix`` 37 bits of SHA-256 over a domain tag, the device
id, the event id and ``start``. The result fits Y's 53 bits.

A verifier holding a signed entry ``(event, device, seq)`` checks that each
of its update's clients is ``derive(device, event, s)`` for some
``s <= seq`` congruent to the id's low 16 bits: one hash per 65,536 entries
of the device's log, no state, the same answer on every replica. Finding a
``start`` whose id equals another device's means matching 37 bits of
SHA-256 with an entry chain of that length: out of reach.
"""

from __future__ import annotations

import functools
import hashlib

_DOMAIN = b"headcount/yclient/v1\x00"
_LOW_BITS = 16
_LOW_MASK = (1 << _LOW_BITS) - 1
_PREFIX_MASK = (1 << (53 - _LOW_BITS)) - 1


@functools.lru_cache(maxsize=4096)
def derive_client_id(device: str, event: str, start: int) -> int:
    """The Y client id of ``device``'s document of ``event`` whose first
    entry is ``start`` (>= 1)."""
    digest = hashlib.sha256(_DOMAIN + f"{device}\x00{event}\x00{start}".encode()).digest()
    prefix = int.from_bytes(digest[:8], "big") & _PREFIX_MASK
    return prefix << _LOW_BITS | (start & _LOW_MASK)


_FOUND: dict[tuple[int, str, str], int] = {}
_FOUND_MAX = 65536


def client_start(client: int, device: str, event: str, limit: int) -> int | None:
    """The ``start`` (<= ``limit``) from which ``device`` derives ``client``
    for ``event``, or None if ``client`` is not one of its ids."""
    key = (client, device, event)
    start = _FOUND.get(key)
    if start is not None:
        return start if start <= limit else None
    if not 0 < client < 1 << 53 or limit < 1:
        return None
    low = client & _LOW_MASK
    for start in range(low or 1 << _LOW_BITS, limit + 1, 1 << _LOW_BITS):
        if derive_client_id(device, event, start) == client:
            if len(_FOUND) >= _FOUND_MAX:
                _FOUND.clear()  # a cache of hits only: any entry can be recomputed
            _FOUND[key] = start
            return start
    return None


def client_of(client: int, device: str, event: str, seq: int) -> bool:
    """Whether entry ``seq`` of ``device`` on ``event`` may carry structs of
    ``client``: the id is derived from one of the device's entries up to it."""
    return client_start(client, device, event, seq) is not None


__all__ = ["client_of", "client_start", "derive_client_id"]
