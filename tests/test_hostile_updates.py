"""A compromised gate writes crafted Y content into its own signed log
(issue 11): every attack class is refused before it touches a document, or
where it is accepted (a gate may write what a gate may write) it cannot
change what honest devices' entries read as.

The venue: an admin, a lazy relay, two honest gates and the attacker, an
enrolled gate with its own valid key (tests/support/attacker.py). Entries
travel through the replicas' receive path (``ReplicaLog.ingest``: shape,
signature, chain, then what the entry does).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from headcount import Replica, Role
from headcount.core.eventdoc import EventDoc
from headcount.core.hlc import HybridClock
from headcount.core.yclient import derive_client_id
from headcount.protocol.logview import IngestResult
from headcount.protocol.wire import Segments, encode
from headcount.replica.log import ReplicaLog

from .support.attacker import Attacker, Crafting, NothingWritten
from .support.clock import FakeClock
from .support.protocol import ConnectionPair
from .support.replicas import introduce, view
from .support.sync import sync_all

EV = "ev"
SCHEMA = {"participant": {"tier": "authority"}}


@dataclass
class Venue:
    admin: Replica
    relay: Replica
    g1: Replica
    g2: Replica
    evil: Replica
    clock: FakeClock
    scans: dict[str, str]  # honest scan id -> participant
    base: Path

    @property
    def honest(self) -> list[Replica]:
        return [self.admin, self.relay, self.g1, self.g2]

    def close(self) -> None:
        for r in (*self.honest, self.evil):
            r.close()


def build_venue(base: Path, clock: FakeClock) -> Venue:
    def open_(name: str, role: Role) -> Replica:
        Replica.init(base / name, role=role, name=name)
        return Replica.open(base / name, wall_clock=clock)

    admin, relay = open_("admin", Role.ADMIN), open_("relay", Role.RELAY)
    g1, g2, evil = open_("g1", Role.GATE), open_("g2", Role.GATE), open_("evil", Role.GATE)
    relay.lazy_apply = True
    introduce(admin, relay, g1, g2, evil)
    admin.create_event(EV, "Conf", SCHEMA)
    admin.import_participants(
        EV, [{"id": f"p{i}", "name": f"P{i}", "allergies": "none"} for i in range(1, 5)]
    )
    admin.upsert_participant(EV, "p1", {"tier": "gold"})
    sync_all([admin, relay, g1, g2])
    scans = {}
    for gate, who in ((g1, "p1"), (g2, "p2"), (g1, "p3")):
        scans[gate.check_in(EV, who).scan.id] = who
    scans[relay.check_in(EV, "p4", device="api-phone-1").scan.id] = "p4"  # the HTTP API's way
    clock.advance(10)
    g1.upsert_participant(EV, "p2", {"allergies": "nuts"})  # concurrent edits of a critical
    g2.upsert_participant(EV, "p2", {"allergies": "fish"})  # field: an open conflict
    sync_all([admin, relay, g1, g2, evil])
    return Venue(admin, relay, g1, g2, evil, clock, scans, base)


@pytest.fixture
def venue(tmp_path: Path, clock: FakeClock) -> Iterator[Venue]:
    v = build_venue(tmp_path, clock)
    yield v
    v.close()


def deliver(v: Venue, attacker: Attacker, body: Any, **kw: Any) -> list[IngestResult]:
    """Craft one entry and send it to the relay and both gates directly,
    then let the honest devices sync among themselves (the relay forwards)."""
    segment = attacker.craft(body, **kw)
    results = attacker.send(segment, v.relay, v.g1, v.g2)
    sync_all(v.honest)
    return results  # type: ignore[return-value]


def assert_refused_everywhere(v: Venue, results: list[IngestResult], reason: str) -> None:
    for result in results:
        assert result.applied == 0 and result.pending == 0
        assert [x.reason for x in result.violations] == [reason]
        assert result.violations[0].device == v.evil.device_id
    for r in v.honest[1:]:  # the relay and both gates received it
        assert v.evil.device_id in r.store.quarantined(EV)
        assert r.refused[reason] == 1


def assert_honest_intact(v: Venue, before: dict[str, Any] | None = None) -> None:
    """Honest replicas are identical; every honest scan is present, as it
    was recorded; the admin's authority value and the open conflict stand."""
    views = [view(r) for r in v.honest]
    assert all(x == views[0] for x in views), "honest replicas diverged"
    for r in v.honest:
        ev = r.event(EV)
        for sid, who in v.scans.items():
            assert ev.doc.scans[sid].participant == who
        assert r.participant(EV, "p1").fields["tier"] == "gold"
        assert "allergies" in r.participant(EV, "p2").conflicted
        assert not r.participant(EV, "p3").deleted
        assert ev.config()["name"] == "Conf"
    if before is not None:
        assert views[0] == before


