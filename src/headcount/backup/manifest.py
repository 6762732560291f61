"""A backup's manifest: what it holds, for which device, in which format, signed.

``manifest.json`` sits in the backup's directory beside its payload files.
It records the format version, the headcount version and store schema
version that wrote it, the kind, the device (id, public key, role), the
creation time, every event's version vector and chain tips, the parent of
an incremental with the vectors it builds on, the compression, the
encryption parameters (never a key), and for every payload file its name,
size and SHA-256 as stored plus the size and SHA-256 of its content.

The device signs the canonical JSON of every other field with its Ed25519
key (see :mod:`.signed`, shared with archives), so changing a payload *and*
its checksum is still detected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from headcount.core.identity import Identity
from headcount.store.eventstate import EventState

from . import signed
from .errors import CORRUPT, INCOMPATIBLE, NOT_FOUND, TAMPERED, BackupError
from .signed import MANIFEST_FILE, FileRecord, SignedManifest

FORMAT_VERSION = "1.0"
MAX_MANIFEST_BYTES = 64 << 20
_RULES = signed.Rules(
    domain=b"headcount/backup/manifest/v1\x00",
    noun="backup",
    title="the manifest",
    max_bytes=MAX_MANIFEST_BYTES,
    error=BackupError,
    corrupt=CORRUPT,
    tampered=TAMPERED,
    not_found=NOT_FOUND,
    unreadable=CORRUPT,
)

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "EventState",
    "FileRecord",
    "Kind",
    "Manifest",
    "check_compatible",
    "check_signer",
    "load",
    "parse",
    "sign",
]


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
class Manifest(SignedManifest):
    """A parsed, signature-checked backup manifest. ``raw`` is the JSON object as written."""

    @property
    def kind(self) -> Kind:
        return Kind(self.raw["kind"])

    @property
    def parent(self) -> str | None:
        return self.raw.get("parent")

    @property
    def schema_version(self) -> int:
        return int(self.raw["schema_version"])

    @property
    def events(self) -> dict[str, EventState]:
        return {e: _state(s) for e, s in self.raw["events"].items()}

    @property
    def parent_events(self) -> dict[str, EventState]:
        return {e: _state(s) for e, s in (self.raw.get("parent_events") or {}).items()}


def sign(body: Mapping[str, Any], identity: Identity) -> Manifest:
    """The manifest of ``body`` (every field but the signature), signed by ``identity``."""
    return parse(signed.sign(body, identity, _RULES))


def parse(data: bytes) -> Manifest:
    """Parse a manifest, check its shape and its signature (not its compatibility).

    Raises:
        BackupError: ``backup_corrupt`` (not a manifest), ``backup_tampered``
            (the signature does not verify against the recorded key).
    """
    return signed.parse(data, _RULES, _checked)


def load(directory: Path) -> Manifest:
    """Read and check ``directory/manifest.json`` (see :func:`parse`).

    Raises:
        BackupError: ``backup_not_found`` (no manifest there), or as :func:`parse`.
    """
    return signed.load(directory, _RULES, parse)


def check_signer(manifest: Manifest) -> None:
    """The recorded key is the key of the recorded device (ids derive from keys).

    Raises:
        BackupError: code ``backup_tampered``.
    """
    signed.check_signer(manifest, _RULES)


def check_compatible(manifest: Manifest, schema_versions: int) -> None:
    """Refuse a backup this headcount cannot restore.

    The rule of the reference document (one version apart at most): the same
    format major version and a minor at most one apart; for the kinds that
    restore the store, a schema version no newer than ``schema_versions``
    (older ones are upgraded by the store's migrations on open).

    Raises:
        BackupError: code ``incompatible_version``.
    """
    theirs = manifest.raw.get("format")
    try:
        readable = signed.readable_format(theirs, FORMAT_VERSION)
    except ValueError:
        raise BackupError(
            f"format version {theirs!r} is not MAJOR.MINOR", code=INCOMPATIBLE
        ) from None
    if not readable:
        raise BackupError(
            f"backup {manifest.id} has format {theirs}; this headcount reads format "
            f"{FORMAT_VERSION.split('.')[0]}.x within one minor version of {FORMAT_VERSION}",
            code=INCOMPATIBLE,
        )
    if manifest.kind.is_chain and manifest.schema_version > schema_versions:
        raise BackupError(
            f"backup {manifest.id} holds a store of schema version {manifest.schema_version}; "
            f"this headcount knows up to {schema_versions}: upgrade headcount",
            code=INCOMPATIBLE,
        )


def _state(raw: Mapping[str, Any]) -> EventState:
    return EventState(
        {str(d): int(s) for d, s in raw["vv"].items()},
        {str(d): str(h) for d, h in raw.get("tips", {}).items()},
    )


def _checked(raw: Any) -> Manifest:
    """The manifest of ``raw``, every field a reader relies on touched, so that a
    malformed one fails here, once."""
    m = Manifest(raw)
    if not isinstance(m.raw, dict) or not isinstance(m.raw["files"], list):
        raise TypeError("not a manifest object")
    for value in (m.id, m.device, m.raw["format"], m.raw["signature"]):
        if not isinstance(value, str) or not value:
            raise TypeError("id, device, format and signature must be strings")
    _ = (m.kind, m.created_ms, m.schema_version, m.events, m.parent_events)
    signed.check_payload_names(m.files)
    return m
