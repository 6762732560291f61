"""Backup round trips: every kind, plain and encrypted, on generated event contents.

After a restore, everything a user reads (participants, attendance,
conflicts, configuration, version vectors, scan ids) equals what the source
held when the backup was taken, whatever was written after it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from headcount import PermissionDeniedError, Replica, Role
from headcount.backup import (
    Catalog,
    Kind,
    RestoreReport,
    create_backup,
    restore_backup,
    verify_backup,
)

from .support.backup import EV, FAST_SCRYPT, SECRETS, Content, build, contents, reads
from .support.sync import sync

EXAMPLES = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _every_secret_and_content(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test(secret, content)`` for each secret on :data:`EXAMPLES` generated contents."""
    return pytest.mark.parametrize("secret", sorted(SECRETS))(
        EXAMPLES(given(content=contents())(test))
    )


@contextmanager
def _built(content: Content) -> Iterator[tuple[Path, Replica, Replica]]:
    """A temporary root holding the gate ``a`` and the admin ``b`` of :func:`build` (open)."""
    with tempfile.TemporaryDirectory() as tmp:
        a, b = build(Path(tmp), content)
        yield Path(tmp), a, b


def _backup(data_dir: Path, kind: Kind, dest: Path, secret_name: str, **kw: object):
    return create_backup(
        data_dir, kind, dest=dest, secret=SECRETS[secret_name], scrypt_n=FAST_SCRYPT, **kw
    )


@_every_secret_and_content
def test_full_backup_restores_exactly_what_was_backed_up(secret: str, content: Content) -> None:
    with _built(content) as (root, a, b):
        b.close()
        before = reads(a)
        old_client = a.event(EV).doc.doc.client_id
        m = _backup(root / "a", Kind.FULL, root / "dest", secret)  # while a is open
        a.check_in(EV, "P0", allow_unknown=True)  # after the backup: must not come back
        a.close()
        assert verify_backup(m.id, root / "dest", secret=SECRETS[secret]).content_checked
        report = restore_backup(m.id, root / "dest", root / "a", secret=SECRETS[secret])
        assert report.rejoin == [EV] and report.pre_restore is not None
        with Replica.open(root / "a") as restored:
            assert reads(restored) == before
            assert restored.event(EV).doc.doc.client_id != old_client


@_every_secret_and_content
def test_incremental_chain_restores_the_last_link(secret: str, content: Content) -> None:
    with _built(content) as (root, a, b):
        dest = root / "dest"
        full = _backup(root / "a", Kind.FULL, dest, secret)
        a.import_participants(EV, [{"id": "late1", "name": "L1"}])
        inc1 = _backup(root / "a", Kind.INCREMENTAL, dest, secret)
        a.check_in(EV, "late1")
        b.set_config(EV, "late", True)  # configuration comes from the admin
        sync(b, a)
        b.close()
        inc2 = _backup(root / "a", Kind.INCREMENTAL, dest, secret)
        expected = reads(a)
        a.check_out(EV, "late1")  # after the last link
        a.close()
        assert inc1.parent == full.id and inc2.parent == inc1.id
        report = verify_backup(inc2.id, dest, secret=SECRETS[secret])
        assert report.chain == [full.id, inc1.id, inc2.id]
        restore_backup(inc2.id, dest, root / "a", secret=SECRETS[secret])
        with Replica.open(root / "a") as restored:
            assert reads(restored) == expected


@_every_secret_and_content
def test_full_backup_rebuilds_a_destroyed_data_dir(secret: str, content: Content) -> None:
    with _built(content) as (root, a, b):
        b.close()
        device, before = a.device_id, reads(a)
        m = _backup(root / "a", Kind.FULL, root / "dest", secret)
        a.close()
        shutil.rmtree(root / "a")  # the disaster
        report = restore_backup(m.id, root / "dest", root / "a", secret=SECRETS[secret])
        assert report.rebuilt and "device.key" in report.identity_restored
        assert (root / "a" / "device.key").stat().st_mode & 0o777 == 0o600
        with Replica.open(root / "a") as restored:
            assert restored.device_id == device
            assert reads(restored) == before


def _live_fields(participant: dict) -> dict:
    """A participant as a per-kind restore rebuilds it: conflicted and empty fields
    are not written (an admin resolves conflicts)."""
    skip = set(participant.get("conflicts", ())) | {"conflicts"}
    return {k: v for k, v in participant.items() if k not in skip and v is not None}


def _merged(
    content: Content, secret: str, kind: Kind, role: Role
) -> tuple[dict[str, Any], list[RestoreReport], dict[str, Any]]:
    """Back up ``kind`` of a built gate, then restore it twice into a new device of
    ``role`` that trusts the gate (a new gate first receives the event from
    the admin: only an admin or relay may create it).

    Returns:
        What the gate read when backed up, the two restores' reports, and what the
        new device reads after them.
    """
    with _built(content) as (root, a, b):
        m = _backup(root / "a", kind, root / "dest", secret)
        source = reads(a)
        c = _fresh_device(root / "c", role, a)
        if not role.is_authority:
            _receive_the_event(c, b)
        a.close()
        b.close()
        reports = [restore_backup(m.id, root / "dest", c, secret=SECRETS[secret]) for _ in range(2)]
        with Replica.open(c) as restored:
            return source, reports, reads(restored)


