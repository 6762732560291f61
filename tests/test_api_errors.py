"""Bad input to every Replica entry point: the right exception class from
headcount.core.errors (or, in apply_entries' result, ``rejected`` for what is
not an entry and ``refused`` for an entry whose update breaks the rules, its
device then quarantined), and no change, neither in memory nor on disk.

"No change" compares a snapshot (events, version vector, participants,
scan ids, conflicts, configuration, pending entries) taken before the call
with one taken after it from the live replica *and* with one from a fresh
read-only replica that loads the same data directory from disk.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headcount import (
    FutureTimestampError,
    HeadcountError,
    InputError,
    LocalProtocolError,
    LogEntry,
    NotFoundError,
    PermissionDeniedError,
    Replica,
    Role,
    StoreError,
)
from headcount.store.sqlite import DB_FILE

from .support.clock import T0
from .support.replicas import introduce
from .support.seeds import reported_seed
from .support.sync import sync

EV = "ev"
SCHEMA = {"participant": {"tags": "union", "company": "lww"}}


# -- snapshots ---------------------------------------------------------------


def snapshot(r: Replica, event: str = EV) -> dict[str, Any]:
    ev = r.event(event)
    return {
        "events": r.events(),
        "vv": r.version_vector(event),
        "participants": [p.to_dict() for p in ev.participants(include_deleted=True)],
        "scans": sorted(ev.doc.scans),
        "conflicts": [c.to_dict() for c in ev.conflicts()],
        "config": ev.config(),
        "pending": sorted((e.device, e.seq) for e in r.store.pending(event)),
    }


def on_disk(r: Replica, event: str = EV) -> dict[str, Any]:
    """The snapshot of what is stored, loaded by a fresh read-only replica."""
    with Replica.open(r.data_dir, read_only=True, wall_clock=r.wall_clock) as fresh:
        return snapshot(fresh, event)


def assert_unchanged(r: Replica, before: dict[str, Any], event: str = EV) -> None:
    assert snapshot(r, event) == before, "the in-memory state changed"
    assert on_disk(r, event) == before, "the stored state changed (or disagrees with memory)"


def refused(
    r: Replica, exc_type: type[HeadcountError], call: Callable[[], object], match: str = ""
) -> HeadcountError:
    """``call()`` must raise exactly ``exc_type`` and change nothing."""
    before = snapshot(r)
    with pytest.raises(HeadcountError, match=match or None) as info:
        call()
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {info.value}"
    assert info.value.message
    assert_unchanged(r, before)
    return info.value


# -- fixtures ----------------------------------------------------------------


@pytest.fixture
def admin(make_replica: Callable[..., Replica]) -> Replica:
    r = make_replica("admin", Role.ADMIN)
    r.create_event(EV, "Conf", SCHEMA)
    r.import_participants(
        EV,
        [
            {"id": "P1", "name": "Ann", "qr_token": "Q1", "allergies": "none"},
            {"id": "P2", "name": "Bob", "qr_token": "Q2"},
            {"id": "P3", "name": "Cy", "qr_token": "Q3", "tags": ["vip"]},
        ],
    )
    r.check_in(EV, "Q1")
    r.set_config(EV, "capacity", 100)
    return r


@pytest.fixture
def gate(make_replica: Callable[..., Replica], admin: Replica) -> Replica:
    g = make_replica("gate")
    sync(admin, g)
    return g


@pytest.fixture
def conflicted(admin: Replica, gate: Replica, clock: Any) -> str:
    """A concurrent-edit conflict on P1's allergies, on both devices; its id."""
    admin.upsert_participant(EV, "P1", {"allergies": "shellfish"})
    gate.upsert_participant(EV, "P1", {"allergies": "peanuts"})
    clock.advance(10)
    sync(admin, gate)
    sync(gate, admin)
    (conflict,) = admin.conflicts(EV)
    assert [c.id for c in gate.conflicts(EV)] == [conflict.id]
    return conflict.id


# -- open --------------------------------------------------------------------


def test_open_without_identity(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        Replica.open(tmp_path / "nowhere")
    assert info.value.code == "not_initialised"
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError) as info:
        Replica.open(tmp_path / "empty", read_only=True)
    assert info.value.code == "not_initialised"
    assert list((tmp_path / "empty").iterdir()) == []


