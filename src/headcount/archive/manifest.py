"""An archive's manifest: which event, which time range, what it holds, signed.

``manifest.json`` sits beside the payloads. It records the format, the
device that archived the event (id, public key, role) and when, the event
(id and name), the time range of its records (``first_ms`` and ``last_ms``:
what :func:`~.reader.query` reads to skip archives outside a range), the
newest record time that made it old enough, the record counts per type, the
number of raw log entries, the event's version vector, the compression, the
encryption parameters (never a key) and every payload's size and SHA-256.

The device signs the canonical JSON of every other field with its Ed25519
key, as a backup manifest is signed (:mod:`headcount.backup.signed`) but
under another domain string, so that an archive manifest can never pass
for a backup's or the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headcount.backup import signed
from headcount.backup.signed import MANIFEST_FILE, SignedManifest
from headcount.core.identity import Identity

from .errors import CORRUPT, INCOMPATIBLE, NOT_FOUND, TAMPERED, UNREADABLE, ArchiveError

FORMAT_VERSION = "1.0"
KIND = "archive"
MAX_MANIFEST_BYTES = 16 << 20
_RULES = signed.Rules(
    domain=b"headcount/archive/manifest/v1\x00",
    noun="archive",
    title="the archive manifest",
    max_bytes=MAX_MANIFEST_BYTES,
    error=ArchiveError,
    corrupt=CORRUPT,
    tampered=TAMPERED,
    not_found=NOT_FOUND,
    unreadable=UNREADABLE,
)

__all__ = [
    "FORMAT_VERSION",
    "KIND",
    "MANIFEST_FILE",
    "ArchiveManifest",
    "load",
    "parse",
    "sign",
]


@dataclass(frozen=True, slots=True)
class ArchiveManifest(SignedManifest):
    """A parsed, signature-checked archive manifest; ``raw`` is the JSON object as written.

    Its ``created_ms`` is when the event was archived.
    """

    @property
    def event(self) -> str:
        return str(self.raw["event"])

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

    def overlaps(self, from_ms: int, to_ms: int) -> bool:
        """Some record may fall in ``[from_ms, to_ms]``."""
        return self.first_ms <= to_ms and self.last_ms >= from_ms


def sign(body: Mapping[str, Any], identity: Identity) -> ArchiveManifest:
    """The manifest of ``body`` (every field but the key and signature), signed."""
    return parse(signed.sign(body, identity, _RULES))


def parse(data: bytes) -> ArchiveManifest:
    """Parse a manifest and check its shape, signature, signer and format.

    Raises:
        ArchiveError: ``archive_corrupt`` (not a manifest), ``archive_tampered``
            (the signature does not verify, or the key is not the device's),
            ``incompatible_version``.
    """
    manifest = signed.parse(data, _RULES, _checked)
    signed.check_signer(manifest, _RULES)
    _check_format(manifest)
    return manifest


def load(directory: Path) -> ArchiveManifest:
    """Read and check ``directory/manifest.json`` (see :func:`parse`).

    Raises:
        ArchiveError: ``archive_not_found``, ``archive_unreadable``, or as :func:`parse`.
    """
    return signed.load(directory, _RULES, parse)


def _checked(raw: Any) -> ArchiveManifest:
    """The manifest of ``raw``, every field a reader relies on touched, so that a
    malformed one fails here, once."""
    m = ArchiveManifest(raw)
    if not isinstance(m.raw, dict) or not isinstance(m.raw["files"], list):
        raise TypeError("not a manifest object")
    if m.raw.get("kind") != KIND:
        raise ValueError(f"not an archive manifest (kind {m.raw.get('kind')!r})")
    for value in (m.id, m.event, m.device, m.raw["format"], m.raw["signature"]):
        if not isinstance(value, str) or not value:
            raise TypeError("id, event, device, format and signature must be strings")
    _ = (m.created_ms, m.first_ms, m.last_ms, m.vv, m.counts, int(m.raw["entries"]))
    signed.check_payload_names(m.files)
    return m


def _check_format(m: ArchiveManifest) -> None:
    """The same major version, a minor at most one apart (as for backups)."""
    try:
        compatible = signed.readable_format(m.raw["format"], FORMAT_VERSION)
    except ValueError:
        compatible = False
    if not compatible:
        raise ArchiveError(
            f"archive {m.id} has format {m.raw['format']}; this headcount reads "
            f"{FORMAT_VERSION} and one minor version either side",
            code=INCOMPATIBLE,
        )
