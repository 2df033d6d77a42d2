"""Benchmark taia against the tools users would otherwise use for the same output.

1. Full checkpoint: `taia apply --finetuned F --spec taia-ref` vs mergekit `task_arithmetic` with the MLP
   weight filtered to 0 (base B, fine-tune F, everything else weight 1). Ratio mergekit / taia (target ≥ 3×).
2. LoRA adapter → merged checkpoint: `taia apply --adapter A --spec taia --format merged` vs PEFT's
   `from_pretrained` + `PeftModel.from_pretrained` + `merge_and_unload` + `save_pretrained`. Ratio
   taia / PEFT (target ≤ 1.0×).

Both sides of each comparison start from files on disk and end with files on disk, run in this process
(after one untimed warm-up each, so first-call imports are not timed), in alternating order, each into a fresh
output dir after `os.sync()`. The warm-up outputs are then checked tensor by tensor (bits, and max |diff|).
`--size 135m,1b` adds a random ~1.2B bf16 Llama, where merges take seconds rather than fixed costs.

The peers are not dependencies of taia; run this in the benchmark-only venv (see peers-requirements.txt):

    python3 -m venv benchmarks/.venv-peers
    benchmarks/.venv-peers/bin/pip install -r benchmarks/peers-requirements.txt -e .
    benchmarks/.venv-peers/bin/python benchmarks/peers.py [--size 135m,1b] [--repeat 3] [--workdir DIR]
        [--wait-quiet 60] [--keep]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every input is a local dir; never reach for the hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' load/save bars, on both sides

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaConfig

import taia
from taia.config import ApplyConfig
from taia.models import materialize

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import Clock, wait_for_quiet  # the eval benchmark's clocks

# transformers' own deprecation, raised inside PEFT on both sides; nothing to act on (as in pyproject.toml)
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

MODEL = "smollm2-135m-instruct"
# ~1.2B parameters: TinyLlama-1.1B's shape (GQA, untied head) with SmolLM2's vocabulary. Large enough that
# fixed costs (config parsing, the meta-device classifier, planning) no longer dominate as in a ~1 s merge.
LLAMA_1B = dict(
    hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
    num_key_value_heads=4, vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=False,
)  # fmt: skip
# SmolLM2's tokenizer goes beside the random base (hence its vocab size above): both tools copy the base's
# tokenizer into their output, and mergekit logs an error and skips that step when the base has none.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
TARGET_FULL = 3.0  # mergekit seconds / taia seconds, at least
TARGET_LORA = 1.0  # taia seconds / PEFT seconds, at most


@dataclass
class Inputs:
    """One size's on-disk inputs: base B, full fine-tune F, LoRA adapter A, and their dtype."""

    size: str
    base: Path
    finetuned: Path
    adapter: Path
    dtype: str


# ------------------------------------------------------------------------------------------------ inputs


def build_inputs(size: str, work: Path) -> Inputs:
    """Base (the embedded SmolLM2, or a random ~1.2B Llama in bf16), a perturbed copy of every tensor, and a
    LoRA (r=16, α=32, all linear layers, seeded random non-zero B) — all written with save_pretrained."""
    root = work / size
    root.mkdir(parents=True)
    if size == "135m":
        base = materialize(MODEL)
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
    else:
        base = root / "base"
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(LlamaConfig(**LLAMA_1B), dtype=torch.bfloat16)
        model.save_pretrained(str(base))
        for name in TOKENIZER_FILES:
            shutil.copy(materialize(MODEL) / name, base / name)
    model = make_adapter(model, root / "adapter")
    perturb(model).save_pretrained(str(root / "finetuned"))
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    del model
    gc.collect()
    return Inputs(size, Path(base), root / "finetuned", root / "adapter", dtype)


def make_adapter(model: Any, out: Path, r: int = 16, seed: int = 2) -> Any:
    """Save a LoRA on every linear layer whose B is random (PEFT initialises B to 0, i.e. no update), and
    hand back the model without it."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.01)
    peft_model.save_pretrained(str(out))
    return peft_model.unload()


def perturb(model: Any, seed: int = 1, scale: float = 0.01) -> Any:
    """A "full fine-tune": every tensor moved by seeded noise (so every group has a real update)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model