def test_open_locked_by_another_replica(admin: Replica, clock: Any) -> None:
    before = snapshot(admin)
    with pytest.raises(StoreError) as info:
        Replica.open(admin.data_dir, wall_clock=clock)
    assert info.value.code == "locked"
    assert "in use" in info.value.message
    # The holder is unaffected, a read-only replica needs no lock ...
    assert snapshot(admin) == before
    assert on_disk(admin) == before
    admin.check_in(EV, "Q2")
    # ... and the lock is free again once the holder closes.
    admin.close()
    with Replica.open(admin.data_dir, wall_clock=clock) as again:
        assert len(again.event(EV).doc.scans) == 2


def test_read_only_replica_refuses_every_write(
    admin: Replica, gate: Replica, clock: Any, conflicted: str
) -> None:
    gate.check_in(EV, "Q2")
    peer_entries = gate.export_since(EV, admin.version_vector(EV))
    writes: list[Callable[[Replica], object]] = [
        lambda r: r.create_event("other"),
        lambda r: r.import_participants(EV, [{"id": "P9", "name": "Zed"}]),
        lambda r: r.upsert_participant(EV, "P1", {"name": "Ann B"}),
        lambda r: r.delete_participant(EV, "P2"),
        lambda r: r.set_config(EV, "capacity", 5),
        lambda r: r.check_in(EV, "Q2"),
        lambda r: r.check_out(EV, "Q1"),
        lambda r: r.resolve_conflict(EV, conflicted, value="none", use_value=True),
        lambda r: r.apply_entries(peer_entries),
    ]
    before = snapshot(admin)
    with Replica.open(admin.data_dir, read_only=True, wall_clock=clock) as ro:
        assert snapshot(ro) == before
        for write in writes:
            with pytest.raises(StoreError, match="read-only"):
                write(ro)
            assert snapshot(ro) == before
    assert_unchanged(admin, before)


def test_read_only_replica_writes_no_snapshot(admin: Replica, clock: Any) -> None:
    with Replica.open(admin.data_dir, read_only=True, wall_clock=clock) as ro:
        ro.event(EV)
        try:
            ro.maybe_snapshot(EV, every=0)
        except StoreError:
            pass
    assert admin.store.snapshot(EV) is None, "a read-only replica wrote a snapshot"


def test_open_with_an_unknown_durability_is_an_input_error(
    make_replica: Callable[..., Replica], clock: Any
) -> None:
    r = make_replica("dev")
    r.close()
    with pytest.raises(LocalProtocolError):
        Replica.open(r.data_dir, durability="sometimes", wall_clock=clock)
    Replica.open(r.data_dir, wall_clock=clock).close()  # the failed open released the lock


def test_open_corrupt_store_fails_and_releases_the_lock(
    make_replica: Callable[..., Replica], clock: Any
) -> None:
    r = make_replica("dev")
    path = r.data_dir
    r.close()
    (path / DB_FILE).write_bytes(b"this is not a database" * 100)
    for _ in range(2):  # the second attempt must not find the directory locked
        with pytest.raises(StoreError) as info:
            Replica.open(path, wall_clock=clock)
        assert info.value.code != "locked"
        assert "cannot open store" in info.value.message


# -- create_event --------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id",
    ["", "x" * 129, "nul\x00", "tab\there", "sep\x1fx", "new\nline", " edge", "edge ", None, 5],
    ids=repr,
)
def test_create_event_bad_id(admin: Replica, bad_id: Any) -> None:
    refused(admin, InputError, lambda: admin.create_event(bad_id), "event id")


@pytest.mark.parametrize("bad_name", [5, ["x"], "n" * 257], ids=repr)
def test_create_event_bad_name(admin: Replica, bad_name: Any) -> None:
    refused(admin, InputError, lambda: admin.create_event("other", bad_name), "event name")


BAD_SCHEMAS = [
    {"participants": {"company": "lww"}},
    {"participant": {"company": "sometimes"}},
    {"participant": {"company": None}},
    {"participant": "lww"},
    {"participant": {"Company": "lww"}},
    {"participant": {"id": "lww"}},
    {"participant": {"deleted": "lww"}},
    {"attendance": {"check_in": "union"}},
    {"attendance": {"seat": "lww"}},
    {"config": {"bad key": "lww"}},
    ["participant"],
    "participant",
    5,
]


@pytest.mark.parametrize("schema", BAD_SCHEMAS, ids=repr)
def test_create_event_bad_schema(admin: Replica, schema: Any) -> None:
    refused(admin, InputError, lambda: admin.create_event("other", "Other", schema))


