"""A backup's manifest: what it holds, for which device, in which format, signed.

``manifest.json`` sits in the backup's directory beside its payload files.
It records the format version, the headcount version and store schema
version that wrote it, the kind, the device (id, public key, role), the
creation time, every event's version vector and chain tips, the parent of
an incremental with the vectors it builds on, the compression, the
encryption parameters (never a key), and for every payload file its name,
size and SHA-256 as stored plus the size and SHA-256 of its content.

The device signs the canonical JSON of every other field with its Ed25519
key, so changing a payload *and* its checksum is still detected. The
signature covers the fields as written, unknown ones included, so a reader
one minor version older verifies a newer manifest too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..identity import Identity
from .errors import CORRUPT, INCOMPATIBLE, NOT_FOUND, TAMPERED, BackupError

FORMAT_VERSION = "1.0"
MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
_SIGNED_DOMAIN = b"headcount/backup/manifest/v1\x00"
_FILE_FIELDS = ("name", "size", "sha256", "raw_size", "raw_sha256")


class Kind(StrEnum):
    """What a backup holds."""

    FULL = "full"
    """The whole store (a consistent SQLite copy) and, by default, the identity files."""
    INCREMENTAL = "incremental"
    """The log entries added since its parent (a full or another incremental)."""
    ATTENDANCE = "attendance"
    """Every scan and the attendance derived from them, as JSON lines."""
    PARTICIPANTS = "participants"
    """Every participant with all fields and the deleted flag, as JSON lines."""
    CONFIGURATION = "configuration"
    """Every event's configuration keys, as JSON lines."""

    @property
    def is_chain(self) -> bool:
        """Restored by replacing the store (full, incremental), not by merging."""
        return self in (Kind.FULL, Kind.INCREMENTAL)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One payload file: as stored (``size``, ``sha256``) and its content (``raw_*``)."""

    name: str
    size: int
    sha256: str
    raw_size: int
    raw_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "raw_size": self.raw_size,
            "raw_sha256": self.raw_sha256,
        }


@dataclass(frozen=True, slots=True)
class EventState:
    """An event's version vector and, per device, the hash (hex) of its entry there."""

    vv: dict[str, int]
    tips: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"vv": dict(sorted(self.vv.items())), "tips": dict(sorted(self.tips.items()))}


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed, signature-checked manifest. ``raw`` is the JSON object as written."""

    raw: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw["id"])

    @property
    def kind(self) -> Kind:
        return Kind(self.raw["kind"])

    @property
    def device(self) -> str:
        return str(self.raw["device"])

    @property
    def public_key(self) -> bytes:
        return bytes.fromhex(self.raw["public_key"])

    @property
    def created_ms(self) -> int:
        return int(self.raw["created_ms"])

    @property
    def parent(self) -> str | None:
        return self.raw.get("parent")

    @property
    def schema_version(self) -> int:
        return int(self.raw["schema_version"])

    @property
    def encryption(self) -> dict[str, Any] | None:
        return self.raw.get("encryption")

    @property
    def events(self) -> dict[str, EventState]:
        return {e: _state(s) for e, s in self.raw["events"].items()}

    @property
    def parent_events(self) -> dict[str, EventState]:
        return {e: _state(s) for e, s in (self.raw.get("parent_events") or {}).items()}

    @property
    def files(self) -> list[FileRecord]:
        return [FileRecord(**{k: f[k] for k in _FILE_FIELDS}) for f in self.raw["files"]]

    @property
    def size(self) -> int:
        """Bytes of every payload file (the manifest itself not included)."""
        return sum(f.size for f in self.files)

    def file(self, name: str) -> FileRecord | None:
        return next((f for f in self.files if f.name == name), None)

    def to_json(self) -> bytes:
        return json.dumps(self.raw, indent=1, sort_keys=True).encode("utf-8") + b"\n"


def sign(body: Mapping[str, Any], identity: Identity) -> Manifest:
    """The manifest of ``body`` (every field but the signature), signed by ``identity``."""
    raw = {**body, "public_key": identity.public_key_raw.hex()}
    raw["signature"] = identity.sign(_signed_bytes(raw)).hex()
    return parse(json.dumps(raw).encode("utf-8"))


def parse(data: bytes) -> Manifest:
    """Parse a manifest, check its shape and its signature (not its compatibility).

    Raises:
        BackupError: ``backup_corrupt`` (not a manifest), ``backup_tampered``
            (the signature does not verify against the recorded key).
    """
    try:
        raw = json.loads(data)
        manifest = Manifest(raw)
        _check_shape(manifest)
        signature = bytes.fromhex(raw["signature"])
        key = Ed25519PublicKey.from_public_bytes(manifest.public_key)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BackupError(f"the manifest is unreadable: {exc}", code=CORRUPT) from None
    try:
        key.verify(signature, _signed_bytes(raw))
    except InvalidSignature:
        raise BackupError(
            f"backup {raw.get('id')}: the manifest's signature does not verify: it was "
            "changed after the device wrote it",
            code=TAMPERED,
        ) from None
    return manifest


def load(directory: Path) -> Manifest:
    """Read and check ``directory/manifest.json`` (see :func:`parse`).

    Raises:
        BackupError: ``backup_not_found`` (no manifest there), or as :func:`parse`.
    """
    path = directory / MANIFEST_FILE
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise BackupError(
            f"no backup in {directory} (no {MANIFEST_FILE})", code=NOT_FOUND
        ) from None
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}", code=CORRUPT) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise BackupError(f"{path} is larger than any manifest", code=CORRUPT)
    manifest = parse(data)
    if manifest.id != directory.name:
        raise BackupError(f"{directory} holds the manifest of backup {manifest.id}", code=TAMPERED)
    return manifest


def check_compatible(manifest: Manifest, schema_versions: int) -> None:
    """Refuse a backup this headcount cannot restore.

    The rule of the reference document (one version apart at most): the same
    format major version and a minor at most one apart; for the kinds that
    restore the store, a schema version no newer than ``schema_versions``
    (older ones are upgraded by the store's migrations on open).

    Raises:
        BackupError: code ``incompatible_version``.
    """
    theirs, ours = _version(manifest.raw.get("format")), _version(FORMAT_VERSION)
    if theirs[0] != ours[0] or abs(theirs[1] - ours[1]) > 1:
        raise BackupError(
            f"backup {manifest.id} has format {manifest.raw.get('format')}; this headcount "
            f"reads format {ours[0]}.x within one minor version of {FORMAT_VERSION}",
            code=INCOMPATIBLE,
        )
    if manifest.kind.is_chain and manifest.schema_version > schema_versions:
        raise BackupError(
            f"backup {manifest.id} holds a store of schema version {manifest.schema_version}; "
            f"this headcount knows up to {schema_versions}: upgrade headcount",
            code=INCOMPATIBLE,
        )


def _version(text: object) -> tuple[int, int]:
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        raise BackupError(
            f"format version {text!r} is not MAJOR.MINOR", code=INCOMPATIBLE
        ) from None


def _signed_bytes(raw: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in raw.items() if k != "signature"}
    return _SIGNED_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _state(raw: Mapping[str, Any]) -> EventState:
    return EventState(
        {str(d): int(s) for d, s in raw["vv"].items()},
        {str(d): str(h) for d, h in raw.get("tips", {}).items()},
    )


def _check_shape(m: Manifest) -> None:
    """Touch every field a reader relies on, so a malformed one fails here, once."""
    if not isinstance(m.raw, dict) or not isinstance(m.raw["files"], list):
        raise TypeError("not a manifest object")
    for value in (m.id, m.device, m.raw["format"], m.raw["signature"]):
        if not isinstance(value, str) or not value:
            raise TypeError("id, device, format and signature must be strings")
    _ = (m.kind, m.created_ms, m.schema_version, m.events, m.parent_events, m.files)
    for f in m.files:
        if "/" in f.name or f.name.startswith(".") or not f.name:
            raise ValueError(f"bad payload file name {f.name!r}")
