"""LoRACL, the continual-learning baseline of TAIA's Table 2, as an eval variant: per prompt, the answer of
`base` or of `vanilla`, whichever has the lower perplexity on that prompt.

Exercised by `taia eval --adapter A --variants base,vanilla,taia,loracl --tasks gsm8k,csqa --out DIR` and
tests/test_loracl.py.

The reference code computed both perplexities on the same merged model, so its routing compared a model
with itself. Here the one loaded model is switched in place to `base` and to `vanilla`, and each prompt is
scored under both (`HFBackend.prompt_nll`: mean −log p of the prompt's tokens after the first, on the full
templated prompt the model sees: a generation request's prompt, a choice request's context). The lower mean
NLL wins; a tie goes to `base`, the model that was there before the fine-tune. Decoding and scoring are
deterministic, so the routed answer *is* the chosen variant's row: `loracl` copies it and adds `route`,
`nll_base`, `nll_vanilla`, `ppl_base`, `ppl_vanilla`. That is why `base` and `vanilla` must be evaluated in
the same run. Rows are written per chunk to OUT/samples/loracl/TASK.jsonl, so a resumed run scores only the
prompts without a row, like any other variant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taia.errors import TaiaError
from taia.eval.config import EvalConfig
from taia.eval.kinds import request
from taia.eval.protocol import prompt_text
from taia.eval.results import SampleLog
from taia.eval.scored import ScoredRow, check_finite
from taia.eval.task import Sample, Task

if TYPE_CHECKING:  # typing only: the backends package loads torch
    from taia.eval.backends.base import PromptScorer, Switcher

ROUTER = "loracl"  # a variant name that is not a spec: it routes between ROUTES
ROUTES = ("base", "vanilla")  # in tie-break order: on equal perplexity the first wins
DESCRIPTION = "LoRACL: per prompt, base or vanilla, whichever has the lower perplexity on the prompt"
_CHUNK = 256  # prompts per write: bounds the work an interruption loses; two variant switches each


def check(cfg: EvalConfig) -> None:
    """TaiaError unless `cfg` can run the router: taia's harness, the hf backend, a fine-tune, and both
    variants it routes between (their answers are reused, not recomputed)."""
    if cfg.harness != "taia":
        raise TaiaError(f"variant {ROUTER!r} needs harness=taia (lm-eval scores no prompt perplexity)")
    if cfg.backend != "hf":
        raise TaiaError(f"variant {ROUTER!r} needs --backend hf (it scores prompts with transformers)")
    if cfg.adapter is None and cfg.finetuned is None:
        raise TaiaError(f"variant {ROUTER!r} needs a fine-tune: give --adapter or --finetuned")
    missing = [r for r in ROUTES if r not in cfg.variants]
    if missing:
        raise TaiaError(
            f"variant {ROUTER!r} routes between base and vanilla and reuses their answers: add "
            f"{' and '.join(missing)} to the variants (e.g. --variants base,vanilla,{ROUTER})"
        )


def route(
    backend: PromptScorer,
    variants: Switcher,
    task: Task,
    samples: list[Sample],
    cfg: EvalConfig,
    logs: dict[str, SampleLog],
) -> None:
    """Score `samples`' prompts under base and vanilla and append their routed rows to `logs["loracl"]`.
    `logs`: variant → this task's SampleLog; base's and vanilla's must already hold every sample."""
    for start in range(0, len(samples), _CHUNK):
        chunk = samples[start : start + _CHUNK]
        prompts = [prompt_text(request(task, s, cfg.protocol, backend.tokenizer)) for s in chunk]
        nll = _nlls(backend, variants, prompts, desc=f"{ROUTER}/{task.name}")
        for i, s in enumerate(chunk):
            check_finite(f"{ROUTER}/{task.name}", s.id, [nll[r][i] for r in ROUTES], "prompt perplexities")
        logs[ROUTER].append([
            routed_row({r: logs[r].rows[s.id] for r in ROUTES}, {r: nll[r][i] for r in ROUTES})
            for i, s in enumerate(chunk)
        ])  # fmt: skip


def stale(
    log: SampleLog, routes: Mapping[str, SampleLog], expected: Mapping[str, Mapping[str, str]], redo: dict
) -> set[str]:
    """The routed rows to route again: a row is its chosen variant's (its identity too), and its route
    compared both variants' perplexities, so it is stale when its identity is not its route's `expected`
    one, or when base's or vanilla's row of it is missing or stale (in `redo`: variant → ids)."""
    return {
        i
        for i, row in log.rows.items()
        if i in expected[ROUTES[0]]
        and (
            row.get("identity") != expected.get(str(row.get("route")), {}).get(i)
            or any(i in redo[r] or i not in routes[r].rows for r in ROUTES)
        )
    }


def _nlls(backend: PromptScorer, variants: Switcher, prompts: list[str], desc: str) -> dict[str, list[float]]:
    """Mean prompt NLL per route. The variant the model already is goes first: one switch fewer."""
    out = {}
    for name in sorted(ROUTES, key=lambda r: r != variants.current):
        variants.switch(name)
        out[name] = [mean_nll(*s) for s in backend.prompt_nll(prompts, desc=f"{desc}: {name} perplexity")]
    return out


def mean_nll(total: float, count: int) -> float:
    """Mean NLL per predicted token; 0.0 for a prompt of one token (nothing predicted: a tie, so base)."""
    return total / count if count else 0.0


def routed_row(rows: dict[str, dict[str, Any]], nll: dict[str, float]) -> dict[str, Any]:
    """The chosen variant's row plus the routing: `route`, and `nll_*` / `ppl_*` of every route."""
    chosen = min(ROUTES, key=lambda r: (nll[r], ROUTES.index(r)))  # strictly lower wins; tie → base
    extra: dict[str, Any] = {"route": chosen}
    for r in ROUTES:
        extra[f"nll_{r}"] = nll[r]
        extra[f"ppl_{r}"] = math.exp(nll[r]) if nll[r] < 700 else math.inf  # exp overflows past ~709
    return {**rows[chosen], **extra}


def routed_vanilla(rows: Sequence[ScoredRow]) -> float:
    """The share of rows answered by vanilla (results.json: results.loracl.TASK.routed_vanilla)."""
    return sum(r.extra["route"] == "vanilla" for r in rows) / len(rows) if rows else math.nan
