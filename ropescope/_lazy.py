"""Lazy package attributes: a package's short names resolve to their modules on first use, so
importing the package (or one light module in it) imports nothing heavy."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable


def lazy_attributes(package: str, where: dict[str, str], submodules: tuple[str, ...] = ()) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``'s ``__init__``: ``where`` maps each exported
    name to the module that defines it (PEP 562); a submodule's name imports that submodule
    (``submodules``: those ``dir()`` lists before they are imported)."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        if name not in where:  # a submodule not imported yet (``ropescope.model.geometry``) loads as before
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value  # found once; later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where) | set(submodules))

    return __getattr__, __dir__