# ------------------------------------------------------------------------------------------------ methods


def taia_full(inp: Inputs, out: Path) -> None:
    """taia apply --base B --finetuned F --spec taia-ref --out O: classify, copy bytes, write the report."""
    taia.apply(ApplyConfig(base=str(inp.base), finetuned=str(inp.finetuned), out=str(out), spec="taia-ref"))


def mergekit_full(inp: Inputs, out: Path) -> None:
    """mergekit task_arithmetic, MLP weight 0, all else 1: plan, load, compute, write, tokenizer, card."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    weight = [{"filter": "mlp", "value": 0.0}, {"value": 1.0}]  # first matching filter wins (substring)
    cfg = MergeConfiguration.model_validate(
        {
            "merge_method": "task_arithmetic",
            "base_model": str(inp.base),
            "models": [{"model": str(inp.finetuned), "parameters": {"weight": weight}}],
            "dtype": inp.dtype,
        }
    )
    run_merge(cfg, str(out), MergeOptions(quiet=True))  # defaults otherwise, as `mergekit-yaml` uses


def taia_merged(inp: Inputs, out: Path) -> None:
    """taia apply --adapter A --spec taia --format merged: filter A, load B, PEFT merge, save, copy aux."""
    taia.apply(
        ApplyConfig(base=str(inp.base), adapter=str(inp.adapter), out=str(out), spec="taia", format="merged")
    )


def peft_merged(inp: Inputs, out: Path) -> None:
    """What a PEFT user runs: load B, load A onto it, merge every module, save."""
    from peft import PeftModel

    model = AutoModelForCausalLM.from_pretrained(str(inp.base), dtype="auto")
    merged = PeftModel.from_pretrained(model, str(inp.adapter)).merge_and_unload()
    merged.save_pretrained(str(out))


COMPARISONS: dict[str, dict[str, Callable[[Inputs, Path], None]]] = {
    "full": {"mergekit": mergekit_full, "taia": taia_full},
    "lora": {"peft": peft_merged, "taia": taia_merged},
}


# ------------------------------------------------------------------------------------------------ timing


def warm(*roots: Path) -> None:
    """Read every input file once so that every timed run starts from a warm page cache."""
    for p in (f for root in roots for f in root.rglob("*") if f.is_file()):
        with p.open("rb") as fh:
            while fh.read(64 << 20):
                pass


def time_comparison(kind: str, inp: Inputs, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One untimed warm-up per method (its output is kept for the checks), then `repeat` timed rounds in
    alternating order. Returns {label: [(seconds, others' cores), ...]} and the warm-up output dirs."""
    methods = COMPARISONS[kind]
    kept = {label: work / f"{inp.size}-{kind}-{label}" for label in methods}
    for label, fn in methods.items():
        fn(inp, kept[label])
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in methods}
    labels = list(methods)
    for r in range(args.repeat):
        if args.wait_quiet > 0:
            wait_for_quiet(args.wait_quiet)
        for label in labels if r % 2 == 0 else labels[::-1]:
            out = work / "timed-out"
            os.sync()  # flush the previous run's dirty pages outside the timed region
            with Clock() as c:
                methods[label](inp, out)
            shutil.rmtree(out)
            runs[label].append((c.seconds, c.others))
            print(f"  [{inp.size} {kind}] run {r + 1} {label:8s} {c.seconds:7.2f} s "
                  f"(others {c.others:.2f} cores)", flush=True)  # fmt: skip
    return {"runs": runs, "outputs": kept}


# ------------------------------------------------------------------------------------------------ checks


