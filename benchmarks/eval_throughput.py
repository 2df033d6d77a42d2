"""Benchmark `taia eval`'s HF backend: batched generation vs a batch-1 loop, in-place variants vs reloads.

One process, SmolLM2-135M-Instruct (taia's embedded default), fp32 on CPU.

1. **Generation throughput.** The same `--prompts` GSM8K test questions (seeded subset, as
   `taia eval --limit` picks them) in the paper protocol (`chat(tok, question + "\\n" + PAPER_ANSWER)`),
   greedy, `--max-new-tokens`. Baseline, the reference implementation's way: a Python loop calling
   `model.generate` on one prompt at a time (batch 1, no padding). taia: `HFBackend(model, tok, B).generate`
   (length-sorted, left-padded batches; rows that finished leave the batch every `--segment` tokens) for
   each B in `--batch-sizes`, and the largest B once more as one `generate` call per batch (the same
   backend without dropping finished rows). Both sides time tokenizing,
   generating and decoding. Generated tokens = per sample, the tokens up to and including the first EOS
   (all of them when there is none), counted the same way on both sides (rows that stop early are not
   counted as `max_new_tokens`; the pad/EOS filler after a batched row's EOS is not counted).
   Throughput = generated tokens / seconds; the ratio is taia's over the baseline's. The outputs of each
   batched run are compared with the batch-1 outputs (token ids up to EOS, and decoded text): left
   padding changes fp32 sums slightly, so greedy decoding may diverge; the identical fraction is reported.
2. **Variants.** Four variants (base, vanilla, taia, taif) of a random-but-nonzero PEFT LoRA (all linear
   layers, r=16, B ~ N(0, 0.02²)) evaluated on one small workload, (a) with one `load_variants` and a
   `switch` per variant, (b) with a fresh `from_pretrained` + `PeftModel.from_pretrained` +
   `apply_model(model, spec)` per variant. Both wall times include the loads; load and switch times are
   reported apart from the evaluation. The workload (`--variant-workload`): `csqa` (default), the paper
   protocol's multiple choice (`--variant-items` CommonsenseQA questions, the option letter with the
   highest next-token log-prob: one forward per question), or `gsm8k` (`--variant-items` prompts ×
   `--variant-new-tokens` greedy tokens). The scores/outputs of (a) and (b) must match per variant.
   Rounds alternate the order of (a) and (b) after one untimed warm-up of each.

Every timed section also records how much CPU other processes used meanwhile ("others, cores"): on this
2-core VM a concurrent job makes 2-thread torch far slower than its share (OpenMP threads wait on each
other), so numbers taken while others > ~0.1 core are not comparable. `--wait-quiet S` waits up to S
seconds for a quiet machine before each part.

    python benchmarks/eval_throughput.py [--prompts 64] [--max-new-tokens 128] [--batch-sizes 16,32,64]
        [--segment 16]
        [--variant-workload csqa|gsm8k] [--variant-items 32] [--variant-new-tokens 32] [--rounds 2]
        [--threads N] [--wait-quiet 600] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from eval_cloze import bench_cloze, matmul_limit
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from taia.apply.model import apply_model
from taia.eval.backends.hf import HFBackend
from taia.eval.kinds import request
from taia.eval.protocol import PAPER_ANSWER, Choice, chat
from taia.eval.tasks import get_task, load_samples
from taia.eval.variants import load_variants, resolve_specs
from taia.io.rows import data_root
from taia.models import materialize

MODEL = "smollm2-135m-instruct"
VARIANTS = ["base", "vanilla", "taia", "taif"]
TARGET = 5.0
_TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- clocks


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall, this process's CPU s, the whole machine's busy CPU s) now."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]  # user nice system irq softirq
    own = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), own.ru_utime + own.ru_stime, busy / _TICK


class Clock:
    """`with Clock() as c:` → c.seconds, and c.others: cores other processes kept busy meanwhile."""

    def __enter__(self) -> Clock:
        self._before = cpu_snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        wall, own, busy = (b - a for a, b in zip(self._before, cpu_snapshot(), strict=True))
        self.seconds = wall
        self.others = max(0.0, busy - own) / wall if wall > 0 else 0.0


def wait_for_quiet(limit_s: float, window_s: float = 3.0) -> float:
    """Wait (at most `limit_s`) until other processes use < 0.1 core over a window; the seconds waited."""
    start = time.perf_counter()
    while True:
        with Clock() as c:
            time.sleep(window_s)
        waited = time.perf_counter() - start
        if c.others < 0.1 or waited >= limit_s:
            return waited


# ------------------------------------------------------------------------------------------ generation


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids or {tokenizer.eos_token_id}


def until_eos(row: list[int], eos: set[int]) -> list[int]:
    """Generated ids up to and including the first EOS (the counted tokens)."""
    for i, t in enumerate(row):
        if t in eos:
            return row[: i + 1]
    return row


def batch1_loop(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, eos: set[int]
) -> tuple[list[list[int]], list[str]]:
    """The reference's way: one `generate` call per prompt, no padding."""
    rows, texts = [], []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            gen = out[0, ids.shape[1] :].tolist()
            rows.append(until_eos(gen, eos))
            texts.append(tokenizer.decode(gen, skip_special_tokens=True))
    return rows, texts