def test_create_event_twice(admin: Replica) -> None:
    err = refused(admin, InputError, lambda: admin.create_event(EV), "already exists")
    assert err.code == "exists"


# -- import_participants / upsert_participant ---------------------------------


BAD_ROWS: list[tuple[Any, type[HeadcountError]]] = [
    ([{"name": "no id"}], InputError),
    ([{"id": ""}], InputError),
    ([{"id": 5, "name": "int id"}], InputError),
    ([{"id": "P\x00", "name": "control"}], InputError),
    ([{"id": "x" * 129}], InputError),
    ([{"id": "P9", "shoe_size": 44}], InputError),
    ([{"id": "P9", "deleted": True}], InputError),
    ([{"id": "P9", "_deleted": True}], InputError),
    ([{"id": "P9", 5: "x"}], InputError),
    ([{"id": "P9", "name": object()}], InputError),
    ([{"id": "P9", "name": {1, 2}}], InputError),
    ([{"id": "P9", "name": float("nan")}], InputError),
    ([{"id": "P9", "name": "x" * 9000}], InputError),
    (["P9"], InputError),
    ([None], InputError),
    ([{"id": "P9"}, {"id": "P9", "name": "again"}], InputError),
    (None, InputError),
    (5, InputError),
]


@pytest.mark.parametrize(("rows", "exc"), BAD_ROWS, ids=[repr(r)[:40] for r, _ in BAD_ROWS])
def test_import_bad_rows(admin: Replica, rows: Any, exc: type[HeadcountError]) -> None:
    refused(admin, exc, lambda: admin.import_participants(EV, rows))


@pytest.mark.parametrize("position", [0, 137, 249])
def test_import_one_bad_row_among_good_ones_writes_nothing(admin: Replica, position: int) -> None:
    rows: list[dict[str, Any]] = [
        {"id": f"N{i:03d}", "name": f"Guest {i}", "qr_token": f"QN{i}"} for i in range(250)
    ]
    rows.insert(position, {"id": "BAD", "shoe_size": 44})
    err = refused(admin, InputError, lambda: admin.import_participants(EV, rows))
    assert f"row {position + 1}" in err.message
    # Updates of existing participants are all-or-nothing too.
    update = [{"id": "P1", "name": "Ann Changed"}, {"id": "P2", "email": object()}]
    refused(admin, InputError, lambda: admin.import_participants(EV, update))


def test_import_a_deleted_participant_writes_nothing(admin: Replica) -> None:
    admin.delete_participant(EV, "P3")
    rows = [{"id": "P9", "name": "New"}, {"id": "P3", "name": "Back"}]
    refused(admin, NotFoundError, lambda: admin.import_participants(EV, rows), "deleted")


def test_import_into_an_unknown_event(admin: Replica) -> None:
    refused(admin, NotFoundError, lambda: admin.import_participants("nope", [{"id": "P9"}]))
    refused(admin, NotFoundError, lambda: admin.import_csv("nope", "/nonexistent.csv"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(["a", "b"], ["a", "b"]), ("vip", ["vip"]), (5, [5]), ([{"a": 1}], [{"a": 1}])],
    ids=["list", "string", "number", "list-of-objects"],
)
def test_union_field_values_all_or_nothing(admin: Replica, value: Any, expected: Any) -> None:
    """A union field given a scalar or an unhashable element: either stored
    sensibly or refused with an InputError, never half-written in memory."""
    before = snapshot(admin)
    rows = [{"id": "P8", "name": "Hal"}, {"id": "P9", "tags": value}]
    try:
        admin.import_participants(EV, rows)
    except InputError:
        assert_unchanged(admin, before)
    else:
        assert admin.participant(EV, "P9").fields["tags"] == expected
    # Whatever happened, the next acknowledged write survives a restart.
    admin.upsert_participant(EV, "P7", {"name": "Ivy"})
    stored = on_disk(admin)
    assert {"id": "P7", "name": "Ivy"} in stored["participants"]
    assert stored == snapshot(admin)


def test_union_field_from_csv_keeps_whole_strings(admin: Replica, tmp_path: Path) -> None:
    csv = tmp_path / "tags.csv"
    csv.write_text("id,name,tags\nP8,Hal,vip\n", "utf-8")
    admin.import_csv(EV, csv)
    assert admin.participant(EV, "P8").fields["tags"] == ["vip"]


