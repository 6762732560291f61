"""A randomized run names its seed when it fails."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def reported_seed(seed: int, replay: str = "") -> Iterator[None]:
    """Any exception raised inside (a failed assertion, or an error of the
    code under test) carries ``seed=<seed>`` and how to ``replay`` the run,
    as an exception note, which pytest prints with the failure."""
    try:
        yield
    except Exception as exc:
        exc.add_note(f"seed={seed}" + (f" ({replay})" if replay else ""))
        raise
