"""`taia search`: the best spec for a fine-tune, chosen on a dev split and checked on held-out tasks.

    taia search --base B (--adapter A | --finetuned F) --dev-task csqa --dev-limit 100 \\
        --test-tasks csqa,mmlu --out OUT

`taia.search(SearchConfig(...))` is the same call; see taia/search/run.py for the output layout.
"""

from __future__ import annotations

from taia._verbs import callable_package, lazy_exports

__all__ = ["SearchConfig", "search"]
_EXPORTS = {"SearchConfig": "taia.search.config", "search": "taia.search.run"}

__getattr__ = lazy_exports(__name__, _EXPORTS)


callable_package(__name__, "search")
