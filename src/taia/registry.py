"""A tiny name → object registry with "did you mean …" errors (lm-eval style).

Used for spec presets now, and for tasks, models and backends later. Exercised by `taia apply --spec taai`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from taia.errors import TaiaError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str], kind: str) -> TaiaError:
    """Build the standard unknown-name error, suggesting the closest known names."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return TaiaError(f"unknown {kind} {name!r}{hint} (known: {', '.join(sorted(choices))})")


class Registry(Generic[T]):
    """Named entries of one kind; lookups of unknown names fail with suggestions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda item: self.add(name, item)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise did_you_mean(name, list(self._items), self.kind) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items)