@_every_secret_and_content
def test_participants_backup_merges_into_another_device(secret: str, content: Content) -> None:
    source, (first, again), got = _merged(content, secret, Kind.PARTICIPANTS, Role.GATE)
    assert first.merge is not None and again.merge is not None
    assert again.merge.written == 0  # a repeat changes nothing
    want = [_live_fields(p) for p in source["participants"] if not p.get("deleted")]
    assert got["participants"] == want


@_every_secret_and_content
def test_attendance_backup_merges_without_duplicates(secret: str, content: Content) -> None:
    # Only an authority records scans under another device's name (the gate's).
    want, (_, again), got = _merged(content, secret, Kind.ATTENDANCE, Role.ADMIN)
    assert again.merge is not None and again.merge.written == 0
    assert got["attendance"] == want["attendance"]
    assert got["scans"] == want["scans"]


@_every_secret_and_content
def test_attendance_backup_of_another_gate_is_skipped_by_a_gate(
    secret: str, content: Content
) -> None:
    _, (first, again), got = _merged(content, secret, Kind.ATTENDANCE, Role.GATE)
    for report in (first, again):
        assert report.merge is not None
        assert (report.merge.written, report.merge.skipped) == (0, len(content.scans))
        assert all("under another device's name" in r for r in report.merge.reasons)
    assert got["scans"] == [] and got["attendance"] == []


@_every_secret_and_content
def test_configuration_backup_merges_into_an_admin(secret: str, content: Content) -> None:
    want, (_, again), got = _merged(content, secret, Kind.CONFIGURATION, Role.ADMIN)
    assert again.merge is not None and again.merge.written == 0
    assert got["config"] == want["config"]


def test_a_gate_lacking_the_event_refuses_a_per_kind_restore_before_writing(
    tmp_path: Path,
) -> None:
    """Only an authority creates events: a per-kind restore onto a gate that
    lacks one is refused up front, with nothing written."""
    content = Content(people=[{"id": "P0", "name": "Ann"}], scans=[("in", 0, 5)])
    with _built(content) as (root, a, b):
        m = _backup(root / "a", Kind.PARTICIPANTS, root / "dest", "plain")
        c = _fresh_device(root / "c", Role.GATE, a)
        a.close()
        b.close()
        with pytest.raises(PermissionDeniedError, match="only an admin or relay may create"):
            restore_backup(m.id, root / "dest", c, secret=SECRETS["plain"])
        with Replica.open(c) as gate:
            assert gate.events() == [] and gate.version_vector(EV) == {}


def _fresh_device(path: Path, role: Role, source: Replica) -> Path:
    """A new device that trusts ``source`` (whose backups it restores)."""
    Replica.init(path, role=role, name=path.name)
    with Replica.open(path) as r:
        r.trust(source.device_id, source.identity.public_key_raw, source.role)
    return path


def _receive_the_event(path: Path, admin: Replica) -> None:
    """The device at ``path`` trusts ``admin`` and takes in the admin's entry
    creating the event, and nothing else the admin wrote."""
    created = [e for e in admin.export_since(EV, {}) if e.device == admin.device_id and e.seq == 1]
    with Replica.open(path) as r:
        r.trust(admin.device_id, admin.identity.public_key_raw, admin.role)
        result = r.apply_entries(created)
        assert (result.applied, result.rejected, result.refused) == (1, [], [])
        assert r.events() == [EV] and r.event(EV).participants() == []


def test_attendance_merge_keeps_live_scans_and_skips_deleted_participants(tmp_path: Path) -> None:
    content = Content(
        people=[{"id": "P0", "name": "Ann"}, {"id": "P1", "name": "Bob"}],
        scans=[("in", 0, 1), ("in", 1, 2)],
    )
    a, b = build(tmp_path, content)
    m = create_backup(tmp_path / "a", Kind.PARTICIPANTS, dest=tmp_path / "dest")
    att = create_backup(tmp_path / "a", Kind.ATTENDANCE, dest=tmp_path / "dest")
    b.delete_participant(EV, "P1")
    a.apply_entries(b.export_since(EV, a.version_vector(EV)))
    a.check_in(EV, "P0")  # a newer scan of the live data
    before = reads(a)
    a.close()
    b.close()
    restore_backup(m.id, tmp_path / "dest", tmp_path / "a")
    report = restore_backup(att.id, tmp_path / "dest", tmp_path / "a")
    assert report.merge is not None and report.merge.written == 0
    with Replica.open(tmp_path / "a") as r:
        after = reads(r)
    assert after["scans"] == before["scans"]  # nothing duplicated, nothing lost
    assert after["participants"] == before["participants"]  # P1 stays deleted


