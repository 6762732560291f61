"""Each conflict kind of the reference documents has a defined outcome.

See docs/data-model.md, "Conflict kinds and their outcomes".
"""

from __future__ import annotations

import pytest

from headcount import ConflictKind, NotFoundError, PermissionDeniedError, Role

from .support.sync import sync, sync_all

EV = "ev"


@pytest.fixture
def trio(make_replica):
    admin = make_replica("admin", Role.ADMIN)
    north = make_replica("north")
    south = make_replica("south")
    admin.create_event(EV, "Conf", {"participant": {"dietary": "union", "badge": "earliest"}})
    admin.import_participants(
        EV,
        [
            {"id": "p1", "name": "Ann", "qr_token": "Q1", "allergies": "none"},
            {"id": "p2", "name": "Bob", "qr_token": "Q2"},
        ],
    )
    sync_all([admin, north, south])
    return admin, north, south


# -- concurrent modification ------------------------------------------------


def test_concurrent_lww_edit_takes_the_later_write_everywhere(trio, clock):
    admin, north, south = trio
    north.upsert_participant(EV, "p1", {"name": "Ann North"})
    clock.advance(5)
    south.upsert_participant(EV, "p1", {"name": "Ann South"})
    sync_all([admin, north, south])
    assert {r.participant(EV, "p1").fields["name"] for r in trio} == {"Ann South"}
    assert all(r.conflicts(EV) == [] for r in trio)


def test_lww_tie_on_timestamp_is_broken_by_device_id(trio):
    admin, north, south = trio
    north.upsert_participant(EV, "p1", {"phone": "111"})
    south.upsert_participant(EV, "p1", {"phone": "222"})  # same fake wall ms
    sync_all([admin, north, south])
    values = {r.participant(EV, "p1").fields["phone"] for r in trio}
    assert len(values) == 1
    cands = north.event(EV).doc.field_candidates("p", "p1", "phone")
    assert len(cands) == 2  # both concurrent writes are kept ...
    assert cands[0].hlc == cands[1].hlc  # a true tie: the device id decides
    winner = max(cands, key=lambda e: (e.hlc, e.device))
    assert values == {winner.fields["phone"]}  # ... and every replica reads the same one


def test_concurrent_edits_of_different_fields_both_survive(trio):
    admin, north, south = trio
    north.upsert_participant(EV, "p1", {"name": "Ann N"})
    south.upsert_participant(EV, "p1", {"phone": "555"})
    sync_all([admin, north, south])
    for r in trio:
        fields = r.participant(EV, "p1").fields
        assert (fields["name"], fields["phone"]) == ("Ann N", "555")


def test_critical_field_concurrent_edit_is_a_conflict_not_a_merge(trio):
    admin, north, south = trio
    north.upsert_participant(EV, "p1", {"allergies": "nuts"})
    south.upsert_participant(EV, "p1", {"allergies": "fish"})
    sync_all([admin, north, south])
    for r in trio:
        p = r.participant(EV, "p1")
        assert p.fields["allergies"] is None and p.conflicted == ("allergies",)
        [c] = r.conflicts(EV)
        assert c.kind is ConflictKind.CONCURRENT_EDIT
        assert sorted(x.value for x in c.candidates) == ["fish", "nuts"]
        assert {x.device for x in c.candidates} == {north.device_id, south.device_id}


def test_critical_concurrent_equal_values_do_not_conflict(trio):
    admin, north, south = trio
    north.upsert_participant(EV, "p1", {"allergies": "nuts"})
    south.upsert_participant(EV, "p1", {"allergies": "nuts"})
    sync_all([admin, north, south])
    assert all(r.conflicts(EV) == [] for r in trio)
    assert north.participant(EV, "p1").fields["allergies"] == "nuts"


def test_resolution_not_seen_by_a_concurrent_writer_does_not_close_the_new_conflict(trio):
    admin, north, south = trio
    north.upsert_participant(EV, "p1", {"allergies": "nuts"})
    south.upsert_participant(EV, "p1", {"allergies": "fish"})
    sync_all([admin, north, south])
    cid = admin.conflicts(EV)[0].id
    admin.resolve_conflict(EV, cid, value="nuts, fish", use_value=True)
    north.upsert_participant(EV, "p1", {"allergies": "latex"})  # has not seen the resolution
    sync_all([admin, north, south])
    for r in trio:
        [c] = r.conflicts(EV)
        assert c.id != cid
        assert sorted(x.value for x in c.candidates) == ["latex", "nuts, fish"]
    assert admin.event(EV).resolutions()[0]["conflict"]["id"] == cid


