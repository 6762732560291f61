"""What every benchmark script shares: one percentile, one report header, one
results table and one JSON writer.

Conventions (also in benchmarks/README.md):

* **Percentiles are nearest-rank**: the ``q``-th percentile of ``n`` values is
  the ``ceil(q / 100 * n)``-th smallest (at least the first), always one of
  the measured values, never an interpolation. A median is ``percentile(x, 50)``
  (for an even count, the lower of the two middle values).
* **ratio = value / baseline**, the baseline measured in the same run. For
  times, sizes, CPU, memory and rounds a ratio below 1 is better than the
  baseline; for rates (unit ``/s``) and compression ratios (``x``) a ratio
  above 1 is.
* Figures print with at least three significant digits and their unit (:func:`fmt`).
* Every script prints :func:`print_header` first on stdout (date, machine,
  software, the headcount commit measured, the sizes run), then
  :func:`print_table`, then its own details; progress goes to stderr.
* Results go to ``benchmarks/out/`` (git-ignored) through :func:`write_json`:
  ``machine``, ``sizes`` and ``table`` first, then each script's own sections.

Module level imports only what the scripts' timed children load anyway (the
rest is imported where it is used): core_bench times whole child processes
and relay_load measures the memory of its server children, which all import
this module.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "out"

RATIO_NOTE = (
    "ratio = value / baseline, both measured in this run: for times, sizes, CPU, memory and "
    "rounds below 1 is better than the baseline; for rates (/s) and compression (x) above 1 is"
)


# -- statistics --------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``values`` (in any order).

    Args:
        values: the samples (sorted here; an already sorted list costs O(n)).
        q: the percentile, 0 < q <= 100 (50 is the median, 100 the maximum).

    Returns:
        The ``ceil(q / 100 * n)``-th smallest value (the first, at least).

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside (0, 100].
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is outside (0, 100]")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def distribution(values: Iterable[float]) -> dict[str, float]:
    """``n``, ``mean``, ``min``, ``p50``, ``p90``, ``p99`` and ``max`` of
    ``values`` (percentiles by :func:`percentile`); only ``n`` if empty."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "mean": math.fsum(ordered) / len(ordered),
        "min": ordered[0],
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
    }


# -- the results table ---------------------------------------------------------------


@dataclass
class Row:
    """One line of a results table.

    ``unit`` is how the value and baseline print: ``ms``, ``s``, ``/s``, ``MB``,
    ``B``, ``%``, ``x`` or ``""`` (a count or a plain number). ``passed`` is
    None when the row has no target (printed ``info``).
    """

    metric: str
    value: float | None
    baseline: float | None = None
    unit: str = ""
    target: str = ""
    passed: bool | None = None

    @property
    def ratio(self) -> float | None:
        """``value / baseline``; None without both (or with a zero baseline)."""
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def result(self) -> str:
        return "info" if self.passed is None else "PASS" if self.passed else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "baseline": self.baseline,
            "unit": self.unit,
            "ratio": self.ratio,
            "target": self.target or None,
            "result": self.result.lower(),
        }


def fmt(value: float | None, unit: str = "") -> str:
    """A figure with at least three significant digits (all of its integer part from
    1,000 up; an int as it is) and its unit; ``-`` for None."""
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    else:
        size = abs(value)
        if size >= 1000 or size == 0:
            digits = 0
        elif size >= 100:
            digits = 1
        elif size >= 1:
            digits = 2
        else:  # 0.377, 0.0500, 0.000323
            digits = min(9, 2 - math.floor(math.log10(size)))
        text = f"{value:,.{digits}f}"
    if unit in ("/s", "x", "%"):
        return text + unit
    return f"{text} {unit}" if unit else text


def _ratio(ratio: float) -> str:
    """Two decimals from 0.1 up (thousands grouped), three significant digits below."""
    if abs(ratio) >= 0.1:
        return f"{ratio:,.2f}"
    return f"{ratio:.3g}"


