"""Bad input for verify and restore: each gives a clear error with its code and
leaves the data directory exactly as it was (the hash of every file compared)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from headcount import HeadcountError, Replica, Role
from headcount.backup import (
    Catalog,
    Kind,
    Secret,
    create_backup,
    crypto,
    payload,
    restore_backup,
    staging,
    verify_backup,
)
from headcount.store.sqlite import MIGRATIONS

from .support.backup import (
    EV,
    FAST_SCRYPT,
    KEY,
    PASSPHRASE,
    Content,
    build,
    edit_manifest,
    resign,
    tree_hashes,
)

PEOPLE = [{"id": f"P{i}", "name": f"Name {i}", "allergies": "none"} for i in range(4)]


@dataclass
class World:
    root: Path
    data: Path
    dest: Path
    full: str
    inc: str
    enc_dest: Path
    enc: str
    key_dest: Path
    key: str

    def backup(self, backup_id: str, dest: Path | None = None) -> Path:
        return (dest or self.dest) / backup_id


@pytest.fixture
def world(tmp_path: Path) -> World:
    a, b = build(tmp_path, Content(PEOPLE, [("in", 0, 5), ("in", 1, 4), ("out", 0, 1)]))
    b.close()
    data, dest = tmp_path / "a", tmp_path / "dest"
    full = create_backup(data, Kind.FULL, dest=dest)
    a.check_in(EV, "P2")
    inc = create_backup(data, Kind.INCREMENTAL, dest=dest)
    enc = create_backup(
        data, Kind.FULL, dest=tmp_path / "enc", secret=PASSPHRASE, scrypt_n=FAST_SCRYPT
    )
    keyed = create_backup(data, Kind.FULL, dest=tmp_path / "keyed", secret=KEY)
    a.check_in(EV, "P3")  # the live data moved on after the backups
    a.close()
    return World(
        tmp_path,
        data,
        dest,
        full.id,
        inc.id,
        tmp_path / "enc",
        enc.id,
        tmp_path / "keyed",
        keyed.id,
    )


def refused(
    world: World,
    code: str,
    ref: str,
    dest: Path | None = None,
    onto: Path | None = None,
    **kw: object,
) -> str:
    """Restore into ``onto`` (the world's data directory by default) must fail
    with ``code`` and change nothing there."""
    data = onto or world.data
    before = tree_hashes(data)
    with pytest.raises(HeadcountError) as exc:
        restore_backup(ref, dest or world.dest, data, **kw)
    assert exc.value.code == code, exc.value
    assert tree_hashes(data) == before
    return exc.value.message


def verify_fails(world: World, code: str, ref: str, dest: Path | None = None, **kw: object) -> None:
    with pytest.raises(HeadcountError) as exc:
        verify_backup(ref, dest or world.dest, **kw)
    assert exc.value.code == code, exc.value


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


# -- corrupted, truncated, tampered ---------------------------------------------


@pytest.mark.parametrize("offset", [0, 100, -1])
def test_a_flipped_byte_in_a_payload_is_corrupt(world: World, offset: int) -> None:
    flip_byte(world.backup(world.full) / payload.STORE_PAYLOAD, offset)
    verify_fails(world, "backup_corrupt", world.full)
    msg = refused(world, "backup_corrupt", world.inc)  # the chain's full is damaged
    assert payload.STORE_PAYLOAD in msg


def test_a_truncated_payload_is_reported_as_truncated(world: World) -> None:
    path = world.backup(world.inc) / payload.DELTA_PAYLOAD
    path.write_bytes(path.read_bytes()[:-7])
    verify_fails(world, "backup_truncated", world.inc)
    refused(world, "backup_truncated", world.inc)


def test_a_missing_payload_is_reported(world: World) -> None:
    (world.backup(world.full) / payload.IDENTITY_PAYLOAD).unlink()
    verify_fails(world, "backup_truncated", world.full)
    refused(world, "backup_truncated", world.full)


def test_a_changed_version_vector_breaks_the_signature(world: World) -> None:
    raw = json.loads((world.backup(world.full) / "manifest.json").read_text())
    raw["events"][EV]["vv"] = {d: s + 5 for d, s in raw["events"][EV]["vv"].items()}
    edit_manifest(world.backup(world.full), {"events": raw["events"]})
    verify_fails(world, "backup_tampered", world.full)
    refused(world, "backup_tampered", world.full)


def test_a_tampered_payload_with_a_matching_checksum_breaks_the_signature(world: World) -> None:
    backup = world.backup(world.inc)
    path = backup / payload.DELTA_PAYLOAD
    flip_byte(path, 50)
    files = json.loads((backup / "manifest.json").read_text())["files"]
    files[0].update(size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    edit_manifest(backup, {"files": files})
    verify_fails(world, "backup_tampered", world.inc)
    refused(world, "backup_tampered", world.inc)


def test_a_manifest_signed_by_another_key_is_tampered(world: World, tmp_path: Path) -> None:
    Replica.init(tmp_path / "mallory", role=Role.GATE)
    raw = json.loads((world.backup(world.full) / "manifest.json").read_text())
    body = {k: v for k, v in raw.items() if k not in ("signature", "public_key")}
    from headcount.backup import manifest
    from headcount.core.identity import load_identity

    forged = manifest.sign(body, load_identity(tmp_path / "mallory"))  # claims a's device id
    (world.backup(world.full) / "manifest.json").write_bytes(forged.to_json())
    verify_fails(world, "backup_tampered", world.full)
    refused(world, "backup_tampered", world.full)


def test_a_manifest_that_is_not_json_is_corrupt(world: World) -> None:
    (world.backup(world.full) / "manifest.json").write_bytes(b"\x00not json")
    verify_fails(world, "backup_corrupt", world.full)
    refused(world, "backup_corrupt", world.full)
    [bad] = [e for e in Catalog(world.dest).entries() if e.id == world.full]
    assert bad.error is not None and bad.error.code == "backup_corrupt"


def test_an_unknown_backup_is_not_found(world: World) -> None:
    refused(world, "backup_not_found", "20990101T000000Z-full-000000")


# -- chains ------------------------------------------------------------------------


def test_a_missing_chain_link_breaks_the_chain(world: World) -> None:
    shutil.rmtree(world.backup(world.full))
    verify_fails(world, "chain_broken", world.inc)
    refused(world, "chain_broken", world.inc)


def test_an_incremental_built_on_other_vectors_breaks_the_chain(world: World) -> None:
    raw = json.loads((world.backup(world.inc) / "manifest.json").read_text())
    parent_events = raw["parent_events"]
    parent_events[EV]["vv"] = {d: s - 1 for d, s in parent_events[EV]["vv"].items()}
    resign(world.backup(world.inc), world.data, {"parent_events": parent_events})
    verify_fails(world, "chain_broken", world.inc)
    refused(world, "chain_broken", world.inc)


def test_an_incremental_that_does_not_continue_the_hash_chain_is_refused(world: World) -> None:
    from headcount.backup import delta
    from headcount.store.dbfile import StoreFile

    work = world.root / "work.db"
    staging.stage_store(
        [Catalog(world.dest).get(world.full)], world.dest, crypto.KeyRing(None), work, print
    )
    m = Catalog(world.dest).get(world.inc)
    rows = delta.decode(
        payload.read_all(
            world.backup(world.inc) / payload.DELTA_PAYLOAD,
            m.file(payload.DELTA_PAYLOAD),
            payload.context(m.id, payload.DELTA_PAYLOAD),
            None,
        )
    )
    rows["log"][0][5] = b"\x07" * 32  # a prev that is not the staged chain's tip
    before = hashlib.sha256(work.read_bytes()).digest()
    with StoreFile.open_writable(work) as staged, pytest.raises(HeadcountError) as exc:
        with staged.write_transaction():
            delta.apply(staged, rows, m.id)
    assert exc.value.code == "chain_broken"
    assert hashlib.sha256(work.read_bytes()).digest() == before  # nothing written


def test_an_incremental_of_a_store_restored_behind_its_parent_needs_a_full(world: World) -> None:
    restore_backup(world.full, world.dest, world.data)  # now behind world.inc
    with Replica.open(world.data) as r:
        r.mark_rejoined(EV)
        r.check_in(EV, "P3")  # a different entry at a sequence number inc already holds
    with pytest.raises(HeadcountError) as exc:
        create_backup(world.data, Kind.INCREMENTAL, dest=world.dest)
    assert exc.value.code == "needs_full_backup"


# -- keys ----------------------------------------------------------------------------


def test_a_wrong_passphrase_is_a_wrong_key(world: World) -> None:
    wrong = Secret(passphrase=b"not it")
    verify_fails(world, "wrong_key", world.enc, world.enc_dest, secret=wrong)
    refused(world, "wrong_key", world.enc, world.enc_dest, secret=wrong)


def test_a_wrong_key_file_is_a_wrong_key(world: World) -> None:
    wrong = Secret(key=b"\x01" * 32)
    verify_fails(world, "wrong_key", world.key, world.key_dest, secret=wrong)
    refused(world, "wrong_key", world.key, world.key_dest, secret=wrong)


def test_an_encrypted_backup_needs_its_kind_of_secret(world: World) -> None:
    refused(world, "key_required", world.enc, world.enc_dest)
    refused(world, "key_required", world.key, world.key_dest, secret=PASSPHRASE)
    refused(world, "key_required", world.enc, world.enc_dest, secret=KEY)


def test_verify_without_the_key_checks_checksums_and_signature_only(world: World) -> None:
    report = verify_backup(world.enc, world.enc_dest)
    assert not report.content_checked
    flip_byte(world.backup(world.enc, world.enc_dest) / payload.STORE_PAYLOAD, 40)
    verify_fails(world, "backup_corrupt", world.enc, world.enc_dest)


def test_encrypted_chunks_cannot_be_cut_reordered_or_moved() -> None:
    key, data = b"\x05" * 32, os.urandom(crypto.CHUNK_BYTES * 2 + 1000)
    sealer = crypto.ChunkSealer(key, b"b1/f")
    frames = [
        sealer.seal(data[: crypto.CHUNK_BYTES], final=False),
        sealer.seal(data[crypto.CHUNK_BYTES : 2 * crypto.CHUNK_BYTES], final=False),
        sealer.seal(data[2 * crypto.CHUNK_BYTES :], final=True),
    ]

    def opened(parts: list[bytes], context: bytes = b"b1/f") -> bytes:
        fh = io.BytesIO(sealer.header() + b"".join(parts))
        return b"".join(crypto.open_chunks(key, context, fh))

    assert opened(frames) == data
    for parts, context, code in [
        (frames[:2], b"b1/f", "backup_truncated"),  # the final chunk cut off
        ([frames[1], frames[0], frames[2]], b"b1/f", "backup_corrupt"),  # reordered
        (frames, b"b2/f", "backup_corrupt"),  # moved to another backup
    ]:
        with pytest.raises(HeadcountError) as exc:
            opened(parts, context)
        assert exc.value.code == code


# -- versions --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["2.0", "1.2", "0.9", "one"])
def test_an_incompatible_format_is_refused(world: World, fmt: str) -> None:
    resign(world.backup(world.full), world.data, {"format": fmt})
    verify_fails(world, "incompatible_version", world.full)
    refused(world, "incompatible_version", world.full)


def test_a_minor_version_one_apart_is_accepted(world: World) -> None:
    resign(world.backup(world.full), world.data, {"format": "1.1", "added_in_1_1": {"x": 1}})
    assert verify_backup(world.full, world.dest).content_checked
    restore_backup(world.full, world.dest, world.data)


def test_a_store_schema_newer_than_known_is_refused(world: World) -> None:
    resign(world.backup(world.full), world.data, {"schema_version": len(MIGRATIONS) + 1})
    refused(world, "incompatible_version", world.full)


# -- devices, identity, lock ----------------------------------------------------------------


def test_restore_while_the_data_dir_is_locked_is_refused(world: World) -> None:
    with Replica.open(world.data):  # a running daemon holds the lock
        refused(world, "locked", world.full)


def test_restore_onto_another_device_is_refused(world: World, tmp_path: Path) -> None:
    other = tmp_path / "other"
    Replica.init(other, role=Role.GATE)
    refused(world, "wrong_device", world.full, onto=other)
    refused(world, "wrong_device", world.full, expect_device="0" * 20)


def test_a_destroyed_data_dir_needs_a_backup_with_identity(world: World, tmp_path: Path) -> None:
    bare = create_backup(world.data, Kind.FULL, dest=world.dest, identity=False)
    gone = tmp_path / "gone"
    with pytest.raises(HeadcountError) as exc:
        restore_backup(bare.id, world.dest, gone)
    assert exc.value.code == "identity_missing"
    assert not gone.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_per_kind_backup_from_an_unknown_device_is_refused(world: World, tmp_path: Path) -> None:
    m = create_backup(world.data, Kind.PARTICIPANTS, dest=world.dest)
    stranger = tmp_path / "stranger"
    Replica.init(stranger, role=Role.GATE)
    refused(world, "untrusted_signer", m.id, onto=stranger)


def test_configuration_onto_a_gate_is_refused(world: World) -> None:
    m = create_backup(world.data, Kind.CONFIGURATION, dest=world.dest)
    refused(world, "permission_denied", m.id)


# -- full disks ----------------------------------------------------------------------


def _enospc(*_args: object, **_kw: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_create_leaves_no_backup(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree_hashes(world.data)
    listed = [e.id for e in Catalog(world.dest).entries()]
    monkeypatch.setattr(payload.PayloadWriter, "_out", _enospc)
    for kind in (Kind.FULL, Kind.INCREMENTAL, Kind.ATTENDANCE):
        with pytest.raises(HeadcountError) as exc:
            create_backup(world.data, kind, dest=world.dest)
        assert exc.value.code == "disk_full"
    assert [e.id for e in Catalog(world.dest).entries()] == listed
    assert not [p for p in world.dest.iterdir() if p.name.startswith(".")]
    assert tree_hashes(world.data) == before


def test_a_full_disk_during_restore_leaves_the_data_dir(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def filling(*args: object, **kw: object):
        yield b"SQLite format 3\x00"
        _enospc()

    monkeypatch.setattr(staging, "read_content", filling)
    refused(world, "disk_full", world.inc)


def test_sqlite_out_of_space_is_a_full_disk_and_other_errors_pass(tmp_path: Path) -> None:
    import sqlite3

    from headcount.backup.errors import disk_errors

    db = sqlite3.connect(tmp_path / "small.db", isolation_level=None)
    try:
        db.execute("PRAGMA max_page_count=4")
        db.execute("CREATE TABLE t (b BLOB)")
        with pytest.raises(HeadcountError) as exc, disk_errors("a small database"):
            for _ in range(100):
                db.execute("INSERT INTO t VALUES (randomblob(4096))")
        assert exc.value.code == "disk_full"
        with pytest.raises(sqlite3.OperationalError), disk_errors("a small database"):
            db.execute("SELECT * FROM no_such_table")
    finally:
        db.close()


def _mount_tmpfs(path: Path, size: int) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full disk) needs root")
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def test_a_really_full_disk_during_create_and_restore(tmp_path: Path) -> None:
    rows = [{"id": f"P{i}", "name": os.urandom(24).hex()} for i in range(3000)]
    a, b = build(tmp_path, Content(rows, []))
    a.close()
    b.close()
    data = tmp_path / "a"
    db_size = (data / "headcount.db").stat().st_size
    small = tmp_path / "small"
    _mount_tmpfs(small, 64 * 1024)
    try:
        with pytest.raises(HeadcountError) as exc:
            create_backup(data, Kind.FULL, dest=small / "backups")
        assert exc.value.code == "disk_full"
        assert list((small / "backups").iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
    full = create_backup(data, Kind.FULL, dest=tmp_path / "dest")
    room = tmp_path / "room"
    _mount_tmpfs(room, sum(p.stat().st_size for p in data.iterdir() if p.is_file()) + db_size // 2)
    try:
        shutil.copytree(data, room / "a")
        before = tree_hashes(room / "a")
        with pytest.raises(HeadcountError) as exc:
            restore_backup(full.id, tmp_path / "dest", room / "a")
        assert exc.value.code == "disk_full"
        assert tree_hashes(room / "a") == before
    finally:
        subprocess.run(["umount", str(room)], check=True)


def test_a_crashed_create_leaves_nothing_listed(world: World) -> None:
    junk = world.dest / ".tmp-20990101T000000Z-full-abcdef-0000"
    junk.mkdir()
    (junk / "store.db.gz").write_bytes(b"half")
    assert junk.name not in [e.id for e in Catalog(world.dest).entries()]
