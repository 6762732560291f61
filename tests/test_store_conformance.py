"""Every store configuration passes the same suite (tests/support/store_conformance.py),
plus a randomized check that the caches never disagree with the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from headcount.core.chain import entry_hash

from .support.store_conformance import EV, HARNESSES, SUITE, Case, Harness, chain, same_as_fresh


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path):
    h = HARNESSES[request.param](tmp_path)
    yield h
    h.close()


@pytest.mark.parametrize("case", SUITE, ids=lambda case: case.__name__)
def test_store_conformance(harness: Harness, case: Case):
    case(harness)


# An operation: ("append", device, n) appends the device's next n entries,
# ("pending", device) keeps its entry after next as pending, ("fold", device)
# folds the device's entries, ("fail", device) fails half-way through an
# append, ("commit",) and ("reopen",).
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.sampled_from("abc"), st.integers(1, 4)),
        st.tuples(st.just("pending"), st.sampled_from("abc")),
        st.tuples(st.just("fold"), st.sampled_from("abc")),
        st.tuples(st.just("fail"), st.sampled_from("abc")),
        st.tuples(st.just("commit")),
        st.tuples(st.just("reopen")),
    ),
    max_size=25,
)


@pytest.mark.parametrize("name", sorted(HARNESSES))
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_caches_agree_with_the_file_whatever_the_operations(name, ops, tmp_path_factory):
    """After any sequence of writes, failures, folds and reopens, what the
    store answers equals what a fresh store reads from the committed file,
    and equals a model of the appended sequence numbers."""
    h = HARNESSES[name](tmp_path_factory.mktemp(name))
    model: dict[str, int] = {}  # device -> highest seq appended
    last: dict[str, bytes] = {}
    folded: dict[str, int] = {}
    try:
        for op in ops:
            note(f"{op}")
            _run(h, op, model, last, folded)
            # read after every step, so that the caches are filled and must follow
            h.store.version_vector(EV), h.store.pending_keys(EV), h.store.horizon(EV)
        h.commit()
        assert h.store.version_vector(EV) == {f"dev-{d}": n for d, n in model.items()}
        assert h.store.horizon(EV).keys() == {f"dev-{d}" for d in folded}
        same_as_fresh(h)
    finally:
        h.close()


def _run(h: Harness, op: tuple, model: dict, last: dict, folded: dict) -> None:
    kind = op[0]
    if kind == "commit":
        h.commit()
    elif kind == "reopen":
        h.commit()
        h.reopen()
    elif kind in ("append", "fail", "pending"):
        device = op[1]
        n = op[2] if kind == "append" else 1
        seq = model.get(device, 0)
        entries = chain(f"dev-{device}", n, seq + 1, last.get(device, b"\0" * 32))
        if kind == "pending":
            skip = chain(f"dev-{device}", 2, seq + 1, last.get(device, b"\0" * 32))
            with h.writing():
                h.store.add_pending(skip[1:])
            return
        if kind == "fail":
            with h.writing(), pytest.raises(RuntimeError), h.store.transaction():
                h.store.append(entries, hlc=entries[-1].hlc, force=True)
                raise RuntimeError("fails half-way")
            return
        with h.writing():
            h.store.append(entries, hlc=entries[-1].hlc, force=True)
        model[device] = seq + n
        last[device] = entry_hash(entries[-1])
    elif kind == "fold" and model.get(op[1], 0) > folded.get(op[1], 0):
        device = op[1]
        h.store.fold(EV, {f"dev-{device}": (model[device], last[device])}, b"state", 1)
        folded[device] = model[device]