# -- the attack classes --------------------------------------------------------


def test_erasing_other_devices_scans_is_refused(venue: Venue) -> None:
    before = view(venue.g1)
    attacker = Attacker(venue.evil, EV)
    results = deliver(venue, attacker, lambda c: c.scans.__delitem__(slice(0, 2)))
    assert_refused_everywhere(venue, results, "deletes_items")
    assert_honest_intact(venue, before)


def test_a_register_entry_naming_the_admin_as_author_is_refused(venue: Venue) -> None:
    before = view(venue.g1)
    admin_dot = f"{venue.admin.device_id}:99"

    def body(c: Crafting) -> None:
        c.register("p3", {"_deleted": True}, dot=admin_dot, role="admin", aux={"seen": []})

    results = deliver(venue, Attacker(venue.evil, EV), body)
    assert_refused_everywhere(venue, results, "forged_author")
    assert_honest_intact(venue, before)


def test_an_entry_claiming_an_unknown_admin_is_refused(venue: Venue) -> None:
    before = view(venue.g1)
    stranger = f"{'ab' * 10}:1"

    def body(c: Crafting) -> None:
        c.register("p3", {"_deleted": True}, dot=stranger, role="admin")

    results = deliver(venue, Attacker(venue.evil, EV), body)
    assert_refused_everywhere(venue, results, "forged_author")
    assert_honest_intact(venue, before)


def test_claiming_the_admin_role_under_its_own_name_is_refused(venue: Venue) -> None:
    before = view(venue.g1)
    results = deliver(
        venue,
        Attacker(venue.evil, EV),
        lambda c: c.register("p3", {"_deleted": True}, role="admin"),
    )
    assert_refused_everywhere(venue, results, "forged_role")
    assert_honest_intact(venue, before)


def test_deleting_a_participant_as_a_gate_is_refused(venue: Venue) -> None:
    before = view(venue.g1)
    results = deliver(
        venue, Attacker(venue.evil, EV), lambda c: c.register("p3", {"_deleted": True})
    )
    assert_refused_everywhere(venue, results, "role_required")
    assert_honest_intact(venue, before)


def test_a_scan_in_another_gates_name_is_refused(venue: Venue) -> None:
    before = view(venue.g1)
    sid = str(uuid.uuid4())
    results = deliver(
        venue, Attacker(venue.evil, EV), lambda c: c.scan(sid, "p3", device=venue.g1.device_id)
    )
    assert_refused_everywhere(venue, results, "forged_author")
    assert_honest_intact(venue, before)


def test_items_under_another_devices_y_client_id_are_refused(venue: Venue) -> None:
    before = view(venue.g1)
    victim = derive_client_id(venue.g1.device_id, EV, 2)  # the id g1 writes under
    sid = str(uuid.uuid4())
    results = deliver(
        venue, Attacker(venue.evil, EV), lambda c: c.scan(sid, "p3"), client_id=victim
    )
    assert_refused_everywhere(venue, results, "foreign_client")
    assert_honest_intact(venue, before)


def test_writing_the_revocations_configuration_is_refused(venue: Venue) -> None:
    before = view(venue.g1)
    victim = venue.g1.device_id
    results = deliver(
        venue,
        Attacker(venue.evil, EV),
        lambda c: c.register("revocations", {"value": [{"device_id": victim}]}, kind="c"),
    )
    assert_refused_everywhere(venue, results, "role_required")
    assert_honest_intact(venue, before)


def test_resolving_a_conflict_as_a_gate_is_refused(venue: Venue) -> None:
    before = view(venue.g1)
    [conflict] = venue.g1.conflicts(EV)
    dots = frozenset(x.dot for x in conflict.candidates)

    def body(c: Crafting) -> None:
        c.register("p2", {"allergies": "none"}, sup=dots, aux={"resolves": conflict.id})

    results = deliver(venue, Attacker(venue.evil, EV), body)
    assert_refused_everywhere(venue, results, "role_required")
    assert_honest_intact(venue, before)


def test_superseding_an_authority_value_is_accepted_but_never_takes_effect(venue: Venue) -> None:
    """A gate may write an authority-policy field (its value loses); listing
    the admin's entry as superseded is ignored at read time everywhere."""
    entries = venue.g1.event(EV).doc.records["p\x1fp1"].values()
    admin_dots = frozenset(e.dot for e in entries if "tier" in e.fields)
    results = deliver(
        venue, Attacker(venue.evil, EV), lambda c: c.register("p1", {"tier": "tin"}, sup=admin_dots)
    )
    assert all(r.applied == 1 and not r.violations for r in results)
    assert_honest_intact(venue)  # tier still "gold" everywhere


