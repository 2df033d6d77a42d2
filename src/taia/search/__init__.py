"""`taia search`: the best spec for a fine-tune, chosen on a dev split and checked on held-out tasks.

    taia search --base B (--adapter A | --finetuned F) --dev-task csqa --dev-limit 100 \\
        --test-tasks csqa,mmlu --out OUT

`taia.search(SearchConfig(...))` is the same call; see taia/search/run.py for the output layout.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from taia._verbs import callable_package

__all__ = ["SearchConfig", "search"]
_EXPORTS = {"SearchConfig": "taia.search.config", "search": "taia.search.run"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'taia.search' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


callable_package(__name__, "search")
