"""Archiving: old events move into verified archive files and out of the live
store; queries by date range return exactly the records in range; archives
past retention are pruned; damaged archives give clear errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headcount import Replica, Role
from headcount.archive import (
    ArchiveError,
    ArchivePolicy,
    ArchiveQuery,
    Steps,
    archive_now,
    commit,
    entries,
    prepare,
    prune,
    restore_archived,
    supersede,
)
from headcount.replica.compaction import compact
from headcount.replica.log import ReplicaLog

from .support.backup import FAST_SCRYPT, PASSPHRASE, open_device, reads
from .support.clock import T0, FakeClock
from .support.protocol import ConnectionPair
from .support.replicas import introduce

EV = "ev"
MIN = 60_000
DAY = 86_400_000
W = T0 - 100 * DAY  # when the old events were written (archived at T0, older than 90 days)
EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _old_event(root: Path, clock: FakeClock, event: str = EV, people: int = 4) -> Replica:
    """A gate holding ``event``, written at W: participants and one check-in each."""
    path = root / "a"
    if not (path / "device.key").exists():
        Replica.init(path, role=Role.ADMIN, name="a")
    replica = Replica.open(path, wall_clock=clock)
    replica.create_event(event, "Old conference")
    replica.import_participants(
        event, [{"id": f"P{i}", "qr_token": f"Q{i}"} for i in range(people)]
    )
    replica.set_config(event, "venue", "Hall 1")
    for i in range(people):
        replica.check_in(event, f"Q{i}", at_ms=W - (i + 1) * MIN)
    return replica


def _peer(a: Replica, root: Path, clock: FakeClock) -> Replica:
    """A gate ``root/b`` that trusts ``a``, is trusted by it, and holds what it holds."""
    b = open_device(root / "b", Role.GATE, clock)
    introduce(a, b)
    _sync(a, b)
    return b


def _sync(x: Replica, y: Replica) -> ConnectionPair:
    """One session between ``x`` and ``y``, run until idle."""
    pair = ConnectionPair(ReplicaLog(x), ReplicaLog(y))
    pair.run()
    return pair


def _policy(root: Path, **kw: object) -> ArchivePolicy:
    return ArchivePolicy(root / "archive", scrypt_n=FAST_SCRYPT, **kw)  # type: ignore[arg-type]


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, list, list, list]:
    """Participants, scans (kind, who, minutes before W), edits (who, minutes
    after W) and query ranges (minutes before W)."""
    n = draw(st.integers(1, 5))
    scans = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["in", "out"]), st.integers(0, n - 1), st.integers(0, 144_000)
            ),
            max_size=14,
        )
    )
    edits = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 7200)), max_size=4))
    bound = st.integers(-7300, 145_000)
    ranges = draw(st.lists(st.tuples(bound, bound), min_size=1, max_size=4))
    return n, scans, edits, ranges


@EXAMPLES
@given(history=histories())
def test_a_query_returns_exactly_the_archived_records_in_range(history) -> None:
    n, scans, edits, ranges = history
    with tempfile.TemporaryDirectory() as tmp:
        root, clock = Path(tmp), FakeClock(W)
        a = open_device(root / "a", Role.ADMIN, clock)
        a.create_event(EV, "Conf")
        a.import_participants(EV, [{"id": f"P{i}", "name": "x"} for i in range(n)])
        edited = {f"P{i}": W for i in range(n)}
        for k, (who, minutes) in enumerate(sorted(edits, key=lambda e: e[1])):
            clock.now = W + minutes * MIN
            a.upsert_participant(EV, f"P{who}", {"name": f"name {k}"})
            edited[f"P{who}"] = clock.now
        for kind, who, minutes in scans:
            scan = a.check_in if kind == "in" else a.check_out
            scan(EV, f"P{who}", at_ms=W - minutes * MIN)
        clock.now = T0 - DAY  # "recent" is one day old; ev is older than 90 days
        a.create_event("recent", "Still running")
        ev = a.event(EV)
        scan_times = {s.id: s.ts_ms for s in ev.doc.scans.values()}
        attended = {}
        for att in ev.attendance_list():
            chosen = att.check_in or att.scans[0]
            attended[att.participant] = chosen.ts_ms
        report = archive_now(a, _policy(root), T0, Steps(None))
        assert [x["event"] for x in report["archived"]] == [EV]
        assert a.events() == ["recent"] and EV in a.store.archived()
        for lo, hi in ranges:
            start, end = sorted((W - hi * MIN, W - lo * MIN))
            query = ArchiveQuery(root / "archive", start, end)
            got: dict[str, set] = {"scan": set(), "attendance": set(), "participant": set()}
            for r in query:
                if r["type"] in got:
                    got[r["type"]].add(r.get("id") or r.get("participant"))
            assert not query.errors
            assert got["scan"] == {s for s, t in scan_times.items() if start <= t <= end}
            assert got["attendance"] == {p for p, t in attended.items() if start <= t <= end}
            assert got["participant"] == {p for p, t in edited.items() if start <= t <= end}
        a.close()


def test_only_archives_whose_range_overlaps_are_read_and_filters_apply(tmp_path, clock):
    clock.now = W
    a = _old_event(tmp_path, clock)
    clock.now = W + 30 * DAY
    a.create_event("later", "Later")
    a.import_participants("later", [{"id": "L1"}])
    a.check_in("later", "L1", at_ms=W + 30 * DAY)
    archive_now(a, _policy(tmp_path), T0 + 30 * DAY, Steps(None))
    assert a.events() == []
    query = ArchiveQuery(tmp_path / "archive", W - 10 * DAY, W + DAY)
    records = list(query)
    assert {r["event"] for r in records} == {EV} and len(query.archives_read) == 1
    only = ArchiveQuery(tmp_path / "archive", 0, T0 * 2, kinds=frozenset({"participants"}))
    assert {r["type"] for r in only} == {"participant"}
    later = ArchiveQuery(tmp_path / "archive", 0, T0 * 2, events=frozenset({"later"}))
    assert {r["event"] for r in later} == {"later"}
    a.close()


def test_an_event_with_a_recent_write_is_not_archived(tmp_path, clock):
    clock.now = W
    a = _old_event(tmp_path, clock)
    clock.now = T0 - 10 * DAY
    a.check_in(EV, "Q0", at_ms=W)  # a scan of long ago, recorded recently
    report = archive_now(a, _policy(tmp_path), T0, Steps(None))
    assert report["archived"] == [] and a.events() == [EV]
    assert entries(tmp_path / "archive") == []
    a.close()


def test_a_peer_still_holding_the_event_does_not_bring_it_back(tmp_path, clock):
    clock.now = W
    a = _old_event(tmp_path, clock)
    b = _peer(a, tmp_path, clock)
    before = reads(b)
    archive_now(a, _policy(tmp_path), T0, Steps(None))
    b.check_in(EV, "P1")  # b keeps writing to the event a archived
    for _ in range(2):
        pair = _sync(b, a)
        pair.carry_out(0, pair.sides[0].session.anti_entropy(pair.now))
        pair.run()
        assert not any(side.closed not in (None, "clean") for side in pair.sides)
    assert EV not in a.events() and a.store.log_count(EV) == 0
    assert EV in a.store.archived()
    assert set(before["scans"]) < set(reads(b)["scans"])  # b lost nothing
    assert len(reads(b)["scans"]) == len(before["scans"]) + 1
    a.close()
    b.close()


def test_a_lagging_peer_of_an_archived_event_does_not_break_the_session(tmp_path, clock):
    clock.now = W
    a = _old_event(tmp_path, clock)
    b = _peer(a, tmp_path, clock)
    a.check_in(EV, "Q0", at_ms=W - DAY)  # b never receives this one
    # b acknowledged less than a holds: only forced does a archive (a device
    # that got part of the event through others, and never synced it with a,
    # reaches the same state without force)
    archive_now(a, _policy(tmp_path, require_synced=False), T0, Steps(None))
    try:
        pair = _sync(a, b)
        assert not any(side.closed not in (None, "clean") for side in pair.sides)
    finally:
        a.close()
        b.close()


def test_an_event_waits_until_every_peer_that_acknowledged_it_holds_all_of_it(tmp_path, clock):
    clock.now = W
    a = _old_event(tmp_path, clock)
    b = open_device(tmp_path / "b", Role.GATE, clock)
    policy = _policy(tmp_path)
    a.trust(b.device_id, b.identity.public_key_raw, b.role)
    steps = Steps(None)
    assert archive_now(a, policy, T0, steps)["archived"] == []  # b never acknowledged it
    assert "exist only here" in steps.lines[-1]["reason"]
    b.trust(a.device_id, a.identity.public_key_raw, a.role)
    _sync(a, b)
    a.check_in(EV, "Q0", at_ms=W - DAY)  # b lacks this one
    steps = Steps(None)
    assert archive_now(a, policy, T0, steps)["archived"] == []
    assert b.device_id in steps.lines[-1]["reason"] and a.events() == [EV]
    _sync(a, b)  # b catches up and says so
    assert [x["event"] for x in archive_now(a, policy, T0, Steps(None))["archived"]] == [EV]
    a.close()
    b.close()


def test_an_event_that_changes_while_it_is_archived_stays_live(tmp_path, clock):
    clock.now = W
    a = _old_event(tmp_path, clock)
    policy = _policy(tmp_path)
    steps = Steps(policy.journal)
    made = prepare(a.data_dir, a.identity, policy, T0, steps)
    assert [m.event for m in made] == [EV]
    a.check_in(EV, "Q1", at_ms=W)  # arrives between writing the archive and removal
    assert commit(a, made, policy, steps) == []
    assert a.events() == [EV] and EV not in a.store.archived()
    assert entries(policy.directory) == []  # the stale archive was discarded
    done = [s["step"] for s in policy.journal.records()]
    assert done == ["selected", "written", "verified", "skipped", "discarded"]
    a.close()


def test_restore_brings_back_the_whole_event_even_after_compaction(make_replica, tmp_path, clock):
    clock.now = W
    a = _old_event(tmp_path, clock)
    g = make_replica("g")
    introduce(a, g)
    _sync(a, g)
    g.check_in(EV, "Q3", at_ms=W - DAY)
    _sync(g, a)
    assert compact(a, EV) > 0 and a.store.horizon(EV)
    a.check_in(EV, "Q2", at_ms=W - 2 * DAY)  # an entry after the horizon
    _sync(a, g)
    before = reads(a)
    policy = _policy(tmp_path, secret=PASSPHRASE)
    steps = Steps(policy.journal)
    archive_now(a, policy, T0, steps)
    with pytest.raises(ArchiveError) as exc:
        list(_strict(ArchiveQuery(policy.directory, 0, T0)))
    assert exc.value.code == "key_required"
    restore_archived(a, policy.directory, EV, steps, PASSPHRASE)
    assert reads(a) == before and EV not in a.store.archived()
    a.close()
    with Replica.open(tmp_path / "a", wall_clock=clock) as again:  # durable, reloads
        assert reads(again) == before
        clock.now = T0
        again.check_in(EV, "Q0", at_ms=T0)  # its own chain continues
        _sync(again, g)
    # archived again later, the new archive supersedes the first: no record twice
    with Replica.open(tmp_path / "a", wall_clock=clock) as again:
        report = archive_now(again, policy, T0 + 100 * DAY, Steps(policy.journal))
        assert len(report["superseded"]) == 1
    query = ArchiveQuery(policy.directory, 0, T0 * 2, secret=PASSPHRASE)
    scans = [r["id"] for r in query if r["type"] == "scan"]
    assert len(scans) == len(set(scans)) == len(before["scans"]) + 1


def _strict(query: ArchiveQuery):
    yield from query
    if query.errors:
        raise query.errors[0]


def test_prune_deletes_only_archives_past_retention(tmp_path, clock):
    clock.now = W
    a = _old_event(tmp_path, clock, "first")
    clock.now = W + 200 * DAY
    a.create_event("second", "Second")
    policy = _policy(tmp_path)
    archive_now(a, policy, W + 100 * DAY, Steps(None), events=["first"])
    archive_now(a, policy, W + 300 * DAY, Steps(None), events=["second"])
    (policy.directory / "garbage").mkdir()
    (policy.directory / "garbage" / "manifest.json").write_text("{not json")
    steps = Steps(policy.journal)
    assert prune(policy.directory, 365 * DAY / 1000, W + 400 * DAY, steps) == []
    gone = prune(policy.directory, 365 * DAY / 1000, W + 500 * DAY, steps)
    left = {e.manifest.event for e in entries(policy.directory) if e.manifest}
    assert len(gone) == 1 and left == {"second"}
    assert (policy.directory / "garbage").exists()  # unreadable: reported, never deleted
    assert {s["step"] for s in steps.lines} == {"pruned", "failed"}
    assert "first" in a.store.archived()  # still archived: peers cannot bring it back
    a.close()


def test_supersede_keeps_archives_of_other_events(tmp_path, clock):
    clock.now = W
    a = _old_event(tmp_path, clock, "one")
    a.create_event("two", "Two")
    made = archive_now(a, _policy(tmp_path), T0, Steps(None))
    assert len(made["archived"]) == 2
    manifests = [e.manifest for e in entries(tmp_path / "archive")]
    assert supersede(tmp_path / "archive", manifests, Steps(None)) == []
    a.close()