def test_closing_a_critical_conflict_by_superseding_it_never_takes_effect(venue: Venue) -> None:
    """Only an admin closes a conflict: a gate entry superseding candidates
    that hold different values supersedes none of them (read time)."""
    [conflict] = venue.g1.conflicts(EV)
    dots = frozenset(x.dot for x in conflict.candidates)
    results = deliver(
        venue, Attacker(venue.evil, EV), lambda c: c.register("p2", {"allergies": "x"}, sup=dots)
    )
    assert all(r.applied == 1 and not r.violations for r in results)
    assert_honest_intact(venue)  # p2's allergies still conflicted everywhere
    still = {x.dot for c in venue.g2.conflicts(EV) for x in c.candidates}
    assert dots <= still


def test_reusing_an_honest_scans_key_hides_nothing(venue: Venue) -> None:
    """The attacker records a scan under an honest scan's idempotency key,
    in its own name (allowed: a false scan, attributable to it): the honest
    scan stays, under its key or beside it, on every replica."""
    sid = next(iter(venue.scans))
    results = deliver(venue, Attacker(venue.evil, EV), lambda c: c.scan(sid, "p4"))
    assert all(r.applied == 1 for r in results)
    for r in venue.honest:
        kept = [s for s in r.event(EV).doc.scans.values() if s.id == sid]
        assert {s.device for s in kept} == {venue.g1.device_id, venue.evil.device_id}
    views = [view(r) for r in venue.honest]
    assert all(x == views[0] for x in views)


def test_through_sessions_the_relay_refuses_reports_and_forwards_nothing(venue: Venue) -> None:
    """The attacker's entry sent in a real session to the relay: the session
    reports the refusal as an effect, and the relay's next session with an
    honest gate carries nothing of it."""
    segment = Attacker(venue.evil, EV).craft(lambda c: c.scans.__delitem__(0))
    pair = ConnectionPair(ReplicaLog(venue.evil), ReplicaLog(venue.relay))
    pair.run()
    pair.inject(1, encode(Segments(EV, (segment,))))
    pair.run()
    assert [(r.device, r.reason) for r in pair.sides[1].refused] == [
        (venue.evil.device_id, "deletes_items")
    ]
    onward = ConnectionPair(ReplicaLog(venue.relay), ReplicaLog(venue.g2))
    onward.run()
    assert venue.evil.device_id not in venue.g2.version_vector(EV)
    assert_honest_intact(venue)


def test_an_entry_stored_before_the_checks_claiming_an_unknown_admin_is_ignored() -> None:
    """Read-time: a document that already holds an entry by a device not in
    the directory claiming the admin role (applied before validation
    existed) does not treat it as an admin's."""
    from headcount.core import registers as R

    stranger = "cd" * 10
    author = EventDoc(EV, stranger, "admin", HybridClock(), role_of=None)
    author.transact(1, lambda dot, hlc: author._append(author.regs, R.encode_entry(
        "p", "p1", dot, {"_deleted": True}, hlc, "admin", ()
    )))  # fmt: skip
    reader = EventDoc(EV, "ef" * 10, "gate", HybridClock(), role_of={}.get)
    reader.apply_remote(author.encode_state())
    assert reader.records == {} and reader.refused == 1


# -- generated attacks ---------------------------------------------------------

AUTHORS = ("self", "admin", "g1", "stranger")
ROLES = ("gate", "admin", "relay")


def _op() -> st.SearchStrategy[tuple[Any, ...]]:
    return st.one_of(
        st.tuples(st.just("delete"), st.sampled_from("rsh"), st.integers(0, 8)),
        st.tuples(
            st.just("register"),
            st.sampled_from(("p", "c", "x")),
            st.sampled_from(("p1", "p2", "p3", "name", "revocations", "new")),
            st.sampled_from(AUTHORS),
            st.sampled_from(ROLES),
            st.sampled_from(("name", "tier", "allergies", "_deleted", "value")),
            st.booleans(),  # supersede every entry of the record
            st.sampled_from((None, {"resolves": "c0ffee"}, {"seen": []})),
            st.booleans(),  # stamp with another timestamp
        ),
        st.tuples(st.just("scan"), st.sampled_from(AUTHORS), st.booleans()),
        st.tuples(st.just("history"), st.sampled_from(AUTHORS)),
        st.tuples(st.just("root"), st.sampled_from(("x", "map"))),
    )