def tensor_index(root: Path) -> dict[str, Path]:
    """{tensor name: the .safetensors file holding it}, over every shard of a checkpoint dir."""
    index: dict[str, Path] = {}
    for f in sorted(root.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            index.update(dict.fromkeys(h.keys(), f))
    return index


def load(index: dict[str, Path], name: str) -> torch.Tensor:
    with safe_open(str(index[name]), framework="pt") as h:
        return h.get_tensor(name)


def group(name: str) -> str:
    """Coarse group for the report: what mergekit's `mlp` filter matches, attention, and the rest."""
    return "mlp" if ".mlp." in name else "attn" if ".self_attn." in name else "other"


_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def differ(a: torch.Tensor, b: torch.Tensor) -> tuple[int, float]:
    """(elements whose bits differ, max |a − b|). Bits, not ==: -0.0 vs 0.0 and NaN payloads count."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return a.numel(), float("inf")
    ia, ib = (t.contiguous().view(_INT[t.element_size()]) for t in (a, b))
    if torch.equal(ia, ib):  # the common case, and much cheaper than counting
        return 0, 0.0
    return int((ia != ib).sum()), float((a.float() - b.float()).abs().max())


# torch.testing's default tolerances for each dtype: "equal within fp tolerance" for merged weights.
_TOL = {torch.float32: (1.3e-6, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float16: (1e-3, 1e-5)}


def check(out: Path, expect: dict[str, tuple[str, Path]]) -> dict[str, Any]:
    """Compare every tensor of `out` with the checkpoint its group should come from ({group: (label, dir)}).
    Per group: tensors, tensors with any differing bit, differing elements, max |diff|, tensors not close."""
    got = tensor_index(out)
    refs = {d: tensor_index(d) for _, d in expect.values()}
    stats: dict[str, dict[str, Any]] = {}
    unmatched = []
    for name in sorted(got):
        label, ref = expect[group(name)]
        if name not in refs[ref]:
            unmatched.append(name)  # e.g. a tied head written out by one side only
            continue
        a, b = load(got, name), load(refs[ref], name)
        n, mx = differ(a, b)
        rtol, atol = _TOL.get(b.dtype, (0.0, 0.0))
        close = n == 0 or (a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=rtol, atol=atol))
        s = stats.setdefault(group(name), dict(vs=label, tensors=0, tensors_diff=0, elements=0,
                                               elements_diff=0, max_abs=0.0, not_close=0))  # fmt: skip
        for key, add in (("tensors", 1), ("tensors_diff", n > 0), ("elements", a.numel()),
                         ("elements_diff", n), ("not_close", not close)):  # fmt: skip
            s[key] += add
        s["max_abs"] = max(s["max_abs"], mx)
    return {"groups": stats, "unmatched": unmatched}


def check_all(inp: Inputs, full: dict[str, Any], lora: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Full: attention and everything but the MLP from F, the MLP from B (both tools should give this).
    LoRA: taia's attention ≈ PEFT's merged attention; its MLP, norms and embeddings = B bit for bit."""
    b, f = ("B", inp.base), ("F", inp.finetuned)
    want_full = {"attn": f, "mlp": b, "other": f}
    want_lora = {"attn": ("PEFT merge", lora["outputs"]["peft"]), "mlp": b, "other": b}
    return {
        "full/taia": check(full["outputs"]["taia"], want_full),
        "full/mergekit": check(full["outputs"]["mergekit"], want_full),
        "lora/taia": check(lora["outputs"]["taia"], want_lora),
    }


# ------------------------------------------------------------------------------------------------ report


def environment() -> dict[str, str]:
    import mergekit
    import peft
    import safetensors
    import transformers

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "python": platform.python_version(),
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}, mergekit {_version('mergekit', mergekit)}, "
        f"safetensors {safetensors.__version__}",
    }


def _version(dist: str, module: Any) -> str:
    from importlib.metadata import version

    return getattr(module, "__version__", None) or version(dist)


