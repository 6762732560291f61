"""An archive's manifest: which event, which time range, what it holds, signed.

``manifest.json`` sits beside the payloads. It records the format, the
device that archived the event (id, public key, role) and when, the event
(id and name), the time range of its records (``first_ms`` and ``last_ms``:
what :func:`~.reader.query` reads to skip archives outside a range), the
newest record time that made it old enough, the record counts per type, the
number of raw log entries, the event's version vector, the compression, the
encryption parameters (never a key) and every payload's size and SHA-256.

The device signs the canonical JSON of every other field with its Ed25519
key, as a backup manifest is signed but under another domain string, so
that an archive manifest can never pass for a backup's or the reverse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..backup.manifest import FileRecord
from ..identity import Identity, device_id_for
from .errors import CORRUPT, INCOMPATIBLE, NOT_FOUND, TAMPERED, UNREADABLE, ArchiveError

FORMAT_VERSION = "1.0"
KIND = "archive"
MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20
_SIGNED_DOMAIN = b"headcount/archive/manifest/v1\x00"
_FILE_FIELDS = ("name", "size", "sha256", "raw_size", "raw_sha256")


@dataclass(frozen=True, slots=True)
class ArchiveManifest:
    """A parsed, signature-checked manifest; ``raw`` is the JSON object as written."""

    raw: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw["id"])

    @property
    def event(self) -> str:
        return str(self.raw["event"])

    @property
    def device(self) -> str:
        return str(self.raw["device"])

    @property
    def public_key(self) -> bytes:
        return bytes.fromhex(self.raw["public_key"])

    @property
    def created_ms(self) -> int:
        """When the event was archived."""
        return int(self.raw["created_ms"])

    @property
    def first_ms(self) -> int:
        return int(self.raw["first_ms"])

    @property
    def last_ms(self) -> int:
        return int(self.raw["last_ms"])

    @property
    def vv(self) -> dict[str, int]:
        return {str(d): int(s) for d, s in self.raw["vv"].items()}

    @property
    def counts(self) -> dict[str, int]:
        return {str(k): int(n) for k, n in self.raw["counts"].items()}

    @property
    def encryption(self) -> dict[str, Any] | None:
        return self.raw.get("encryption")

    @property
    def files(self) -> list[FileRecord]:
        return [FileRecord(**{k: f[k] for k in _FILE_FIELDS}) for f in self.raw["files"]]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, name: str) -> FileRecord | None:
        return next((f for f in self.files if f.name == name), None)

    def overlaps(self, from_ms: int, to_ms: int) -> bool:
        """Some record may fall in ``[from_ms, to_ms]``."""
        return self.first_ms <= to_ms and self.last_ms >= from_ms

    def to_json(self) -> bytes:
        return json.dumps(self.raw, indent=1, sort_keys=True).encode("utf-8") + b"\n"


def sign(body: Mapping[str, Any], identity: Identity) -> ArchiveManifest:
    """The manifest of ``body`` (every field but the key and signature), signed."""
    raw = {**body, "public_key": identity.public_key_raw.hex()}
    raw["signature"] = identity.sign(_signed_bytes(raw)).hex()
    return parse(json.dumps(raw).encode("utf-8"))


def parse(data: bytes) -> ArchiveManifest:
    """Parse a manifest and check its shape, signature, signer and format.

    Raises:
        ArchiveError: ``archive_corrupt`` (not a manifest), ``archive_tampered``
            (the signature does not verify, or the key is not the device's),
            ``incompatible_version``.
    """
    try:
        raw = json.loads(data)
        manifest = ArchiveManifest(raw)
        _check_shape(manifest)
        signature = bytes.fromhex(raw["signature"])
        key = Ed25519PublicKey.from_public_bytes(manifest.public_key)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ArchiveError(f"the archive manifest is unreadable: {exc}", code=CORRUPT) from None
    try:
        key.verify(signature, _signed_bytes(raw))
    except InvalidSignature:
        raise ArchiveError(
            f"archive {raw.get('id')}: the manifest's signature does not verify: it was "
            "changed after the device wrote it",
            code=TAMPERED,
        ) from None
    if device_id_for(key) != manifest.device:
        raise ArchiveError(
            f"archive {manifest.id} claims device {manifest.device} but is signed by another key",
            code=TAMPERED,
        )
    _check_format(manifest)
    return manifest


def load(directory: Path) -> ArchiveManifest:
    """Read and check ``directory/manifest.json`` (see :func:`parse`).

    Raises:
        ArchiveError: ``archive_not_found``, ``archive_unreadable``, or as :func:`parse`.
    """
    path = directory / MANIFEST_FILE
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ArchiveError(
            f"no archive in {directory} (no {MANIFEST_FILE})", code=NOT_FOUND
        ) from None
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}", code=UNREADABLE) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{path} is larger than any manifest", code=CORRUPT)
    manifest = parse(data)
    if manifest.id != directory.name:
        raise ArchiveError(
            f"{directory} holds the manifest of archive {manifest.id}", code=TAMPERED
        )
    return manifest


def _signed_bytes(raw: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in raw.items() if k != "signature"}
    return _SIGNED_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _check_shape(m: ArchiveManifest) -> None:
    """Touch every field a reader relies on, so a malformed one fails here, once."""
    if not isinstance(m.raw, dict) or not isinstance(m.raw["files"], list):
        raise TypeError("not a manifest object")
    if m.raw.get("kind") != KIND:
        raise ValueError(f"not an archive manifest (kind {m.raw.get('kind')!r})")
    for value in (m.id, m.event, m.device, m.raw["format"], m.raw["signature"]):
        if not isinstance(value, str) or not value:
            raise TypeError("id, event, device, format and signature must be strings")
    _ = (m.created_ms, m.first_ms, m.last_ms, m.vv, m.counts, m.files, int(m.raw["entries"]))
    for f in m.files:
        if "/" in f.name or f.name.startswith(".") or not f.name:
            raise ValueError(f"bad payload file name {f.name!r}")


def _check_format(m: ArchiveManifest) -> None:
    """The same major version, a minor at most one apart (as for backups)."""
    try:
        theirs = tuple(int(x) for x in str(m.raw["format"]).split("."))
        ours = tuple(int(x) for x in FORMAT_VERSION.split("."))
        compatible = len(theirs) == 2 and theirs[0] == ours[0] and abs(theirs[1] - ours[1]) <= 1
    except ValueError:
        compatible = False
    if not compatible:
        raise ArchiveError(
            f"archive {m.id} has format {m.raw['format']}; this headcount reads "
            f"{FORMAT_VERSION} and one minor version either side",
            code=INCOMPATIBLE,
        )