def _apply_op(v: Venue, c: Crafting, op: tuple[Any, ...]) -> None:
    who = {
        "self": v.evil.device_id,
        "admin": v.admin.device_id,
        "g1": v.g1.device_id,
        "stranger": "ab" * 10,
    }
    if op[0] == "delete":
        array = {"r": c.regs, "s": c.scans, "h": c.history}[op[1]]
        if len(array) > op[2]:
            del array[op[2]]
    elif op[0] == "register":
        _, kind, record, author, role, field, sup_all, aux, skew = op
        sup = frozenset()
        if sup_all:
            sup = frozenset(v.g1.event(EV).doc.records.get(f"{kind}\x1f{record}", {}))
        c.register(
            record,
            {field: "evil"},
            kind=kind,
            dot=f"{who[author]}:{c.seq}",
            role=role,
            sup=sup,
            aux=aux,
            hlc=c.hlc - 1 if skew else None,
        )
    elif op[0] == "scan":
        _, author, reuse = op
        sid = next(iter(v.scans)) if reuse else str(uuid.uuid4())
        c.scan(sid, "p3", device=who[author])
    elif op[0] == "history":
        record = {"conflict": {"id": "c0ffee"}, "by": who[op[1]], "dot": c.dot, "at": c.hlc}
        import json

        c.history.append(json.dumps(record))
    elif op[0] == "root":
        from pycrdt import Map

        if op[1] == "x":
            c.doc.get("x", type=type(c.regs)).append("junk")
        else:
            c.doc.get("m", type=Map)["k"] = "v"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
@given(ops=st.lists(_op(), min_size=1, max_size=4), foreign=st.booleans())
def test_generated_attacks_never_change_what_honest_entries_read_as(
    ops: list[tuple[Any, ...]], foreign: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        v = build_venue(Path(tmp), FakeClock())
        try:
            attacker = Attacker(v.evil, EV)
            client = derive_client_id(v.g2.device_id, EV, 1) if foreign else None
            try:
                results = deliver(v, attacker, lambda c: [_apply_op(v, c, op) for op in ops],
                                  client_id=client)  # fmt: skip
            except NothingWritten:
                assume(False)
            refused = [x for r in results for x in r.violations]
            if refused:
                for r in v.honest[1:]:
                    assert v.evil.device_id in r.store.quarantined(EV)
                assert all(r.applied == 0 for r in results)
            assert_honest_intact(v)
        finally:
            v.close()


# -- snapshots -------------------------------------------------------------------


def _state_with(v: Venue, client: int, body: Any) -> bytes:
    from pycrdt import Array, Doc

    doc: Doc = Doc(client_id=client)
    doc.apply_update(v.relay.event(EV).doc.encode_state())
    with doc.transaction():
        body(doc.get("s", type=Array))
    return doc.get_update()


def _items(r: Replica, device: str) -> list[Any]:
    from headcount.core.validate import decode_update
    from headcount.core.yclient import client_of

    state = decode_update(r.event(EV).doc.encode_state())
    return [i for i in state.items if client_of(i.client, device, EV, 100)]


def test_an_honest_authoritys_snapshot_passes_the_same_checks(venue: Venue) -> None:
    from headcount.core.validate import check_snapshot

    venue.g1.close()  # a restart: g1 writes under a new client id from now on
    venue.g1 = g1 = Replica.open(venue.base / "g1", wall_clock=venue.clock)
    g1.check_in(EV, "p4")
    sync_all(venue.honest)
    venue.relay.status(EV)  # a read: the lazy relay applies what it logged
    assert len({i.client for i in _items(venue.relay, g1.device_id)}) == 2
    state = venue.relay.event(EV).doc.encode_state()
    assert check_snapshot(state, EV, venue.relay.roles, {}) is None


def test_a_snapshot_that_deletes_or_forges_authorship_is_refused(venue: Venue) -> None:
    from headcount.core.validate import check_snapshot

    roles = venue.relay.roles
    evil_client = derive_client_id(venue.evil.device_id, EV, 1)
    deleting = _state_with(venue, evil_client, lambda s: s.__delitem__(0))
    assert check_snapshot(deleting, EV, roles, {}) is not None
    sid = str(uuid.uuid4())
    hlc = venue.g1.clock.now(venue.clock())
    forged = f"{sid}\x1fp3\x1fin\x1f{hlc >> 16}\x1f{hlc}\x1fevil\x1fqr\x1f{venue.g1.device_id}"
    forging = _state_with(venue, evil_client, lambda s: s.append(forged))
    why = check_snapshot(forging, EV, roles, {})
    assert why is not None and why.startswith("foreign_client")