def test_configuration_is_an_authoritys_a_gate_is_refused_locally(trio):
    admin, north, _ = trio
    admin.set_config(EV, "doors_open", "09:00")
    with pytest.raises(PermissionDeniedError, match="admin or relay"):
        north.set_config(EV, "doors_open", "08:00")
    with pytest.raises(PermissionDeniedError, match="admin or relay"):
        north.create_event("other", "Other")
    assert north.version_vector(EV).get(north.device_id, 0) == 0  # nothing written


def test_authority_policy_admin_value_beats_a_later_gate_value(make_replica, clock):
    admin, north, south = (
        make_replica(n, r) for n, r in (("a", Role.ADMIN), ("n", Role.GATE), ("s", Role.GATE))
    )
    admin.create_event(EV, "Conf", {"participant": {"tier": "authority"}})
    admin.import_participants(EV, [{"id": "p1", "name": "Ann"}, {"id": "p2", "name": "Bob"}])
    sync_all([admin, north, south])
    admin.upsert_participant(EV, "p1", {"tier": "gold"})
    north.upsert_participant(EV, "p1", {"tier": "bronze"})  # concurrent, later clock
    clock.advance(1000)
    sync_all([admin, north, south])
    assert {r.participant(EV, "p1").fields["tier"] for r in (admin, north, south)} == {"gold"}
    north.upsert_participant(EV, "p1", {"tier": "silver"})  # after seeing the admin's: still loses
    sync_all([admin, north, south])
    assert {r.participant(EV, "p1").fields["tier"] for r in (admin, north, south)} == {"gold"}
    north.upsert_participant(EV, "p2", {"tier": "silver"})  # no authority value: the gate's stands
    sync_all([admin, north, south])
    assert south.participant(EV, "p2").fields["tier"] == "silver"


def test_union_and_earliest_policies_from_the_event_schema(trio, clock):
    admin, north, south = trio
    north.upsert_participant(EV, "p2", {"dietary": ["vegan"], "badge": "B-20"})
    south.upsert_participant(EV, "p2", {"dietary": ["halal"], "badge": "B-10"})
    sync_all([admin, north, south])
    south.upsert_participant(EV, "p2", {"dietary": ["kosher"], "badge": "B-30"})
    sync_all([admin, north, south])
    for r in trio:
        fields = r.participant(EV, "p2").fields
        assert fields["dietary"] == ["halal", "kosher", "vegan"]
        assert fields["badge"] == "B-10"


# -- modification of a deleted participant ------------------------------------


def test_modification_of_deleted_participant_becomes_a_conflict(trio):
    admin, north, south = trio
    admin.delete_participant(EV, "p2")
    north.upsert_participant(EV, "p2", {"phone": "999"})  # north has not seen the delete
    sync_all([admin, north, south])
    for r in trio:
        p = r.participant(EV, "p2")
        assert p.deleted
        [c] = r.conflicts(EV)
        assert c.kind is ConflictKind.MODIFIED_DELETED
        assert any(x.value == {"phone": "999"} for x in c.candidates)
    assert "p2" not in [p.id for p in south.event(EV).participants()]
    with pytest.raises(NotFoundError):
        south.upsert_participant(EV, "p2", {"phone": "000"})  # has seen it: refused
    with pytest.raises(NotFoundError):
        south.check_in(EV, "p2")


def test_restoring_keeps_the_concurrent_modification(trio):
    admin, north, south = trio
    admin.delete_participant(EV, "p2")
    north.upsert_participant(EV, "p2", {"phone": "999"})
    sync_all([admin, north, south])
    admin.resolve_conflict(EV, admin.conflicts(EV)[0].id, restore=True)
    sync_all([admin, north, south])
    for r in trio:
        p = r.participant(EV, "p2")
        assert not p.deleted and p.fields["phone"] == "999"
        assert r.conflicts(EV) == []