def test_participants_overwrite_replaces_differing_values_only_when_asked(tmp_path: Path) -> None:
    a, b = build(tmp_path, Content(people=[{"id": "P0", "name": "Ann", "email": "a@x"}], scans=[]))
    b.close()
    m = create_backup(tmp_path / "a", Kind.PARTICIPANTS, dest=tmp_path / "dest")
    a.upsert_participant(EV, "P0", {"name": "Anne", "phone": "555"})
    a.close()
    restore_backup(m.id, tmp_path / "dest", tmp_path / "a")
    with Replica.open(tmp_path / "a") as r:
        assert r.participant(EV, "P0").fields["name"] == "Anne"  # fill only: live wins
    restore_backup(m.id, tmp_path / "dest", tmp_path / "a", overwrite=True)
    with Replica.open(tmp_path / "a") as r:
        fields = r.participant(EV, "P0").fields
    assert fields["name"] == "Ann" and fields["phone"] == "555"


def test_backup_while_the_writer_is_open_sees_only_committed_state(tmp_path: Path) -> None:
    a, b = build(tmp_path, Content(people=[{"id": "P0", "name": "Ann"}], scans=[("in", 0, 1)]))
    b.close()
    m = create_backup(tmp_path / "a", Kind.FULL, dest=tmp_path / "dest")
    assert m.events[EV].vv == a.version_vector(EV)
    assert m.raw["schema_version"] == a.store.schema_version
    a.close()
    listed = Catalog(tmp_path / "dest").entries()
    assert [e.id for e in listed] == [m.id] and listed[0].error is None


def test_incremental_after_compaction_folded_unseen_entries_needs_a_full(tmp_path: Path) -> None:
    from headcount.backup import BackupError
    from headcount.replica.compaction import compact

    a, b = build(tmp_path, Content(people=[{"id": "P0", "name": "Ann"}], scans=[]))
    create_backup(tmp_path / "a", Kind.FULL, dest=tmp_path / "dest")
    a.check_in(EV, "P0")
    a.store.record_ack(b.device_id, EV, a.version_vector(EV), 0)
    assert compact(a, EV) > 0
    with pytest.raises(BackupError) as exc:
        create_backup(tmp_path / "a", Kind.INCREMENTAL, dest=tmp_path / "dest")
    assert exc.value.code == "needs_full_backup"
    assert [e.manifest.kind for e in Catalog(tmp_path / "dest").entries()] == [Kind.FULL]
    full = create_backup(tmp_path / "a", Kind.FULL, dest=tmp_path / "dest")  # works again
    expected = reads(a)
    a.close()
    b.close()
    restore_backup(full.id, tmp_path / "dest", tmp_path / "a")
    with Replica.open(tmp_path / "a") as r:
        assert reads(r) == expected


def test_a_data_dir_that_lost_its_device_but_kept_its_backups_is_rebuilt(tmp_path: Path) -> None:
    a, b = build(tmp_path, Content(people=[{"id": "P0", "name": "Ann"}], scans=[("in", 0, 3)]))
    b.close()
    data = tmp_path / "a"
    m = create_backup(data, Kind.FULL)  # the default destination: inside the data dir
    before = reads(a)
    a.close()
    for path in data.iterdir():
        if path.is_file():
            path.unlink()  # the key, the store, the lock: gone; backups/ survived
    report = restore_backup(m.id, data / "backups", data)
    assert not report.rebuilt and {"device.key", "device.json"} <= set(report.identity_restored)
    with Replica.open(data) as r:
        assert reads(r) == before


def test_a_backup_taken_while_a_writer_keeps_writing_is_one_consistent_snapshot(
    tmp_path: Path,
) -> None:
    import threading

    a, b = build(tmp_path, Content(people=[{"id": f"P{i}"} for i in range(50)], scans=[]))
    b.close()
    base = a.version_vector(EV)[a.device_id]
    busy, stop, written = threading.Event(), threading.Event(), []

    def writer() -> None:  # the gate daemon, scanning while the backup runs
        while not stop.is_set():
            written.append(a.check_in(EV, f"P{len(written) % 50}").scan.id)
            if len(written) == 5:
                busy.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert busy.wait(timeout=30)
        m = create_backup(tmp_path / "a", Kind.FULL, dest=tmp_path / "dest")
    finally:
        stop.set()
        thread.join()
    a.close()
    restore_backup(m.id, tmp_path / "dest", tmp_path / "copy")
    with Replica.open(tmp_path / "copy") as copy:
        vv = copy.version_vector(EV)
        scans = set(copy.event(EV).doc.scans)
    kept = vv[a.device_id] - base  # one log entry per check-in
    assert vv == m.events[EV].vv and 5 <= kept <= len(written)
    assert scans == set(written[:kept])  # exactly the check-ins committed before the snapshot
