"""Lazy re-exports for package roots (PEP 562).

A package's ``__init__`` names its public API without importing it, so that
``import headcount.protocol`` loads no pycrdt, SQLite or asyncio, and
``headcount --version`` loads no relay. The first access to a name imports
the module that defines it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str, modules: Mapping[str, list[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        modules: module (relative to ``package``, e.g. ``".session"``) ->
            the public names it defines.

    Returns:
        The two module-level functions PEP 562 looks for. An unknown name
        raises ``AttributeError`` as for any module.
    """
    module = importlib.import_module(package)
    names = {name: where for where, defined in modules.items() for name in defined}

    def __getattr__(name: str) -> Any:
        try:
            where = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(where, package), name)
        setattr(module, name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(names))

    return __getattr__, __dir__
