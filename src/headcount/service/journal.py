"""Append-only JSON-lines journals: what scheduled jobs and the archive did.

A journal is one file, one JSON object per line, appended with ``O_APPEND``
and fsynced before :meth:`Journal.append` returns, so a recorded outcome
survives a crash. A line torn by a crash while it was written is skipped
when the journal is read (and counted in :attr:`Journal.torn`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headcount.core.files import make_private_dir, write_durably

JOURNAL_FILE = "journal.jsonl"


def iso_time(ms: int) -> str:
    """``ms`` since the epoch as ISO 8601 UTC with a ``Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Journal:
    """The journal at ``path`` (created with its directory on first append)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn = 0
        self._lock = threading.Lock()

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``record`` (plus ``at`` and ``at_ms`` unless given) as one durable line.

        Returns:
            The record as written.

        Raises:
            OSError: the line could not be written (a full disk...).
        """
        now = time.time_ns() // 1_000_000
        line = {"at": iso_time(now), "at_ms": now, **record}
        data = (json.dumps(line, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            make_private_dir(self.path.parent)
            write_durably(self.path, data, os.O_APPEND | os.O_CREAT)
        return line

    def records(self) -> Iterator[dict[str, Any]]:
        """Every readable record, oldest first (none if there is no journal or
        it cannot be opened: a journal is a record, never a reason to fail)."""
        self.torn = 0
        try:
            fh = self.path.open("rb")
        except OSError:
            return
        with fh:
            for raw in fh:
                try:
                    record = json.loads(raw)
                except ValueError:
                    self.torn += 1
                    continue
                if isinstance(record, dict):
                    yield record
                else:
                    self.torn += 1

    def last(self, **match: Any) -> dict[str, Any] | None:
        """The newest record whose fields equal ``match``."""
        found = None
        for record in self.records():
            if all(record.get(k) == v for k, v in match.items()):
                found = record
        return found