class Recording:
    """A model stand-in for HFBackend that counts the row-steps its `generate` calls compute."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.generation_config = model.generation_config
        self.row_steps = 0

    def parameters(self) -> Any:
        return self.model.parameters()

    def generate(self, **kwargs: Any) -> Any:
        out = self.model.generate(**kwargs)
        seqs = out.sequences if hasattr(out, "sequences") else out
        self.row_steps += seqs.shape[0] * (seqs.shape[1] - kwargs["input_ids"].shape[1])
        return out


class Keeping(HFBackend):
    """HFBackend that also keeps each batch's new token ids (up to and including EOS)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[list[int]]] = []

    def _generate_ids(self, ids: list[list[int]], max_new_tokens: int, stop: Any) -> list[list[int]]:
        rows = super()._generate_ids(ids, max_new_tokens, stop)
        self.batches.append(rows)
        return rows


def batched(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int, segment: int
) -> tuple[list[list[int]], list[str], int]:
    """HFBackend.generate; per prompt the counted ids and the text, and the row-steps computed in all."""
    rec = Recording(model)
    order: list[list[int]] = []
    backend = Keeping(rec, tokenizer, batch_size=batch_size, segment=segment)
    texts = backend.generate(prompts, max_new_tokens, on_batch=lambda idx, _: order.append(idx))
    rows: list[list[int]] = [[] for _ in prompts]
    for idx, batch in zip(order, backend.batches, strict=True):
        for i, row in zip(idx, batch, strict=True):
            rows[i] = row
    return rows, texts, rec.row_steps


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def bench_generation(
    model: Any, tokenizer: Any, prompts: list[str], args: argparse.Namespace, eos: set[int]
) -> dict[str, Any]:
    # Untimed warm-up of both paths (first-call allocations, lazy imports).
    batch1_loop(model, tokenizer, prompts[:1], 4, eos)
    batched(model, tokenizer, prompts[:4], 4, 4, args.segment)

    waited = wait_for_quiet(args.wait_quiet)
    print(f"[gen] batch-1 loop over {len(prompts)} prompts (waited {waited:.0f} s for quiet)", flush=True)
    with Clock() as c:
        ref_rows, ref_texts = batch1_loop(model, tokenizer, prompts, args.max_new_tokens, eos)
    ref_tokens = sum(map(len, ref_rows))
    runs: list[dict[str, Any]] = [
        {
            "method": "batch-1 generate loop",
            "batch_size": 1,
            "seconds": c.seconds,
            "others_cores": c.others,
            "tokens": ref_tokens,
            "tokens_per_s": ref_tokens / c.seconds,
            "row_steps": ref_tokens,
            "hit_eos": sum(1 for r in ref_rows if r and r[-1] in eos),
        }
    ]
    print(f"    {c.seconds:.1f} s, {ref_tokens} tokens, {ref_tokens / c.seconds:.2f} tok/s", flush=True)
    # Each batch size with finished rows dropped every `segment` tokens (taia's default), then the
    # largest one as a single `generate` call per batch (finished rows computed to the end).
    plan = [(bs, args.segment) for bs in args.batch_sizes] + [(max(args.batch_sizes), args.max_new_tokens)]
    for bs, segment in plan:
        label = f"batch {bs}" + (", rows dropped" if segment < args.max_new_tokens else ", one generate call")
        waited = wait_for_quiet(args.wait_quiet)
        print(f"[gen] HFBackend {label} (waited {waited:.0f} s for quiet)", flush=True)
        with Clock() as c:
            rows, texts, computed = batched(model, tokenizer, prompts, args.max_new_tokens, bs, segment)
        tokens = sum(map(len, rows))
        diverge = [first_divergence(a, b) for a, b in zip(rows, ref_rows, strict=True)]
        at = [d for d in diverge if d is not None]
        run = {
            "method": f"HFBackend {label}",
            "batch_size": bs,
            "segment": segment,
            "seconds": c.seconds,
            "others_cores": c.others,
            "tokens": tokens,
            "tokens_per_s": tokens / c.seconds,
            "row_steps": computed,
            "hit_eos": sum(1 for r in rows if r and r[-1] in eos),
            "vs_batch1": (tokens / c.seconds) / runs[0]["tokens_per_s"],
            "identical_tokens": sum(d is None for d in diverge) / len(rows),
            "identical_text": sum(a == b for a, b in zip(texts, ref_texts, strict=True)) / len(rows),
            "first_divergence": sorted(at),
        }
        runs.append(run)
        print(
            f"    {c.seconds:.1f} s, {tokens} tokens, {run['tokens_per_s']:.2f} tok/s, "
            f"{run['vs_batch1']:.2f}× batch-1, identical text {run['identical_text']:.0%}, "
            f"others {c.others:.2f} cores",
            flush=True,
        )
    return {"runs": runs}