def print_table(rows: Sequence[Row], note: bool = True) -> None:
    """Print ``rows`` as aligned columns: metric, value, baseline, ratio,
    target, result; then, with ``note``, how to read the ratio."""
    head = ("metric", "value", "baseline", "ratio", "target", "result")
    cells = [head] + [
        (
            r.metric,
            fmt(r.value, r.unit),
            fmt(r.baseline, r.unit),
            "-" if r.ratio is None else _ratio(r.ratio),
            r.target or "-",
            r.result,
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for k, c in enumerate(cells):
        print(
            "  ".join(
                x.ljust(w) if i == 0 else x.rjust(w)
                for i, (x, w) in enumerate(zip(c, widths, strict=True))
            ).rstrip()
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))
    if note:
        print(RATIO_NOTE)


# -- the report header -----------------------------------------------------------------


def machine_info(files: Path | None = None) -> dict[str, Any]:
    """The date, machine, software and headcount source of this run.

    Args:
        files: where the run keeps its stores (its file system is recorded:
            durable figures depend on its ``fsync``), or None.

    Returns:
        A JSON-able dict; ``loadavg_start`` is the load average now
        (:func:`print_header` adds ``loadavg_end``).
    """
    import datetime
    import importlib.metadata
    import platform
    import sqlite3

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pycrdt": version("pycrdt"),
        "sqlite": sqlite3.sqlite_version,
        **source_info(),
        "loadavg_start": os.getloadavg(),
    }
    if files is not None:
        info["tmp_dir"] = str(files)
        info["tmp_fs"] = fs_type(files)
    return info


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; else ``platform``)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def source_info() -> dict[str, Any]:
    """Which headcount is measured: its version, its directory and, in a git
    work tree, the commit and whether its files differ from it."""
    import headcount

    path = Path(headcount.__file__).resolve().parent
    info: dict[str, Any] = {"headcount": headcount.__version__, "headcount_path": str(path)}
    try:
        rev = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if rev.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(path), "status", "--porcelain", "--", "."],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            info["git_commit"] = rev.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def fs_type(path: Path) -> str:
    """The file system type that holds ``path`` (best effort, Linux only)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best = ("", "unknown")
    for fields in mounts:
        if len(fields) >= 3 and (
            resolved == fields[1] or resolved.startswith(fields[1].rstrip("/") + "/")
        ):
            if len(fields[1]) > len(best[0]):
                best = (fields[1], fields[2])
    return best[1]


def print_header(title: str, info: dict[str, Any], sizes: Mapping[str, Any]) -> None:
    """Print the report's first lines: ``title``, then the date, machine,
    software, headcount source, store location and ``sizes`` of the run.

    Sets ``info["loadavg_end"]`` to the load average now if it is not set.
    """
    end = info.setdefault("loadavg_end", os.getloadavg())
    start = " ".join(f"{x:.2f}" for x in info["loadavg_start"])
    commit = info.get("git_commit", "not in a git work tree")
    if info.get("git_dirty"):
        commit += " + uncommitted changes"
    print(f"headcount benchmark: {title}")
    print(f"  date      {info['date']}")
    print(f"  machine   {info['cpus']} CPUs ({info['cpu_model']}), {info['platform']}")
    print(
        f"  load      {start} at start, {' '.join(f'{x:.2f}' for x in end)} at end "
        "(1/5/15 min; other processes add noise)"
    )
    print(f"  software  Python {info['python']}, pycrdt {info['pycrdt']}, SQLite {info['sqlite']}")
    print(f"  headcount {info['headcount']}, {commit} ({info['headcount_path']})")
    if "tmp_dir" in info:
        print(f"  stores    {info['tmp_dir']} ({info['tmp_fs']})")
    print("  sizes     " + ", ".join(f"{k} {_size(v)}" for k, v in sizes.items()))
    print()


def _size(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return "/".join(_size(v) for v in value)
    return str(value)


# -- results on disk --------------------------------------------------------------------


def write_json(
    path: Path,
    machine: Mapping[str, Any],
    sizes: Mapping[str, Any],
    rows: Sequence[Row],
    /,
    **sections: Any,
) -> Path:
    """Write a run's results as JSON to ``path`` (its directory is created):
    ``machine``, ``sizes``, ``table`` (the printed rows) and then
    ``sections`` (each script's raw figures). Returns ``path``."""
    payload = {
        "machine": dict(machine),
        "sizes": dict(sizes),
        "table": [r.as_dict() for r in rows],
        **sections,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


# -- cProfile listings ------------------------------------------------------------------


def top_functions(prof_path: Path, sort: str, limit: int) -> str:
    """The ``limit`` hottest functions of a cProfile dump, one line each,
    by ``sort`` (``cumulative`` or ``tottime``)."""
    import io
    import pstats

    stats = pstats.Stats(str(prof_path), stream=io.StringIO())
    col = {"cumulative": 3, "tottime": 2}[sort]
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    items = sorted(table.items(), key=lambda kv: kv[1][col], reverse=True)[:limit]
    lines = [f"  {'ncalls':>10} {'tottime':>8} {'cumtime':>8}  function"]
    for key, (cc, nc, tt, ct, _callers) in items:
        calls = str(nc) if cc == nc else f"{nc}/{cc}"
        lines.append(f"  {calls:>10} {tt:8.3f} {ct:8.3f}  {_short_location(key)}")
    return "\n".join(lines)


def _short_location(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":
        return func
    for marker in ("site-packages/", "/src/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        filename = Path(filename).name
    return f"{filename}:{line}({func})"
