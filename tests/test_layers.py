"""The package layout is the architecture: these tests keep it true.

1. Import rules between layers, checked on the source (an AST walk, so a
   lazy import inside a function counts too).
2. Light imports: the sans-IO protocol layer loads neither pycrdt, sqlite3,
   asyncio nor aiohttp, and ``headcount --version`` loads no relay code.
3. No module imports another module's private names.
4. Every SQL statement lives in the store package.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "headcount"

BASE_THIRD_PARTY = {"pycrdt", "cryptography", "msgpack"}

# layer -> (headcount packages it may import, third-party roots it may import,
#           stdlib modules it must not import). The stdlib is allowed unless listed.
RULES: dict[str, tuple[set[str], set[str], set[str]]] = {
    "core": (set(), BASE_THIRD_PARTY, {"asyncio", "socket", "sqlite3"}),
    "protocol": (
        {"core"},
        {"cryptography", "msgpack"},
        {"asyncio", "socket", "sqlite3", "time"},
    ),
    "store": ({"core"}, BASE_THIRD_PARTY, {"asyncio", "socket"}),
    "pki": ({"core"}, BASE_THIRD_PARTY, {"asyncio", "sqlite3"}),
    "sim": ({"core", "protocol"}, BASE_THIRD_PARTY, {"asyncio", "socket", "sqlite3"}),
}
STDLIB = set(sys.stdlib_module_names)


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _imports(module: str, path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) for every import in the file."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target, [a.name for a in node.names]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _violations() -> list[str]:
    found = []
    for module, path in _modules():
        layer = _layer(module)
        if layer not in RULES:
            continue
        allowed_pkgs, allowed_third, banned_std = RULES[layer]
        for line, target, names in _imports(module, path):
            where = f"{path.relative_to(SRC.parent)}:{line}"
            root = target.split(".")[0]
            if root == "headcount":
                parts = target.split(".")
                if len(parts) == 1:
                    targets = [f"headcount.{n}" for n in names]
                else:
                    targets = [target]
                for t in targets:
                    other = _layer(t)
                    if other not in (None, layer, "_lazy") and other not in allowed_pkgs:
                        found.append(f"{where}: {layer} imports {t}")
            elif root in STDLIB or root == "__future__":
                if root in banned_std:
                    found.append(f"{where}: {layer} imports {root}")
            elif root not in allowed_third:
                found.append(f"{where}: {layer} imports third-party {root}")
    return found


def test_layers_import_only_what_their_rules_allow() -> None:
    assert _violations() == []


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    """The AST walk must catch a lazy import inside a function (a check
    that never fails is no check)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import asyncio\n    from ..store import sqlite\n")
    got = list(_imports("headcount.protocol.bad", bad))
    assert (2, "asyncio", []) in got
    assert (3, "headcount.store", ["sqlite"]) in got


def test_no_module_imports_another_modules_private_names() -> None:
    found = []
    for module, path in _modules():
        for line, target, names in _imports(module, path):
            if not target.startswith("headcount"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                found.append(f"{path.relative_to(SRC.parent)}:{line}: {target} {private}")
    assert found == []


SQL = re.compile(
    r"""["'](\s*)(SELECT\b.*\bFROM|INSERT (OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM|"""
    r"""CREATE (TABLE|INDEX|UNIQUE)|DROP TABLE|PRAGMA \w+|BEGIN( IMMEDIATE| EXCLUSIVE)?["']|"""
    r"""COMMIT["']|ROLLBACK["'])"""
)


def test_sql_lives_only_in_the_store_package() -> None:
    found = []
    for module, path in _modules():
        if _layer(module) == "store":
            continue
        for number, text in enumerate(path.read_text("utf-8").splitlines(), 1):
            if SQL.search(text) or re.search(r"\bimport sqlite3\b", text):
                found.append(f"{path.relative_to(SRC.parent)}:{number}: {text.strip()}")
    assert found == []


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("package", ["headcount.protocol", "headcount.core.chain"])
def test_the_protocol_layer_loads_nothing_heavy(package: str) -> None:
    loaded = _loaded_after(f"import {package}")
    heavy = {"pycrdt", "sqlite3", "asyncio", "aiohttp"} & {m.split(".")[0] for m in loaded}
    assert heavy == set(), f"import {package} loaded {sorted(heavy)}"


def test_version_loads_no_relay_and_no_aiohttp() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from headcount.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--version'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "import json\n"
        "print(json.dumps([out.getvalue(), sorted(sys.modules)]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    printed, loaded = json.loads(run.stdout)
    assert printed.startswith("headcount ")
    assert not [m for m in loaded if m.startswith(("headcount.relay", "aiohttp"))]


def test_every_package_root_exports_what_it_names() -> None:
    """Each lazily re-exported name resolves, and ``__all__`` lists exactly
    the lazy map (the two lists in a package ``__init__`` cannot drift)."""
    import importlib

    checked = 0
    for module, path in _modules():
        if path.name != "__init__.py":
            continue
        package = importlib.import_module(module)
        names = [n for n in getattr(package, "__all__", []) if n != "__version__"]
        for name in names:
            assert getattr(package, name) is not None, f"{module}.{name}"
        if hasattr(package, "__getattr__"):
            assert sorted(set(package.__dir__()) & set(names)) == sorted(names)
            with pytest.raises(AttributeError):
                package.__getattr__("no_such_name")
        checked += len(names)
    assert checked > 50