def test_import_rows_with_only_an_id_create_the_participants(admin: Replica) -> None:
    """A row that gives just an id (a CSV with only an id column, or all other
    cells empty) still creates the participant."""
    report = admin.import_participants(EV, [{"id": "P8"}, {"id": "P9", "name": "Zed"}])
    assert report.changed == 2
    assert admin.participant(EV, "P8").id == "P8"
    assert admin.check_in(EV, "P8").recorded


@pytest.mark.parametrize("pid", ["", None, 5, "x" * 129, "a\x1fb", " P1", "P1\n"], ids=repr)
def test_upsert_bad_participant_id(admin: Replica, pid: Any) -> None:
    refused(admin, InputError, lambda: admin.upsert_participant(EV, pid, {"name": "X"}))


@pytest.mark.parametrize(
    "fields",
    [{"shoe_size": 44}, {"name": object()}, {"name": "x" * 9000}, {"name": float("inf")}],
    ids=repr,
)
def test_upsert_bad_fields(admin: Replica, fields: dict[str, Any]) -> None:
    refused(admin, InputError, lambda: admin.upsert_participant(EV, "P1", fields))


def test_upsert_deleted_or_unknown_event(admin: Replica) -> None:
    admin.delete_participant(EV, "P3")
    refused(admin, NotFoundError, lambda: admin.upsert_participant(EV, "P3", {"name": "C"}))
    refused(admin, NotFoundError, lambda: admin.upsert_participant("nope", "P1", {"name": "A"}))


# -- delete_participant ----------------------------------------------------------


def test_delete_participant_errors(admin: Replica, gate: Replica) -> None:
    refused(gate, PermissionDeniedError, lambda: gate.delete_participant(EV, "P1"), "admin")
    refused(admin, NotFoundError, lambda: admin.delete_participant(EV, "P404"))
    refused(admin, NotFoundError, lambda: admin.delete_participant("nope", "P1"))
    admin.delete_participant(EV, "P2")
    refused(admin, NotFoundError, lambda: admin.delete_participant(EV, "P2"), "deleted")
    # A gate is denied even for a participant it does not know.
    refused(gate, PermissionDeniedError, lambda: gate.delete_participant(EV, "P404"))


# -- set_config --------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "bad key", "_schema", "k" * 129, "a/b", "-lead", None, 5], ids=repr
)
def test_set_config_bad_key(admin: Replica, key: Any) -> None:
    refused(admin, InputError, lambda: admin.set_config(EV, key, 1), "configuration key")


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, b"bytes", float("nan"), float("inf"), "x" * 9000, {"k": ["v" * 9000]}],
    ids=lambda v: repr(v)[:20],
)
def test_set_config_bad_value(admin: Replica, value: Any) -> None:
    refused(admin, InputError, lambda: admin.set_config(EV, "capacity", value))


def test_set_config_unknown_event(admin: Replica) -> None:
    refused(admin, NotFoundError, lambda: admin.set_config("nope", "capacity", 1))


# -- check_in / check_out ------------------------------------------------------------


@pytest.fixture(params=["check_in", "check_out"])
def scan(request: pytest.FixtureRequest, admin: Replica) -> Callable[..., Any]:
    return getattr(admin, request.param)


@pytest.mark.parametrize("gate_name", ["", " ", "g" * 65, "a\nb", 5, b"north"], ids=repr)
def test_scan_bad_gate(admin: Replica, scan: Callable[..., Any], gate_name: Any) -> None:
    refused(admin, InputError, lambda: scan(EV, "Q2", gate=gate_name), "gate")


@pytest.mark.parametrize("method", ["sms", "QR", "", None, 5, ["qr"]], ids=repr)
def test_scan_bad_method(admin: Replica, scan: Callable[..., Any], method: Any) -> None:
    refused(admin, InputError, lambda: scan(EV, "Q2", method=method), "method")


@pytest.mark.parametrize(
    "key",
    [
        "nope",
        "",
        5,
        str(uuid.uuid1()),
        str(uuid.uuid3(uuid.NAMESPACE_DNS, "x")),
        "00000000-0000-0000-0000-000000000000",
        str(uuid.uuid4())[:-1],
    ],
    ids=["garbage", "empty", "int", "v1", "v3", "nil", "short"],
)
def test_scan_bad_idempotency_key(admin: Replica, scan: Callable[..., Any], key: Any) -> None:
    refused(admin, InputError, lambda: scan(EV, "Q2", scan_id=key), "idempotency key")


