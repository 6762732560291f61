"""How the test suite itself is written: these tests keep it true.

1. No module of the suite imports a test module (``test_*.py``): what tests
   share lives in the ``tests/support`` package. Nor does any import
   ``conftest.py``: pytest hands out its fixtures.
2. No ``sleep()`` to wait (habit 6): the suite sleeps only in
   ``support/wait.py``, which polls what nothing reports, and where the
   sleep is the workload itself (listed below, with the reason).

Both are checked on the source (an AST walk, so an import or a call inside a
function counts too), over every module under ``tests/``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# Where a sleep is not a wait: file (relative to tests/) -> (calls, why).
ALLOWED_SLEEPS: dict[str, tuple[int, str]] = {
    "support/wait.py": (2, "the one wait helper: polls what nothing reports"),
    "test_faulty_link.py": (2, "the proxy's injected delay and the gate's scan rate: a workload"),
}


def _suite() -> Iterator[Path]:
    for path in sorted(TESTS.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every module an import may load: for
    ``from X import y``, both ``X`` and ``X.y`` (``y`` may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def _forbidden(target: str) -> str | None:
    """Why importing ``target`` is not allowed (None: it is)."""
    last = target.rpartition(".")[2]
    if not (ROOT / Path(*target.split("."))).with_suffix(".py").is_file():
        return None  # not a module of the suite (a name inside one, a library)
    if last.startswith("test_"):
        return "a test module"
    if last == "conftest":
        return "conftest (fixtures come from pytest; shared code from tests/support)"
    return None


def _import_violations() -> list[str]:
    found = []
    for path in _suite():
        module = _module_name(path)
        source = path.read_text("utf-8")
        for line, target in _imports(source, module, path.name == "__init__.py"):
            why = _forbidden(target)
            if why:
                found.append(f"{path.relative_to(ROOT)}:{line}: imports {target}, {why}")
    return found


def _sleeps(source: str) -> list[int]:
    """Lines of every call of something named ``sleep`` (``time.sleep``,
    ``asyncio.sleep``, a ``sleep`` imported bare)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "sleep":
                lines.append(node.lineno)
    return sorted(lines)


def test_no_module_of_the_suite_imports_a_test_module_or_conftest():
    assert _import_violations() == []


def test_the_suite_sleeps_only_where_a_sleep_is_no_wait():
    found = {}
    for path in _suite():
        lines = _sleeps(path.read_text("utf-8"))
        if lines:
            found[path.relative_to(TESTS).as_posix()] = lines
    unexplained = {
        name: lines
        for name, lines in found.items()
        if len(lines) != ALLOWED_SLEEPS.get(name, (0, ""))[0]
    }
    assert unexplained == {}, (
        "sleep() calls (file: lines) not listed in ALLOWED_SLEEPS: wait with "
        "tests/support/wait.py instead (or list a sleep that is the workload, with why)"
    )


@pytest.mark.parametrize(
    "source",
    [
        "from .test_node import tls_node",
        "from . import test_node",
        "from tests.test_node import EV",
        "import tests.test_node",
        "def f():\n    from .test_node import EV\n",
        "from .conftest import T0",
    ],
)
def test_the_import_check_sees_every_form(source):
    module = "tests.test_example"
    assert [t for _, t in _imports(source, module) if _forbidden(t)], source


@pytest.mark.parametrize(
    "source",
    [
        "from .support.nodes import tls_node",
        "from .support import wait",
        "from hypothesis import strategies",
        "from .support.transport_conformance import SUITE",
    ],
)
def test_the_import_check_allows_the_support_package(source):
    assert not [t for _, t in _imports(source, "tests.test_example") if _forbidden(t)], source


def test_the_sleep_check_sees_every_form():
    source = (
        "import asyncio, time\nfrom time import sleep\n"
        "async def f():\n    await asyncio.sleep(0)\n    time.sleep(1)\n    sleep(2)\n"
    )
    assert _sleeps(source) == [4, 5, 6]
