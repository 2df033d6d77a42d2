"""Package plumbing: names loaded on first use, and subpackages whose name is also the verb they export
(`taia.apply`, `taia.train`).

Importing a subpackage makes Python set it as an attribute of its parent, replacing any function of the
same name there, so `taia.apply(cfg)` would sometimes be the module. Making such a subpackage callable
keeps `taia.apply(cfg)` and `taia.train(cfg)` working whichever way they were imported.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from importlib import import_module
from typing import Any


class _VerbModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def callable_package(name: str, verb: Callable[..., Any] | str) -> None:
    """Make package `name` callable as its same-named `verb` (a function, or its name if loaded lazily)."""
    assert name.rsplit(".", 1)[-1] == (verb if isinstance(verb, str) else verb.__name__)
    sys.modules[name].__class__ = _VerbModule


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` importing each exported name from its module on first use, so that
    `taia --help` and light imports (configs, data) never load torch."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(exports[name]), name)

    return __getattr__