@pytest.mark.parametrize("at_ms", [-1, 0, 1.5, "1780000000000", True, [1]], ids=repr)
def test_scan_bad_timestamp(admin: Replica, scan: Callable[..., Any], at_ms: Any) -> None:
    refused(admin, InputError, lambda: scan(EV, "Q2", at_ms=at_ms), "timestamp")


@pytest.mark.parametrize("ahead_ms", [5 * 60 * 1000 + 1, 24 * 3600 * 1000, 2**47], ids=repr)
def test_scan_future_timestamp(admin: Replica, scan: Callable[..., Any], ahead_ms: int) -> None:
    refused(admin, FutureTimestampError, lambda: scan(EV, "Q2", at_ms=T0 + ahead_ms), "future")
    # Within the tolerance is fine.
    assert scan(EV, "Q2", at_ms=T0 + 60_000).recorded


def test_scan_unknown_deleted_or_ambiguous_participant(
    admin: Replica, scan: Callable[..., Any]
) -> None:
    refused(admin, NotFoundError, lambda: scan(EV, "nobody"))
    refused(admin, NotFoundError, lambda: scan("nope", "Q1"))
    admin.delete_participant(EV, "P3")
    refused(admin, NotFoundError, lambda: scan(EV, "P3"))
    refused(admin, NotFoundError, lambda: scan(EV, "Q3"))
    admin.upsert_participant(EV, "P2", {"qr_token": "Q1"})
    refused(admin, InputError, lambda: scan(EV, "Q1"), "shared")


def test_idempotency_key_reused_for_a_different_scan(admin: Replica) -> None:
    key = str(uuid.uuid4())
    first = admin.check_in(EV, "Q2", scan_id=key, at_ms=T0 - 1000)
    assert first.recorded
    for call in [
        lambda: admin.check_in(EV, "P1", scan_id=key),  # another participant
        lambda: admin.check_in(EV, "Q1", scan_id=key),  # ... by QR token
        lambda: admin.check_out(EV, "P2", scan_id=key),  # another kind
        lambda: admin.check_in(EV, "P2", scan_id=key, at_ms=T0 - 2000),  # another time
    ]:
        refused(admin, InputError, call, "already used")
    before = snapshot(admin)
    again = admin.check_in(EV, "P2", scan_id=key.upper(), at_ms=T0 - 1000)
    assert not again.recorded
    assert again.scan == first.scan
    assert_unchanged(admin, before)


# -- resolve_conflict ----------------------------------------------------------------


def test_resolve_conflict_errors(admin: Replica, gate: Replica, conflicted: str) -> None:
    dot = admin.conflicts(EV)[0].candidates[0].dot
    refused(gate, PermissionDeniedError, lambda: gate.resolve_conflict(EV, conflicted, choose=dot))
    refused(admin, NotFoundError, lambda: admin.resolve_conflict(EV, "0" * 16, choose=dot))
    refused(admin, NotFoundError, lambda: admin.resolve_conflict("nope", conflicted, choose=dot))
    refused(
        admin,
        NotFoundError,
        lambda: admin.resolve_conflict(EV, conflicted, choose="nobody:1"),
        "no candidate",
    )
    refused(admin, InputError, lambda: admin.resolve_conflict(EV, conflicted))
    refused(
        admin,
        InputError,
        lambda: admin.resolve_conflict(EV, conflicted, choose=dot, value="x", use_value=True),
    )
    for bad in [object(), "x" * 9000, float("nan")]:
        refused(
            admin,
            InputError,
            lambda bad=bad: admin.resolve_conflict(EV, conflicted, value=bad, use_value=True),
        )
    admin.resolve_conflict(EV, conflicted, choose=dot)
    refused(admin, NotFoundError, lambda: admin.resolve_conflict(EV, conflicted, choose=dot))


def test_resolve_modified_deleted_needs_delete_or_restore(admin: Replica, gate: Replica) -> None:
    admin.delete_participant(EV, "P2")
    gate.upsert_participant(EV, "P2", {"name": "Bobby"})
    sync(admin, gate)
    sync(gate, admin)
    (conflict,) = admin.conflicts(EV)
    assert conflict.kind == "modified_deleted"
    for bad in ["maybe", None, 1]:
        refused(
            admin,
            InputError,
            lambda bad=bad: admin.resolve_conflict(EV, conflict.id, value=bad, use_value=True),
        )
    admin.resolve_conflict(EV, conflict.id, restore=True)
    assert admin.participant(EV, "P2").fields["name"] == "Bobby"