def test_confirming_the_delete_closes_the_conflict(trio):
    admin, north, south = trio
    admin.delete_participant(EV, "p2")
    north.upsert_participant(EV, "p2", {"phone": "999"})
    sync_all([admin, north, south])
    admin.resolve_conflict(EV, admin.conflicts(EV)[0].id, restore=False)
    sync_all([admin, north, south])
    for r in trio:
        assert r.participant(EV, "p2").deleted
        assert r.conflicts(EV) == []


def test_scans_of_a_participant_survive_their_deletion(trio):
    admin, north, south = trio
    scan = north.check_in(EV, "Q2").scan
    sync_all([admin, north, south])
    admin.delete_participant(EV, "p2")
    sync_all([admin, north, south])
    for r in trio:
        assert scan.id in r.event(EV).doc.scans
        assert r.event(EV).attendance("p2").check_in == scan


# -- duplicate creation -----------------------------------------------------------


def test_duplicate_creation_of_the_same_participant_merges_into_one(make_replica, clock):
    admin = make_replica("admin", Role.ADMIN)
    north, south = make_replica("north"), make_replica("south")
    admin.create_event(EV)
    sync_all([admin, north, south])
    north.import_participants(EV, [{"id": "walk-in-7", "name": "Dee", "allergies": "nuts"}])
    clock.advance(3)
    south.import_participants(
        EV, [{"id": "walk-in-7", "name": "Dee K.", "allergies": "nuts", "email": "dee@example.org"}]
    )
    sync_all([admin, north, south])
    for r in (admin, north, south):
        people = r.event(EV).participants()
        assert [p.id for p in people] == ["walk-in-7"]
        assert people[0].fields == {
            "name": "Dee K.",
            "allergies": "nuts",
            "email": "dee@example.org",
        }
        assert r.conflicts(EV) == []


def test_duplicate_creation_with_different_critical_values_conflicts(make_replica):
    admin = make_replica("admin", Role.ADMIN)
    north, south = make_replica("north"), make_replica("south")
    admin.create_event(EV)
    sync_all([admin, north, south])
    north.import_participants(EV, [{"id": "w1", "name": "Dee", "medical_notes": "asthma"}])
    south.import_participants(EV, [{"id": "w1", "name": "Dee", "medical_notes": "diabetes"}])
    sync_all([admin, north, south])
    [c] = admin.conflicts(EV)
    assert (c.record, c.field) == ("w1", "medical_notes")


# -- the same participant at two gates at once -------------------------------------


def test_two_gates_at_once_make_one_record_with_the_earliest_check_in(trio, clock):
    admin, north, south = trio
    clock.advance(10)
    late = north.check_in(EV, "Q1", gate="north")
    early = south.check_in(EV, "Q1", gate="south", at_ms=clock.now - 2000)
    sync_all([admin, north, south])
    for r in trio:
        ev = r.event(EV)
        assert [a.participant for a in ev.attendance_list()] == ["p1"]
        record = ev.attendance("p1")
        assert record.check_in == early.scan
        assert record.check_in.gate == "south"
        assert {s.id for s in record.scans} == {early.scan.id, late.scan.id}
        assert r.status(EV).checked_in == 1


def test_check_out_takes_the_latest_scan(trio, clock):
    admin, north, south = trio
    north.check_out(EV, "p1", gate="north")
    clock.advance(60_000)
    last = south.check_out(EV, "p1", gate="south")
    sync_all([admin, north, south])
    assert {r.event(EV).attendance("p1").check_out.id for r in trio} == {last.scan.id}


def test_repeated_scan_is_applied_once_everywhere(trio):
    admin, north, south = trio
    first = north.check_in(EV, "Q1")
    again = north.check_in(EV, "Q1", scan_id=first.scan.id)
    assert first.recorded and not again.recorded and again.scan == first.scan
    sync(north, south)
    resent = south.check_in(EV, "Q1", scan_id=first.scan.id)  # re-sent to another gate
    assert not resent.recorded
    sync_all([admin, north, south])
    assert all(len(r.event(EV).doc.scans) == 1 for r in trio)


def test_duplicate_by_device_and_client_timestamp(trio, clock):
    _admin, north, _ = trio
    at = clock.now - 1000
    first = north.check_in(EV, "p1", at_ms=at)
    twin = north.check_in(EV, "p1", at_ms=at)  # new idempotency key, same device + time
    assert first.recorded and not twin.recorded and twin.scan.id == first.scan.id
