"""The backups in a destination directory, and the chains they form.

A destination holds one directory per backup, named by its id
(``20261201T182000Z-full-a1b2c3``: time-sortable). Directories still being
written are hidden (``.tmp-…``) and never listed. A chain is a full backup
followed by incrementals, each naming its parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headcount.core.files import TEMP_PREFIX

from . import manifest as mf
from .errors import CHAIN_BROKEN, NOT_FOUND, BackupError
from .manifest import Kind, Manifest

MAX_CHAIN = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One backup directory: its manifest, or why it could not be read."""

    path: Path
    manifest: Manifest | None
    error: BackupError | None

    @property
    def id(self) -> str:
        return self.path.name


class Catalog:
    """The backups under ``dest`` (read-only)."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest

    def entries(self) -> list[Entry]:
        """Every backup directory, oldest first; unreadable ones carry their error."""
        if not self.dest.is_dir():
            return []
        out = []
        for path in sorted(self.dest.iterdir()):
            if path.name.startswith((TEMP_PREFIX, ".")) or not path.is_dir():
                continue
            if not (path / mf.MANIFEST_FILE).exists():
                continue
            try:
                out.append(Entry(path, mf.load(path), None))
            except BackupError as exc:
                out.append(Entry(path, None, exc))
        return out

    def get(self, backup_id: str) -> Manifest:
        """The checked manifest of ``backup_id``.

        Raises:
            BackupError: ``backup_not_found``, or the manifest's own errors.
        """
        if not backup_id or "/" in backup_id or backup_id.startswith("."):
            raise BackupError(f"{backup_id!r} is not a backup id", code=NOT_FOUND)
        path = self.dest / backup_id
        if not path.is_dir():
            raise BackupError(f"no backup {backup_id} in {self.dest}", code=NOT_FOUND)
        return mf.load(path)

    def chain(self, target: Manifest) -> list[Manifest]:
        """``target`` and its ancestors, the full backup first.

        Raises:
            BackupError: ``chain_broken`` (a parent is missing or unreadable, is
                another device's, or a cycle), or a manifest's own errors.
        """
        chain = [target]
        while chain[-1].kind is Kind.INCREMENTAL:
            child = chain[-1]
            if child.parent is None or len(chain) > MAX_CHAIN:
                raise BackupError(f"incremental {child.id} names no parent", code=CHAIN_BROKEN)
            try:
                parent = self.get(child.parent)
            except BackupError as exc:
                raise BackupError(
                    f"the chain of {target.id} is broken: parent {child.parent} of {child.id}: "
                    f"{exc.message}",
                    code=CHAIN_BROKEN,
                ) from None
            check_link(parent, child)
            chain.append(parent)
        return chain[::-1]

    def latest(self, device: str) -> Manifest | None:
        """The newest full or incremental backup of ``device`` (a new incremental's parent)."""
        best: tuple[int, int, str] | None = None
        found: Manifest | None = None
        depth: dict[str, int] = {}
        for entry in self.entries():
            m = entry.manifest
            if m is None or m.device != device or not m.kind.is_chain:
                continue
            depth[m.id] = 0 if m.parent is None else depth.get(m.parent, 0) + 1
            rank = (m.created_ms, depth[m.id], m.id)
            if best is None or rank > best:
                best, found = rank, m
        return found


def check_link(parent: Manifest, child: Manifest) -> None:
    """``child`` builds on exactly what ``parent`` holds.

    Raises:
        BackupError: code ``chain_broken``.
    """
    problem = None
    if not parent.kind.is_chain:
        problem = f"its parent {parent.id} is a {parent.kind} backup"
    elif parent.device != child.device or parent.public_key != child.public_key:
        problem = f"its parent {parent.id} is another device's backup"
    elif {e: s.vv for e, s in parent.events.items()} != {
        e: s.vv for e, s in child.parent_events.items()
    }:
        problem = f"it builds on other version vectors than its parent {parent.id} holds"
    if problem:
        raise BackupError(f"incremental {child.id}: {problem}", code=CHAIN_BROKEN)


def locate(ref: str, dest: Path) -> tuple[Catalog, str]:
    """A backup given by id (in ``dest``) or by the path of its directory."""
    path = Path(ref)
    if (path / mf.MANIFEST_FILE).exists() and (len(path.parts) > 1 or not (dest / ref).exists()):
        return Catalog(path.resolve().parent), path.resolve().name
    return Catalog(dest), ref