# -- apply_entries -----------------------------------------------------------------


@pytest.fixture
def peer_batch(admin: Replica, gate: Replica, clock: Any) -> list[LogEntry]:
    """Good entries the admin lacks: two scans and an edit made on the gate."""
    clock.advance(1000)
    gate.check_in(EV, "Q2")
    gate.check_out(EV, "Q1")
    gate.upsert_participant(EV, "P3", {"company": "ACME"})
    batch = gate.export_since(EV, admin.version_vector(EV))
    assert len(batch) == 3
    return batch


def assert_rejected_then_good_batch_applies(
    admin: Replica, garbage: list[Any], good: list[LogEntry]
) -> None:
    before = snapshot(admin)
    clock_before = admin.clock.last
    result = admin.apply_entries(garbage)
    assert sorted(repr(e) for e, _ in result.rejected) == sorted(repr(e) for e in garbage)
    assert all(isinstance(reason, str) and reason for _, reason in result.rejected)
    assert (result.applied, result.pending) == (0, 0)
    assert admin.clock.last == clock_before
    assert_unchanged(admin, before)
    # The replica still takes a good batch afterwards, and every entry integrates.
    result = admin.apply_entries(good)
    assert not result.rejected
    assert (result.applied, result.pending) == (len(good), 0)
    after = snapshot(admin)
    assert len(after["scans"]) == len(before["scans"]) + 2
    assert admin.participant(EV, "P3").fields["company"] == "ACME"
    assert on_disk(admin) == after


def assert_refused_then_good_batch_applies(
    admin: Replica, garbage: list[LogEntry], good: list[LogEntry]
) -> None:
    """Entries whose update is not a valid one (core/validate.py) are refused
    whole at apply time, each device quarantined for its event; nothing
    changes; the replica then takes a good batch from other devices."""
    before = snapshot(admin)
    clock_before = admin.clock.last
    result = admin.apply_entries(garbage)
    assert result.rejected == []
    assert sorted((v.event, v.device, v.seq) for v in result.refused) == sorted(
        (e.event, e.device, e.seq) for e in garbage
    )
    assert all(v.reason and v.detail for v in result.refused)
    assert (result.applied, result.pending) == (0, 0)
    for e in garbage:
        assert e.device in admin.store.quarantined(e.event)
    assert admin.clock.last == clock_before
    assert_unchanged(admin, before)
    assert_rejected_then_good_batch_applies(admin, [], good)


def _with(entry: LogEntry, **changes: Any) -> LogEntry:
    fields = {
        "event": entry.event,
        "device": entry.device,
        "seq": entry.seq,
        "hlc": entry.hlc,
        "update": entry.update,
    }
    fields.update(changes)
    return LogEntry(**fields)


SHAPES: list[dict[str, Any]] = [
    {"update": b""},
    {"update": "text"},
    {"update": None},
    {"update": 5},
    {"update": [1, 2]},
    {"event": None},
    {"event": 5},
    {"event": ""},
    {"event": "x" * 129},
    {"device": None},
    {"device": 5},
    {"device": ""},
    {"device": "d" * 65},
    {"seq": 0},
    {"seq": -1},
    {"seq": "1"},
    {"seq": 1.0},
    {"seq": None},
    {"hlc": -1},
    {"hlc": "5"},
    {"hlc": 1.5},
    {"hlc": None},
]


@pytest.mark.parametrize("change", SHAPES, ids=lambda c: repr(c)[:30])
def test_apply_wrong_field_types(admin: Replica, peer_batch: list[LogEntry], change: dict) -> None:
    garbage = [_with(peer_batch[0], **change)]
    assert_rejected_then_good_batch_applies(admin, garbage, peer_batch)


def test_apply_not_log_entries(admin: Replica, peer_batch: list[LogEntry]) -> None:
    e = peer_batch[0]
    garbage: list[Any] = [
        None,
        (e.event, e.device, e.seq, e.hlc, e.update),
        {"event": e.event, "device": e.device, "seq": e.seq, "hlc": e.hlc, "update": e.update},
        e.update,
    ]
    assert_rejected_then_good_batch_applies(admin, garbage, peer_batch)


RANDOM_BYTES_SEED = 20260501


