"""How long the strict Y update decoder takes on the updates a gate receives.

Run from the repository root with the package installed::

    python benchmarks/ydecode_bench.py            # 7 runs of 50,000 decodes per update
    python benchmarks/ydecode_bench.py --quick    # 5 runs of 5,000

Every received log entry is decoded before it is applied
(``headcount.core.ydecode.decode_update``), so its cost is paid per entry. The
common entry: one device appends one scan string (~130 characters) to the
root array ``s`` that already holds another device's items, so the update is
one client block with one Item (info ``0x88``: Any content, a left origin),
one string value, and an empty delete set. Both client ids are 53-bit (eight
varint bytes), as ``headcount.core.yclient`` derives them.

Measured: the median over runs of the time per decode, against
``pycrdt.get_state(update)`` on the same bytes in the same run (the Rust
call that parses the same update: the floor a pure-Python decoder is
compared with). A second row decodes an append of three 150-character
strings. The target is the common case at 4 µs or less.

Prints the report header and table (``benchmarks/_common.py``), then the update
measured and what it decodes to; writes ``benchmarks/out/ydecode_bench.json``.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import pycrdt
from pycrdt import Array, Doc

from _common import OUT_DIR, Row, distribution, machine_info, print_header, print_table, write_json
from headcount.core.ydecode import decode_update

TARGET_US = 4.0
WRITER = 2**52 + 0x5EED  # the appending device's client id (53 bits)
OTHER = 2**52 + 0xCAFE  # the device whose items are already in the array


def appended_update(values: list[str]) -> bytes:
    """The update of one transaction appending ``values`` to root array
    ``s``, after another client's three items."""
    other: Doc = Doc(client_id=OTHER)
    other.get("s", type=Array).extend(["o" * 120, "p" * 120, "q" * 120])
    writer: Doc = Doc(client_id=WRITER)
    writer.apply_update(other.get_update())
    seen: list[bytes] = []
    sub = writer.observe(lambda event: seen.append(event.update))
    writer.get("s", type=Array).extend(values)
    writer.unobserve(sub)
    (data,) = seen
    return data


def measure(
    calls: dict[str, Callable[[], object]], loops: int, runs: int
) -> dict[str, list[float]]:
    """The time per call, in µs, of each of ``runs`` runs of ``loops`` calls
    of each of ``calls``; the runs interleave, so that a burst of load from
    other processes weighs on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            times[name].append(timeit.timeit(call, number=loops) / loops * 1e6)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 runs of 5,000 decodes")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "ydecode_bench.json")
    args = parser.parse_args(argv)
    loops, runs = (5_000, 5) if args.quick else (50_000, 7)
    info = machine_info()
    sizes = {"loops": loops, "runs": runs}
    cases = {
        "one 130-char string (0x88)": appended_update(["s" * 130]),
        "three 150-char strings": appended_update(["a" * 150, "b" * 150, "c" * 150]),
    }
    calls: dict[str, Callable[[], object]] = {}
    for name, data in cases.items():
        calls[f"ours {name}"] = lambda data=data: decode_update(data)
        calls[f"rust {name}"] = lambda data=data: pycrdt.get_state(data)
    print(f"measuring {len(calls)} calls, {runs} x {loops:,} each", file=sys.stderr)
    times = measure(calls, loops, runs)
    rows = []
    figures = {}
    for name, data in cases.items():
        ours = distribution(times[f"ours {name}"])
        rust = distribution(times[f"rust {name}"])
        figures[name] = {"bytes": len(data), "decode_us": ours, "get_state_us": rust}
        first = not rows
        rows.append(
            Row(
                f"decode_update, {name}",
                ours["p50"],
                rust["p50"],
                "µs",
                f"<= {TARGET_US:g} µs" if first else "",
                ours["p50"] <= TARGET_US if first else None,
            )
        )
    print_header("ydecode_bench: the strict Y update decoder", info, sizes)
    print_table(rows)
    print("baseline: pycrdt.get_state(update) on the same bytes; values are medians over runs")
    print()
    common = cases["one 130-char string (0x88)"]
    print(f"common update ({len(common)} bytes): {common.hex()}")
    print(f"decodes to: {decode_update(common)}")
    write_json(args.out.resolve(), info, sizes, rows, cases=figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
