"""Retention of scheduled backups: keep the newest chains whole, delete older ones whole.

A chain is a full backup and the incrementals built on it. Restoring any
link needs every ancestor, so retention never deletes a full backup whose
incrementals it keeps, nor an incremental whose full it keeps: it deletes
whole chains, the oldest first, newest link first, each backup renamed
out of sight (a hidden name, which :class:`~.catalog.Catalog` never lists)
before its files are removed. A crash part-way leaves every listed backup
restorable.

Only this device's full and incremental backups are touched; per-kind
backups and other devices' backups in the same destination are left alone.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from headcount.core.files import fsync_dir, remove_tree

from .catalog import Catalog
from .manifest import Kind, Manifest

DELETING_PREFIX = ".deleting-"


def chains(catalog: Catalog, device: str) -> list[list[Manifest]]:
    """This device's chains in ``catalog``, oldest first, each root first.

    A chain whose full backup is gone (an orphan) is a chain of its own,
    rooted at its oldest incremental.
    """
    mine = {
        e.manifest.id: e.manifest
        for e in catalog.entries()
        if e.manifest is not None and e.manifest.device == device and e.manifest.kind.is_chain
    }
    groups: dict[str, list[Manifest]] = {}
    for m in mine.values():
        root, seen = m, {m.id}
        while root.parent is not None and root.parent in mine and root.parent not in seen:
            root = mine[root.parent]
            seen.add(root.id)
        groups.setdefault(root.id, []).append(m)
    ordered = sorted(groups.values(), key=lambda g: min((m.created_ms, m.id) for m in g))
    return [sorted(g, key=lambda m: (m.created_ms, m.id)) for g in ordered]


def prune_chains(catalog: Catalog, device: str, keep: int) -> list[str]:
    """Delete every chain of ``device`` older than its ``keep`` newest complete
    ones (a chain is complete when its root is a full backup).

    Returns:
        The ids deleted, in the order they were deleted.

    Raises:
        ValueError: ``keep`` < 1.
        OSError: a backup could not be removed (the ones before it were).
    """
    if keep < 1:
        raise ValueError("keep at least one chain")
    all_chains = chains(catalog, device)
    complete = [i for i, c in enumerate(all_chains) if c[0].kind is Kind.FULL]
    if len(complete) <= keep:
        return []
    oldest_kept = complete[-keep]
    deleted = []
    for chain in all_chains[:oldest_kept]:
        for m in reversed(chain):  # children first: what stays is always a valid prefix
            remove_backup(catalog.dest / m.id)
            deleted.append(m.id)
    clean_leftovers(catalog.dest)
    return deleted


def remove_backup(path: Path) -> None:
    """Hide a backup directory (one rename), then remove its files."""
    hidden = path.parent / f"{DELETING_PREFIX}{path.name}-{secrets.token_hex(3)}"
    os.rename(path, hidden)
    fsync_dir(path.parent)
    remove_tree(hidden)


def clean_leftovers(dest: Path) -> None:
    """Finish deletions a crash interrupted (hidden ``.deleting-*`` directories)."""
    if dest.is_dir():
        for path in dest.iterdir():
            if path.name.startswith(DELETING_PREFIX) and path.is_dir():
                remove_tree(path)
