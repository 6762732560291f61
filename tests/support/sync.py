"""In-process replication between replicas: every entry one lacks, handed over."""

from __future__ import annotations

from headcount import Replica


def introduce(src: Replica, dst: Replica) -> None:
    """``dst`` learns every device ``src`` knows, with its role, as shared
    certificates teach a real peer (an entry counts with its author's
    certified role only)."""
    for device, role in src.roles.items():
        key = src.store.public_key(device)
        if device not in dst.roles and key is not None:
            dst.trust(device, key, role)


def sync(src: Replica, dst: Replica) -> None:
    """Ship everything ``dst`` lacks from ``src`` (one direction)."""
    introduce(src, dst)
    for event in src.events():
        have = dst.version_vector(event) if event in dst.events() else {}
        result = dst.apply_entries(src.export_since(event, have))
        assert not result.rejected, result.rejected


def sync_all(replicas: list[Replica], rounds: int = 2) -> None:
    for _ in range(rounds):
        for a in replicas:
            for b in replicas:
                if a is not b:
                    sync(a, b)