# -------------------------------------------------------------------------------------------- variants


def make_adapter(model_dir: Path, out: Path, r: int = 16, seed: int = 0) -> None:
    """A PEFT LoRA on every linear layer whose B matrices are random, so every variant differs."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", lora_dropout=0.0)
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    peft_model.save_pretrained(str(out))


def workload(args: argparse.Namespace, tokenizer: Any) -> Callable[[Any], Any]:
    """The per-variant evaluation: model → its answers (comparable across (a) and (b))."""
    root = data_root()
    if args.variant_workload == "csqa":
        task = get_task("commonsenseqa")
        samples = load_samples("commonsenseqa", root, limit=args.variant_items, seed=0)
        reqs = [request(task, s, "paper", tokenizer) for s in samples]
        pairs = [(r.context, c) for r in reqs if isinstance(r, Choice) for c in r.continuations]

        def score(model: Any) -> Any:
            return HFBackend(model, tokenizer, args.variant_batch).loglikelihood(pairs)

        return score
    samples = load_samples("gsm8k", root, limit=args.variant_items, seed=0)
    prompts = [chat(tokenizer, f"{s.question}\n{PAPER_ANSWER}") for s in samples]

    def generate(model: Any) -> Any:
        return HFBackend(model, tokenizer, args.variant_batch).generate(prompts, args.variant_new_tokens)

    return generate


@contextmanager
def adding(res: dict[str, Any], key: str) -> Iterator[None]:
    """Add the block's wall seconds to res[key]."""
    with Clock() as c:
        yield
    res[key] += c.seconds


def in_place(model_dir: Path, adapter: Path, evaluate: Callable[[Any], Any]) -> dict[str, Any]:
    """(a): one load_variants, a switch per variant."""
    res: dict[str, Any] = {"load": 0.0, "switch": 0.0, "eval": 0.0, "answers": {}}
    with Clock() as total:
        with adding(res, "load"):
            variants = load_variants(model_dir, adapter, None, resolve_specs(VARIANTS), torch.float32)
        for name in VARIANTS:
            with adding(res, "switch"):
                model = variants.switch(name)
            with adding(res, "eval"):
                res["answers"][name] = evaluate(model)
    del variants, model
    gc.collect()
    res.update(seconds=total.seconds, others_cores=total.others)
    return res