def test_apply_random_bytes(admin: Replica, peer_batch: list[LogEntry]) -> None:
    rng = random.Random(RANDOM_BYTES_SEED)
    garbage = [
        _with(peer_batch[0], device=f"junk{i}", update=rng.randbytes(rng.randrange(1, 300)))
        for i in range(20)
    ]
    garbage.append(_with(peer_batch[0], device="junk20", update=b"\x01\x01\xff\xff\xff\xff\x0f"))
    with reported_seed(RANDOM_BYTES_SEED):
        assert_refused_then_good_batch_applies(admin, garbage, peer_batch)


def test_apply_garbage_from_a_device_quarantines_it(
    admin: Replica, gate: Replica, peer_batch: list[LogEntry]
) -> None:
    """Garbage in place of one of a device's own entries refuses the device:
    its good entries, before or after, are no longer taken in."""
    garbage = [_with(peer_batch[0], update=b"\x01\x01\xff\xff\xff\xff\x0f")]
    before = snapshot(admin)
    result = admin.apply_entries(garbage)
    assert result.rejected == []
    assert [(v.device, v.seq, v.reason) for v in result.refused] == [
        (gate.device_id, peer_batch[0].seq, "undecodable")
    ]
    assert gate.device_id in admin.store.quarantined(EV)
    assert_unchanged(admin, before)
    result = admin.apply_entries(peer_batch)
    assert (result.applied, result.pending, result.rejected) == (0, 0, [])
    assert_unchanged(admin, before)


