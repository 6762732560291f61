"""Writing one archive: an event's logical records and raw rows, compressed, checksummed.

An archive is a directory ``<archive_dir>/<id>/`` (``id`` =
``YYYYmmddTHHMMSSZ-<event slug>-<6 hex>``) holding:

| file | content |
|---|---|
| ``records.jsonl.gz`` | the logical records (:mod:`.records`), JSON lines ordered by ``time_ms`` |
| ``raw.msgpack.gz`` | msgpack objects: a header (snapshot, horizons, heads, roles), then |
|  | ``["log", row]`` or ``["pending", row]`` per entry, in log order |
| ``manifest.json`` | the signed manifest (:mod:`.manifest`) |

Written like a backup (the backup package's payload writer: gzip, optional
AES-256-GCM, SHA-256 of the stored bytes and of the content), in a hidden
temporary directory renamed into place once complete and fsynced.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack

from headcount import __version__
from headcount.backup.crypto import SCRYPT_N, KeyRing
from headcount.backup.errors import disk_errors
from headcount.backup.exports import event_header, json_lines
from headcount.backup.payload import COMPRESSION, PayloadWriter, context
from headcount.core.event import Event
from headcount.core.files import publish, remove_tree, temp_dir_beside, write_private
from headcount.core.identity import Identity
from headcount.service.journal import iso_time
from headcount.store.eventrows import EventRows
from headcount.store.sqlite import MIGRATIONS

from .manifest import FORMAT_VERSION, KIND, MANIFEST_FILE, ArchiveManifest, sign
from .records import load_event, logical_records

RECORDS_PAYLOAD = "records.jsonl.gz"
RAW_PAYLOAD = "raw.msgpack.gz"
RAW_VERSION = 1


def archive_id(event: str, now_ms: int) -> str:
    """A new archive id: time-sortable, naming the event (file-system safe)."""
    stamp = iso_time(now_ms)[:19].replace("-", "").replace(":", "") + "Z"
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", event)[:40].strip(".") or "event"
    return f"{stamp}-{slug}-{secrets.token_hex(3)}"


Sealing = tuple[dict[str, Any] | None, bytes | None]


def seal_with(keyring: KeyRing, scrypt_n: int = SCRYPT_N) -> Sealing:
    """Encryption parameters and key for the archives of one run (one key
    derivation for all of them); ``(None, None)`` without a secret."""
    if keyring.secret is None:
        return None, None
    params = keyring.new_params(scrypt_n)
    return params, keyring.unlock(params)


def write_archive(
    rows: EventRows,
    identity: Identity,
    directory: Path,
    now_ms: int,
    *,
    sealing: Sealing = (None, None),
    event: Event | None = None,
) -> ArchiveManifest:
    """Write the archive of the event ``rows`` describe into ``directory``.

    Args:
        sealing: the encryption parameters and key (see :func:`seal_with`).
        event: the event as loaded from ``rows`` already (else it is loaded here).

    Returns:
        The manifest of the new archive (its directory is ``directory / manifest.id``).

    Raises:
        StoreError: the rows do not decode.
        BackupError: ``disk_full`` or ``io_error`` (nothing is left behind).
    """
    ev = event or load_event(rows, identity.device_id, identity.role.value)
    records = logical_records(ev)
    ident = archive_id(rows.event, now_ms)
    with disk_errors(f"an archive in {directory}"):
        tmp = temp_dir_beside(directory / ident)
        try:
            key = sealing[1]
            files = [_write_records(tmp, ident, key, records), _write_raw(tmp, ident, key, rows)]
            body = _body(ident, rows, ev, records, identity, now_ms)
            body.update(encryption=sealing[0], files=[f.to_dict() for f in files])
            manifest = sign(body, identity)
            write_private(tmp / MANIFEST_FILE, manifest.to_json())
            publish(tmp, directory / ident)
        except BaseException:
            remove_tree(tmp)
            raise
    return manifest


def _body(
    ident: str,
    rows: EventRows,
    ev: Event,
    records: list[dict[str, Any]],
    identity: Identity,
    now_ms: int,
) -> dict[str, Any]:
    """The manifest's fields but the payloads, the encryption and the signature."""
    newest = max([rows.newest_hlc_ms, *(r["time_ms"] for r in records)])
    times = [r["time_ms"] for r in records] or [newest]
    return {
        "format": FORMAT_VERSION,
        "kind": KIND,
        "headcount_version": __version__,
        "schema_version": len(MIGRATIONS),
        "id": ident,
        "event": rows.event,
        **event_header(ev),
        "device": identity.device_id,
        "role": identity.role.value,
        "created_ms": now_ms,
        "created": iso_time(now_ms),
        "first_ms": min(times),
        "last_ms": max(times),
        "newest_ms": newest,
        "counts": dict(sorted(Counter(r["type"] for r in records).items())),
        "entries": len(rows.log),
        "pending": len(rows.pending),
        "vv": rows.vv,
        "compression": COMPRESSION,
    }


def _write_records(tmp: Path, ident: str, key: bytes | None, records: list[dict[str, Any]]) -> Any:
    with PayloadWriter(tmp / RECORDS_PAYLOAD, context(ident, RECORDS_PAYLOAD), key) as out:
        for batch in json_lines(records):
            out.write(batch)
        return out.close()


def _write_raw(tmp: Path, ident: str, key: bytes | None, rows: EventRows) -> Any:
    packer = msgpack.Packer(use_bin_type=True)
    header = {
        "v": RAW_VERSION,
        "event": rows.event,
        "created_ms": rows.created_ms,
        "snapshot": rows.snapshot,
        "horizons": [list(h) for h in rows.horizons],
        "heads": [list(h) for h in rows.heads],
        "roles": rows.roles,
    }
    with PayloadWriter(tmp / RAW_PAYLOAD, context(ident, RAW_PAYLOAD), key) as out:
        out.write(packer.pack(header))
        for tag, table in (("log", rows.log), ("pending", rows.pending)):
            for row in table:
                out.write(packer.pack([tag, list(row)]))
        return out.close()