def reloads(model_dir: Path, adapter: Path, evaluate: Callable[[Any], Any]) -> dict[str, Any]:
    """(b): a fresh base + adapter load and apply_model per variant."""
    res: dict[str, Any] = {"load": 0.0, "switch": 0.0, "eval": 0.0, "answers": {}}
    specs = resolve_specs(VARIANTS)
    with Clock() as total:
        for name in VARIANTS:
            with adding(res, "load"):
                base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
                model = PeftModel.from_pretrained(base, str(adapter)).eval()
            with adding(res, "switch"):
                apply_model(model, specs[name])
            with adding(res, "eval"):
                res["answers"][name] = evaluate(model)
            del base, model
            gc.collect()
    res.update(seconds=total.seconds, others_cores=total.others)
    return res


def same_answers(a: Any, b: Any) -> tuple[bool, float]:
    """(identical?, max |Δ| of scores) for two answers of one variant."""
    if a and isinstance(a[0], tuple):
        diff = max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True))
        return diff == 0.0, diff
    return a == b, 0.0


def bench_variants(model_dir: Path, tokenizer: Any, args: argparse.Namespace) -> dict[str, Any]:
    evaluate = workload(args, tokenizer)
    with tempfile.TemporaryDirectory(prefix="taia-bench-adapter-") as tmp:
        adapter = Path(tmp) / "adapter"
        make_adapter(model_dir, adapter)
        in_place(model_dir, adapter, evaluate)  # untimed warm-up of both paths
        reloads(model_dir, adapter, evaluate)
        rounds: list[dict[str, Any]] = []
        for k in range(args.rounds):
            order = [("in-place", in_place), ("reloads", reloads)]
            if k % 2:
                order.reverse()
            result: dict[str, Any] = {}
            for label, fn in order:
                waited = wait_for_quiet(args.wait_quiet)
                print(f"[variants] round {k + 1}: {label} (waited {waited:.0f} s for quiet)", flush=True)
                result[label] = fn(model_dir, adapter, evaluate)
                r = result[label]
                print(
                    f"    total {r['seconds']:.2f} s = load {r['load']:.2f} + switch {r['switch']:.3f} "
                    f"+ eval {r['eval']:.2f}; others {r['others_cores']:.2f} cores",
                    flush=True,
                )
            checks = {
                v: same_answers(result["in-place"]["answers"][v], result["reloads"]["answers"][v])
                for v in VARIANTS
            }
            base_vs_vanilla = same_answers(
                result["in-place"]["answers"]["base"], result["in-place"]["answers"]["vanilla"]
            )
            for r in result.values():
                del r["answers"]
            result["match"] = {v: {"identical": ok, "max_abs_diff": d} for v, (ok, d) in checks.items()}
            result["base_equals_vanilla"] = base_vs_vanilla[0]
            result["ratio"] = result["reloads"]["seconds"] / result["in-place"]["seconds"]
            rounds.append(result)
    return {"workload": args.variant_workload, "rounds": rounds}


# ------------------------------------------------------------------------------------------------ main


def environment() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in ln
        ),
        platform.processor(),
    )
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def print_limit_and_cloze(results: dict[str, Any]) -> None:
    lim = results["limit"]
    print(
        f"\nMatmul limit: {lim['rows']}-row matmul {lim['gflop_per_s']:.1f} GFLOP/s, "
        f"{lim['gflop_per_token']:.3f} GFLOP/token → {lim['tokens_per_s']:.0f} tokens/s"
    )
    for r in results.get("generation", {}).get("runs", []):
        print(f"  {r['method']}: {r['tokens_per_s'] / lim['tokens_per_s']:.2f} of the limit")
    cloze = results.get("cloze")
    if cloze:
        print(
            f"\nCloze job: {cloze['questions']} CommonsenseQA questions × 5, batch {cloze['batch']}, "
            "whole process"
        )
        print("| round | taia s | lm-eval s | lm-eval / taia | others, cores (taia / lm-eval) |")
        print("|---|---:|---:|---:|---|")
        for k, r in enumerate(cloze["runs"], 1):
            t, m = r["taia"], r["lm_eval"]
            print(
                f"| {k} | {t['seconds']:.1f} | {m['seconds']:.1f} | **{r['ratio']:.2f}×** | "
                f"{t['others_cores']:.2f} / {m['others_cores']:.2f} |"
            )