def timing_rows(size: str, dtype: str, kind: str, runs: dict[str, list[tuple[float, float]]]) -> list[str]:
    """Markdown rows: one per method, the ratio on taia's row (peer/taia for full, taia/PEFT for LoRA)."""
    med = {label: statistics.median(s for s, _ in rs) for label, rs in runs.items()}
    peer = next(label for label in runs if label != "taia")
    ratio = med[peer] / med["taia"] if kind == "full" else med["taia"] / med[peer]
    met = ratio >= TARGET_FULL if kind == "full" else ratio <= TARGET_LORA
    what = f"{peer} / taia" if kind == "full" else f"taia / {peer}"
    target = f"≥ {TARGET_FULL:g}×" if kind == "full" else f"≤ {TARGET_LORA:g}×"
    rows = []
    for label, rs in runs.items():
        cells = " ".join(f"{s:.2f}" for s, _ in rs)
        verdict = f"{what} = **{ratio:.2f}×** (target {target}: {'met' if met else 'NOT met'})"
        rows.append(f"| {size} {dtype} | {kind} | {label} | {cells} | {med[label]:.2f} | "
                    f"{min(s for s, _ in rs):.2f} | {max(o for _, o in rs):.2f} | "
                    f"{verdict if label == 'taia' else ''} |")  # fmt: skip
    return rows


def check_rows(size: str, checks: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    for what, res in checks.items():
        for g, s in sorted(res["groups"].items()):
            verdict = "bitwise" if s["elements_diff"] == 0 else "close" if s["not_close"] == 0 else "DIFFERS"
            rows.append(f"| {size} | {what} | {g} | {s['vs']} | {s['tensors']} | {s['tensors_diff']} | "
                        f"{s['elements_diff']:,} / {s['elements']:,} | {s['max_abs']:.3g} | "
                        f"{verdict} |")  # fmt: skip
        if res["unmatched"]:
            rows.append(f"| {size} | {what} | – | not in reference | {len(res['unmatched'])} | "
                        f"{', '.join(res['unmatched'][:3])} | | | |")  # fmt: skip
    return rows


def print_report(env: dict[str, str], timings: list[str], checks: list[str]) -> None:
    print("\n" + "\n".join(f"- {k}: {v}" for k, v in env.items()))
    print("\n| model | comparison | method | runs, s | median s | best s | others, cores (max) | ratio |")
    print("|---|---|---|---|---:|---:|---:|---|")
    print("\n".join(timings))
    print("\n| model | output | group | vs | tensors | tensors ≠ | elements ≠ | max abs diff | result |")
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    print("\n".join(checks))


# -------------------------------------------------------------------------------------------------- main


def bench_size(size: str, work: Path, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    t0 = time.perf_counter()
    inp = build_inputs(size, work)
    print(f"[{size}] built F and A ({inp.dtype}) in {time.perf_counter() - t0:.1f} s", flush=True)
    warm(inp.base, inp.finetuned, inp.adapter)
    full = time_comparison("full", inp, work, args)
    lora = time_comparison("lora", inp, work, args)
    t0 = time.perf_counter()
    checks = check_all(inp, full, lora)
    print(f"[{size}] checked every output tensor in {time.perf_counter() - t0:.1f} s", flush=True)
    timings = [*timing_rows(size, inp.dtype, "full", full["runs"]),
               *timing_rows(size, inp.dtype, "lora", lora["runs"])]  # fmt: skip
    for res in (full, lora):
        for out in res["outputs"].values():
            shutil.rmtree(out)
    return timings, check_rows(size, checks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="135m", help="comma list of 135m (SmolLM2, fp32) and 1b (random, bf16)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per method; the median is compared")
    ap.add_argument(
        "--wait-quiet", type=float, default=0, help="wait ≤ S s for a quiet CPU before each round"
    )
    ap.add_argument("--workdir", type=Path, help="where to build the inputs (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the inputs")
    args = ap.parse_args()
    sizes = [s.strip() for s in args.size.split(",")]
    if bad := set(sizes) - {"135m", "1b"}:
        ap.error(f"unknown --size {sorted(bad)}")
    work = Path(tempfile.mkdtemp(prefix="taia-peers-", dir=args.workdir))
    timings: list[str] = []
    checks: list[str] = []
    try:
        for size in sizes:
            t, c = bench_size(size, work, args)
            timings += t
            checks += c
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_report(environment(), timings, checks)


if __name__ == "__main__":
    main()
