"""``headcount backup verify``: check a backup and its chain, touching nothing live.

In order, for the backup and every ancestor of an incremental: the manifest
parses and its signature verifies against the key it records, that key is
the device's (the device id is derived from it), the format and store
schema are compatible, each incremental continues exactly what its parent
holds, and every payload file has the size and SHA-256 the manifest says.
With the passphrase or key (or for unencrypted backups) every payload is
also decrypted and decompressed and its content checked against its own
SHA-256; without it, the report says that the content was not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headcount.store.sqlite import MIGRATIONS

from .catalog import Catalog, locate
from .crypto import KeyRing, Secret
from .manifest import Kind, Manifest, check_compatible, check_signer
from .payload import check_stored, context, read_content

ProgressFn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """A backup that passed verification."""

    id: str
    kind: Kind
    device: str
    chain: list[str]
    size: int
    content_checked: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "device": self.device,
            "chain": self.chain,
            "size": self.size,
            "content_checked": self.content_checked,
            "state": "ok" if self.content_checked else "ok (checksums and signature only)",
        }


def verify_backup(
    ref: str, dest: Path, *, secret: Secret | None = None, progress: ProgressFn | None = None
) -> VerifyReport:
    """Verify the backup ``ref`` (an id in ``dest``, or a backup directory).

    Raises:
        BackupError: the first problem found, with its code (``backup_corrupt``,
            ``backup_truncated``, ``backup_tampered``, ``chain_broken``,
            ``wrong_key``, ``incompatible_version``, ``backup_not_found``).
    """
    catalog, backup_id = locate(ref, dest)
    chain = resolve_chain(catalog, catalog.get(backup_id))
    encrypted = any(m.encryption for m in chain)
    keyring = KeyRing(secret) if secret is not None or not encrypted else None
    for m in chain:
        if progress:
            progress(f"verifying {m.id} ({m.kind}, {m.size} bytes)")
        check_backup(catalog.dest / m.id, m, keyring)
    target = chain[-1]
    return VerifyReport(
        target.id,
        target.kind,
        target.device,
        [m.id for m in chain],
        sum(m.size for m in chain),
        keyring is not None,
    )


def resolve_chain(catalog: Catalog, target: Manifest) -> list[Manifest]:
    """``target`` with its ancestors (full first), each checked for compatibility
    and for a signing key that is its device's own.

    Raises:
        BackupError: ``incompatible_version``, ``backup_tampered``, ``chain_broken``.
    """
    chain = catalog.chain(target) if target.kind is Kind.INCREMENTAL else [target]
    for m in chain:
        check_compatible(m, len(MIGRATIONS))
        check_signer(m)
    return chain


def check_backup(directory: Path, m: Manifest, keyring: KeyRing | None) -> None:
    """Check every payload as stored; with a key ring, their content too.

    Raises:
        BackupError: as :func:`verify_backup`.
    """
    for record in m.files:
        check_stored(directory / record.name, record)
    if keyring is None:
        return
    key = keyring.unlock(m.encryption) if m.encryption else None
    for record in m.files:
        for _ in read_content(directory / record.name, record, context(m.id, record.name), key):
            pass