def print_tables(results: dict[str, Any]) -> None:
    print_limit_and_cloze(results)
    gen = results.get("generation")
    if gen:
        setup = results["setup"]
        print(f"\nGeneration: {setup['prompts']} GSM8K prompts, ≤{setup['max_new_tokens']} new tokens")
        print(
            "| method | s | generated tokens | tok/s | vs batch-1 | row-steps computed (useful) "
            "| row-steps/s | hit EOS | identical text | identical tokens | others, cores |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in gen["runs"]:
            vs = f"**{r['vs_batch1']:.2f}×**" if "vs_batch1" in r else "1.00×"
            same = f"{r['identical_text']:.0%}" if "identical_text" in r else "–"
            same_t = f"{r['identical_tokens']:.0%}" if "identical_tokens" in r else "–"
            print(
                f"| {r['method']} | {r['seconds']:.1f} | {r['tokens']} | {r['tokens_per_s']:.2f} | {vs} | "
                f"{r['row_steps']} ({r['tokens'] / r['row_steps']:.0%}) | "
                f"{r['row_steps'] / r['seconds']:.1f} | "
                f"{r['hit_eos']} | {same} | {same_t} | {r['others_cores']:.2f} |"
            )
    var = results.get("variants")
    if var:
        print(f"\nVariants ({', '.join(VARIANTS)}), workload {var['workload']}")
        print(
            "| round | method | total s | load s | switch/apply s | eval s | others, cores "
            "| reloads / in-place |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for k, rnd in enumerate(var["rounds"], 1):
            for label in ("in-place", "reloads"):
                r = rnd[label]
                ratio = f"**{rnd['ratio']:.2f}×**" if label == "reloads" else ""
                print(
                    f"| {k} | {label} | {r['seconds']:.2f} | {r['load']:.2f} | {r['switch']:.3f} | "
                    f"{r['eval']:.2f} | {r['others_cores']:.2f} | {ratio} |"
                )
        ratios = [rnd["ratio"] for rnd in var["rounds"]]
        print(f"median reloads / in-place: {statistics.median(ratios):.2f}×")
        for k, rnd in enumerate(var["rounds"], 1):
            print(
                f"round {k}: (a) vs (b) answers {rnd['match']}; base == vanilla: {rnd['base_equals_vanilla']}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64, help="GSM8K prompts for the generation part")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-sizes", default="16,32,64", help="HFBackend batch sizes, comma-separated")
    ap.add_argument("--segment", type=int, default=16, help="tokens between drops of finished rows")
    ap.add_argument("--variant-workload", choices=["csqa", "gsm8k"], default="csqa")
    ap.add_argument("--variant-items", type=int, default=32, help="questions / prompts per variant")
    ap.add_argument("--variant-new-tokens", type=int, default=32, help="gsm8k workload: tokens per prompt")
    ap.add_argument("--variant-batch", type=int, default=16, help="HFBackend batch size for the variants")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds of the variants part")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, help="wait up to S s for a quiet machine")
    ap.add_argument("--skip", choices=["generation", "variants"], help="leave one part out")
    ap.add_argument(
        "--only-cloze", action="store_true", help="run only the cloze job vs lm-eval (and the limit)"
    )
    ap.add_argument(
        "--cloze-questions", type=int, default=0, help="cloze job vs lm-eval on N questions (0: off)"
    )
    ap.add_argument("--cloze-batch", type=int, default=32, help="batch size of both sides of the cloze job")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x]
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    model_dir = materialize(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    results: dict[str, Any] = {"environment": environment(), "setup": {**vars(args), "model": MODEL}}
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    results["limit"] = matmul_limit(model, rows=max(args.batch_sizes))
    if args.cloze_questions:
        waited = wait_for_quiet(args.wait_quiet)
        print(f"[cloze] taia vs lm-eval (waited {waited:.0f} s for quiet)", flush=True)
        results["cloze"] = bench_cloze(model_dir, args.cloze_questions, args.cloze_batch, args.rounds, Clock)
    if args.skip != "generation" and not args.only_cloze:
        samples = load_samples("gsm8k", data_root(), limit=args.prompts, seed=0)
        prompts = [chat(tokenizer, f"{s.question}\n{PAPER_ANSWER}") for s in samples]
        results["generation"] = bench_generation(model, tokenizer, prompts, args, eos_ids(model, tokenizer))
    del model
    gc.collect()
    if args.skip != "variants" and not args.only_cloze:
        results["variants"] = bench_variants(model_dir, tokenizer, args)
    results["environment"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print_tables(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