def test_apply_truncated_update(admin: Replica, peer_batch: list[LogEntry]) -> None:
    first = peer_batch[0]
    cuts = range(1, len(first.update))
    garbage = [_with(first, device=f"trunc{n}", update=first.update[:n]) for n in cuts]
    assert_refused_then_good_batch_applies(admin, garbage, peer_batch)
    # A truncated re-delivery of an entry already applied is no duplicate: what
    # it does is checked like any entry's, and it refuses its device. No change.
    fresh = [_with(first, update=first.update[: len(first.update) // 2])]
    before = snapshot(admin)
    result = admin.apply_entries(fresh)
    assert (result.applied, result.duplicates, result.rejected) == (0, 0, [])
    assert [(v.device, v.seq) for v in result.refused] == [(first.device, first.seq)]
    assert first.device in admin.store.quarantined(EV)
    assert_unchanged(admin, before)


def _written_ahead(admin: Replica, path: Path, ahead_ms: int) -> LogEntry:
    """A check-in written by a gate whose wall clock runs ``ahead_ms`` ahead
    of the admin's: a valid entry, stamped in the admin's future."""
    Replica.init(path, role=Role.GATE, name=path.name)
    with Replica.open(path, wall_clock=lambda: admin.wall_clock() + ahead_ms) as ahead:
        sync(admin, ahead)
        entry = ahead.check_in(EV, "Q3").entry
        assert entry is not None
        return entry


def test_apply_hlc_far_in_the_future(
    admin: Replica, peer_batch: list[LogEntry], tmp_path: Path
) -> None:
    now = admin.wall_clock()
    garbage = [
        _written_ahead(admin, tmp_path / f"ahead{n}", ahead)
        for n, ahead in enumerate([5 * 60 * 1000 + 1, 86_400_000, 2**40])
    ]
    assert [e.hlc >> 16 for e in garbage] == [
        now + 5 * 60 * 1000 + 1,
        now + 86_400_000,
        now + 2**40,
    ]
    before = snapshot(admin)
    result = admin.apply_entries(garbage)
    assert len(result.rejected) == 3
    assert all("future" in reason for _, reason in result.rejected)
    assert_unchanged(admin, before)
    assert_rejected_then_good_batch_applies(admin, [], peer_batch)


def test_apply_garbage_for_an_unknown_event_creates_nothing(
    admin: Replica, peer_batch: list[LogEntry], tmp_path: Path
) -> None:
    e = peer_batch[0]
    garbage = [
        _with(e, event="ghost", update=b"garbage"),
        _with(e, event="ghost2", hlc=(T0 + 86_400_000) << 16),  # its update says otherwise
        _with(e, event="ghost3", update=e.update[:10]),
    ]
    # Quarantined for those events only: its entries of EV still apply.
    assert_refused_then_good_batch_applies(admin, garbage, peer_batch)
    assert admin.events() == [EV]
    # A valid entry creating an event, stamped a day in the future, is rejected.
    Replica.init(tmp_path / "ahead", role=Role.ADMIN, name="ahead")
    with Replica.open(tmp_path / "ahead", wall_clock=lambda: T0 + 86_400_000) as ahead:
        introduce(admin, ahead)
        ahead.create_event("ghost4", "From the future")
        created = ahead.export_since("ghost4", {})
    before = snapshot(admin)
    result = admin.apply_entries(created)
    assert len(result.rejected) == len(created) == 1
    assert all("future" in reason for _, reason in result.rejected)
    assert (result.applied, result.pending, result.refused) == (0, 0, [])
    assert_unchanged(admin, before)
    assert admin.events() == [EV]


@pytest.mark.parametrize("event", ["bad\x00event", "sep\x1fevent", "new\nline", " edge"], ids=repr)
def test_apply_entry_with_an_invalid_event_id_is_rejected(
    admin: Replica, peer_batch: list[LogEntry], event: str
) -> None:
    """Event ids the local API refuses (see check_id) must not arrive from a peer either."""
    assert_rejected_then_good_batch_applies(admin, [_with(peer_batch[0], event=event)], peer_batch)
    assert admin.events() == [EV]


def test_apply_good_entries_for_an_unknown_event_create_it(
    admin: Replica, gate: Replica, make_replica: Callable[..., Replica]
) -> None:
    other = make_replica("other-admin", Role.ADMIN)  # only an admin or relay creates events
    introduce(admin, other)
    other.create_event("side", "Side event")
    sync(other, gate)
    gate.import_participants("side", [{"id": "S1", "name": "Sam"}])
    gate.check_in("side", "S1")
    result = admin.apply_entries(gate.export_since("side", {}))
    assert (result.applied, result.pending, result.rejected) == (3, 0, [])
    assert admin.events() == [EV, "side"]
    assert snapshot(admin, "side") == snapshot(gate, "side")
    assert on_disk(admin, "side") == snapshot(gate, "side")


def test_apply_mixed_batch_keeps_the_good_entries(
    admin: Replica, peer_batch: list[LogEntry]
) -> None:
    garbage = [_with(peer_batch[0], device="junk", update=b"\x00\xff\x00")]
    result = admin.apply_entries([garbage[0], *peer_batch, None])
    assert [e for e, _ in result.rejected] == [None]
    assert [(v.device, v.seq) for v in result.refused] == [("junk", garbage[0].seq)]
    assert admin.store.quarantined(EV) == {"junk"}
    assert (result.applied, result.pending) == (3, 0)
    after = snapshot(admin)
    assert on_disk(admin) == after
    again = admin.apply_entries(peer_batch)  # re-delivery is a no-op
    assert (again.applied, again.duplicates) == (0, 3)
    assert_unchanged(admin, after)


def test_apply_random_bytes_property(admin: Replica, peer_batch: list[LogEntry]) -> None:
    """Hypothesis: arbitrary bytes from a peer never raise and never change the
    visible state; anything refused changes nothing and quarantines its
    device; anything neither rejected nor refused is a (harmless) valid Y
    update that is stored consistently. Hypothesis prints the failing bytes
    (and a blob)."""
    base = snapshot(admin)
    visible = ("participants", "scans", "conflicts", "config")
    counter = iter(range(10**9))
    hlc = peer_batch[0].hlc
    header = st.sampled_from([b"", b"\x00", b"\x01", b"\x01\x01", b"\x02\x01", b"\x00\x01"])

    @settings(
        max_examples=200,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(prefix=header, body=st.binary(min_size=0, max_size=120))
    def check(prefix: bytes, body: bytes) -> None:
        data = prefix + body
        if not data:
            return
        entry = LogEntry(EV, f"fuzz{next(counter)}", 1, hlc, data)
        before = snapshot(admin)
        result = admin.apply_entries([entry])
        after = snapshot(admin)
        if result.refused:
            assert [(v.device, v.seq) for v in result.refused] == [(entry.device, 1)], data
            assert entry.device in admin.store.quarantined(EV), data
            assert (result.applied, result.pending, result.rejected) == (0, 0, []), data
        if result.rejected or result.refused:
            assert after == before, data
        else:
            assert result.applied + result.pending == 1, data
            for key in visible:
                assert after[key] == before[key], data

    check()
    final = snapshot(admin)
    for key in ("participants", "scans", "conflicts", "config"):
        assert final[key] == base[key]
    assert on_disk(admin) == final
    result = admin.apply_entries(peer_batch)
    assert (result.applied, result.pending, result.rejected) == (3, 0, [])
    assert len(snapshot(admin)["scans"]) == len(base["scans"]) + 2
