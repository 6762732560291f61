"""Multi-value registers with per-field merge policies (pure functions).

A record (a participant, a configuration key) is a set of *entries*, one per
write, appended to a root array of the event document (so two devices never
create the same container, see design.md). An entry holds the fields it
wrote, its hybrid-clock timestamp, the writer's role, and ``sup``: the dots
of the entries it supersedes for the fields they share. Entries are never
deleted; superseded ones simply stop being candidates.

For a field ``f`` the *candidates* are the entries holding ``f`` that no entry
holding ``f`` supersedes. One candidate: sequential history. Several:
concurrent writes, which the field's policy merges, or, for a critical field
with different values, a conflict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .schema import Policy

SEP = "\x1f"
DELETED = "_deleted"
AUTHORITY_ROLES = frozenset({"admin", "relay"})


@dataclass(frozen=True, slots=True)
class RegEntry:
    kind: str
    record: str
    dot: str
    device: str
    fields: Mapping[str, Any]
    hlc: int
    role: str
    sup: frozenset[str]
    aux: Mapping[str, Any] | None

    @property
    def order(self) -> tuple[int, str]:
        """Last-writer-wins order: timestamp, then device id."""
        return (self.hlc, self.device)


def dot_device(dot: str) -> str:
    return dot.rpartition(":")[0]


def encode_entry(
    kind: str,
    record: str,
    dot: str,
    fields: Mapping[str, Any],
    hlc: int,
    role: str,
    sup: Iterable[str],
    aux: Any = None,
) -> str:
    """The array element of an entry: one string, ``SEP``-separated, the
    fields last as JSON (JSON escapes ``SEP``, and values round-trip exactly,
    which Y numbers would not)."""
    return SEP.join(
        (
            kind,
            record,
            dot,
            str(hlc),
            role,
            ",".join(sorted(sup)),
            "" if aux is None else _canon(aux),
            json.dumps(fields, separators=(",", ":"), sort_keys=True, ensure_ascii=False),
        )
    )


def decode_entry(raw: Any) -> RegEntry | None:
    """Parse an array element; ``None`` for anything malformed (ignored
    identically on every replica, so it cannot cause divergence)."""
    try:
        kind, record, dot, hlc, role, sup, aux, fields_json = raw.split(SEP, 7)
        fields = json.loads(fields_json)
        if not isinstance(fields, dict) or not dot:
            return None
        return RegEntry(
            kind=kind,
            record=record,
            dot=dot,
            device=dot_device(dot),
            fields=fields,
            hlc=int(hlc),
            role=role,
            sup=frozenset(sup.split(",")) if sup else frozenset(),
            aux=json.loads(aux) if aux else None,
        )
    except (TypeError, ValueError, AttributeError):
        return None


def candidates(
    entries: Iterable[RegEntry], field: str, policy: Policy | None = None
) -> list[RegEntry]:
    """The entries holding ``field`` that no other entry holding it
    supersedes, in a deterministic order (by timestamp, then device).

    A superseded-set is honoured only as far as its writer's role allows
    under ``policy`` (:func:`honoured`), checked here, at read time, on
    every replica: a writer cannot make its entry win by listing what it
    may not supersede, and entries stored before the check cannot either.
    """
    holding = [e for e in entries if field in e.fields]
    superseded: set[str] = set()
    restricted = policy is Policy.AUTHORITY or policy is Policy.CRITICAL
    by_dot = {e.dot: e for e in holding} if restricted else {}
    for e in holding:
        if e.sup:
            superseded |= honoured(policy, e, by_dot, field) if restricted else e.sup
    live = [e for e in holding if e.dot not in superseded]
    live.sort(key=lambda e: e.order)
    return live


def honoured(
    policy: Policy | None, entry: RegEntry, by_dot: Mapping[str, RegEntry], field: str
) -> frozenset[str]:
    """The dots of ``entry``'s superseded-set that take effect for ``field``.

    - ``authority``: only an admin or relay supersedes an authority value;
    - ``critical``: only an admin closes a conflict, so an entry by anyone
      else that supersedes entries holding *different* values (which an
      honest device never writes: they were a conflict) supersedes none;
    - otherwise, all of them.
    """
    if entry.role == "admin" or policy is None:
        return entry.sup
    if policy is Policy.AUTHORITY:
        if entry.role in AUTHORITY_ROLES:
            return entry.sup
        return frozenset(
            d for d in entry.sup if d not in by_dot or by_dot[d].role not in AUTHORITY_ROLES
        )
    if policy is Policy.CRITICAL:
        values = {_canon(by_dot[d].fields[field]) for d in entry.sup if d in by_dot}
        return entry.sup if len(values) <= 1 else frozenset()
    return entry.sup


def value_order(value: Any) -> tuple[int, Any]:
    """A total order over JSON values, the same on every replica."""
    if isinstance(value, bool) or value is None:
        return (0, int(bool(value)))
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, json.dumps(value, sort_keys=True))


def merge(policy: Policy, live: list[RegEntry], field: str) -> tuple[Any, bool]:
    """Merge candidates under ``policy``.

    Returns:
        ``(value, conflicted)``; ``conflicted`` is only ever True for a
        critical field whose candidates hold different values.
    """
    if not live:
        return None, False
    if policy is Policy.UNION:
        merged: set[Any] = set()
        for e in live:
            value = e.fields[field]
            merged.update(value if isinstance(value, list) else [value])
        return sorted(merged, key=value_order), False
    if policy is Policy.EARLIEST:
        best = min(live, key=lambda e: (value_order(e.fields[field]), e.device))
        return best.fields[field], False
    if policy is Policy.LATEST:
        best = max(live, key=lambda e: (value_order(e.fields[field]), e.device))
        return best.fields[field], False
    if policy is Policy.AUTHORITY:
        ruling = [e for e in live if e.role in AUTHORITY_ROLES] or live
        return ruling[-1].fields[field], False
    if policy is Policy.CRITICAL and len({_canon(e.fields[field]) for e in live}) > 1:
        return None, True
    return live[-1].fields[field], False  # lww, or critical with one value


def combine(policy: Policy, current: Any, new: Any) -> Any:
    """The value a writer stores: for earliest/latest/union the new value
    folded into the current one, so superseding can never lose the winner."""
    if current is None:
        return sorted(set(new), key=value_order) if policy is Policy.UNION else new
    if policy is Policy.EARLIEST:
        return min(current, new, key=value_order)
    if policy is Policy.LATEST:
        return max(current, new, key=value_order)
    if policy is Policy.UNION:
        return sorted(set(current) | set(new), key=value_order)
    return new


def may_supersede(policy: Policy, entry: RegEntry, writer_role: str, conflicted: bool) -> bool:
    """Whether a writer of ``writer_role`` may supersede ``entry`` for a field.

    A device never overrides an authority value, and only an admin may close a
    critical conflict (a gate's write while conflicted becomes one more
    candidate).
    """
    if policy is Policy.AUTHORITY and entry.role in AUTHORITY_ROLES:
        return writer_role in AUTHORITY_ROLES
    if policy is Policy.CRITICAL and conflicted:
        return writer_role == "admin"
    return True


def conflict_id(event: str, kind: str, record: str, field: str, dots: Iterable[str]) -> str:
    """Deterministic id of a manual-merge record."""
    text = SEP.join([event, kind, record, field, ",".join(sorted(dots))])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
