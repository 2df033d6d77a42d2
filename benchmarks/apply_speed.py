"""Benchmark `taia apply --finetuned` (taia.apply.apply_checkpoint) against `cp -r` on a synthetic checkpoint.

Builds a bf16 Llama-shaped base/fine-tune pair (several safetensors shards + index), then measures
wall time and throughput of `cp -r` (baseline) and of apply_checkpoint with specs taia, taia-ref and a
fractional one (reported separately: it computes in fp32, no target), the peak RSS of each apply in a
fresh child process, and checks a few output tensors bit-for-bit. Where apply_checkpoint scans what it
writes for NaN/Inf (`check_finite`), taia and taia-ref are also timed with the scan off (`*-trust`, what
`--skip-finite-check` does).

    python benchmarks/apply_speed.py [--size-gb 1.2] [--shard-mb 300] [--repeat 2] [--workdir DIR] [--keep]
                                     [--no-half]
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import LlamaConfig

from taia.apply.checkpoint import apply_checkpoint
from taia.spec import load_spec

HALF = {"name": "half", "groups": {"attn": 0.5}}  # a fractional λ: computed in fp32, no speed target
SPECS: dict[str, str | dict] = {"taia": "taia", "taia-ref": "taia-ref", "half": HALF}
# Which tensors to check after each apply, and the λ each spec gives them (1 = fine-tune, 0 = base).
CHECKS = {
    "taia": {"model.layers.0.self_attn.q_proj.weight": 1.0, "model.layers.0.mlp.down_proj.weight": 0.0,
             "model.embed_tokens.weight": 0.0},
    "taia-ref": {"model.layers.0.self_attn.o_proj.weight": 1.0, "model.layers.0.mlp.up_proj.weight": 0.0,
                 "lm_head.weight": 1.0},
    "half": {"model.layers.0.self_attn.k_proj.weight": 0.5, "model.layers.0.mlp.gate_proj.weight": 0.0},
}  # fmt: skip
GB = 1e9
# `*-trust`: the same spec with the NaN/Inf scan off, where this version of taia has one.
SCAN = "check_finite" in inspect.signature(apply_checkpoint).parameters
TRUST = {"taia-trust": "taia", "taia-ref-trust": "taia-ref"} if SCAN else {}
# Run in a fresh interpreter so that its RSS is the apply's alone (plus the imports, reported apart).
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked copy of this (big) parent into the
# exec'd child, while VmHWM belongs to the child's own address space.
CHILD = """
import json, re, sys
from taia.apply.checkpoint import apply_checkpoint
from taia.spec import load_spec
spec = load_spec(json.loads(sys.argv[4]))
rss = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
imports = rss()
apply_checkpoint(sys.argv[1], sys.argv[2], sys.argv[3], spec)
print(json.dumps({"imports": imports, "peak": rss()}))
"""


def llama_config(size_gb: float) -> LlamaConfig:
    """A Llama whose bf16 weights come to about `size_gb` (untied head, so lm_head.weight exists)."""
    h, inter, vocab = 2048, 5632, 32000
    per_layer = 4 * h * h + 3 * h * inter + 2 * h
    layers = max(1, round((size_gb * GB / 2 - 2 * vocab * h - h) / per_layer))
    return LlamaConfig(hidden_size=h, intermediate_size=inter, vocab_size=vocab, num_hidden_layers=layers,
                       num_attention_heads=16, num_key_value_heads=16, tie_word_embeddings=False)  # fmt: skip


def param_shapes(cfg: LlamaConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Real Llama parameter names and shapes, in checkpoint order (so the classifier recognises them)."""
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (v, h))]
    for n in range(cfg.num_hidden_layers):
        p = f"model.layers.{n}"
        out += [(f"{p}.self_attn.{m}_proj.weight", (h, h)) for m in "qkvo"]
        out += [(f"{p}.mlp.gate_proj.weight", (i, h)), (f"{p}.mlp.up_proj.weight", (i, h))]
        out += [(f"{p}.mlp.down_proj.weight", (h, i))]
        out += [(f"{p}.input_layernorm.weight", (h,)), (f"{p}.post_attention_layernorm.weight", (h,))]
    return [*out, ("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]


def split_shards(shapes: list[tuple[str, tuple[int, ...]]], shard_mb: int) -> list[list[tuple[str, tuple]]]:
    shards: list[list[tuple[str, tuple]]] = [[]]
    used = 0
    for name, shape in shapes:
        size = math.prod(shape) * 2
        if shards[-1] and used + size > shard_mb * 1e6:
            shards.append([])
            used = 0
        shards[-1].append((name, shape))
        used += size
    return shards


def build_checkpoint(root: Path, cfg: LlamaConfig, shards: list[list[tuple[str, tuple]]], seed: int) -> None:
    """Write one checkpoint shard by shard: only one shard's tensors are ever in memory."""
    root.mkdir(parents=True)
    cfg.save_pretrained(root)
    gen = torch.Generator().manual_seed(seed)
    # Sampling 600M normals costs seconds; tiling windows of a 32 MB random pool costs only memcpy.
    pool = torch.empty(1 << 24, dtype=torch.bfloat16).normal_(generator=gen)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        tensors = {name: _window(pool, shape, gen) for name, shape in shard}
        save_file(tensors, str(root / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, fname))
        total += sum(t.numel() * 2 for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _window(pool: torch.Tensor, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    n = math.prod(shape)
    off = int(torch.randint(0, pool.numel(), (1,), generator=gen))
    reps = (off + n) // pool.numel() + 1
    return pool.repeat(reps)[off : off + n].view(shape).clone()


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.iterdir() if p.suffix == ".safetensors")


def warm(*roots: Path) -> None:
    """Read every file once so that all timed runs start from a warm page cache."""
    for root in roots:
        for p in root.iterdir():
            with p.open("rb") as f:
                while f.read(64 << 20):
                    pass


def timed(label: str, work: Path, base: Path, ft: Path) -> tuple[float, int]:
    """One timed run; returns (seconds, output bytes). Dirty pages are flushed beforehand, not timed."""
    out = work / f"out-{label}"
    os.sync()
    t0 = time.perf_counter()
    if label == "cp":
        subprocess.run(["cp", "-r", str(ft), str(out)], check=True)
    elif label in TRUST:
        apply_checkpoint(base, ft, out, load_spec(SPECS[TRUST[label]]), check_finite=False)
    else:
        apply_checkpoint(base, ft, out, load_spec(SPECS[label]))
    secs = time.perf_counter() - t0
    if label != "cp":
        verify(TRUST.get(label, label), out, base, ft)
    size = dir_bytes(out)
    shutil.rmtree(out)
    return secs, size


def verify(label: str, out: Path, base: Path, ft: Path) -> None:
    """Output tensors must equal the fine-tune's (λ=1) or base's (λ=0) bytes, or their fp32 blend."""
    for name, lam in CHECKS[label].items():
        got, b, f = (_load(d, name) for d in (out, base, ft))
        if lam in (0.0, 1.0):
            ok = torch.equal(got, f if lam == 1.0 else b)
        else:
            want = (b.float() + lam * (f.float() - b.float())).to(f.dtype)
            ok = torch.allclose(got.float(), want.float(), rtol=1e-2, atol=1e-2)
        if not ok:
            raise SystemExit(f"FAIL: {label}: {name} is not what λ={lam} should give")


def _load(root: Path, name: str) -> torch.Tensor:
    fname = json.loads((root / "model.safetensors.index.json").read_text())["weight_map"][name]
    with safe_open(str(root / fname), framework="pt") as f:
        return f.get_tensor(name)


def child_rss(label: str, work: Path, base: Path, ft: Path) -> dict[str, int]:
    out = work / f"rss-{label}"
    cmd = [sys.executable, "-c", CHILD, str(base), str(ft), str(out), json.dumps(SPECS[label])]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    shutil.rmtree(out)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_timings(labels: list[str], repeat: int, work: Path, base: Path, ft: Path) -> dict[str, list]:
    runs: dict[str, list] = {k: [] for k in labels}
    for r in range(repeat):
        # Alternate the order so that no method always runs right after the same neighbour.
        for label in labels if r % 2 == 0 else labels[::-1]:
            runs[label].append(timed(label, work, base, ft))
            print(f"  run {r + 1} {label:9s} {runs[label][-1][0]:7.2f} s", flush=True)
    return runs


def gbs(rs: list[tuple[float, int]]) -> float:
    """Throughput of the best run: output bytes / seconds."""
    return rs[0][1] / min(s for s, _ in rs) / GB


def median_s(rs: list[tuple[float, int]]) -> float:
    return statistics.median(s for s, _ in rs)


def report(runs: dict[str, list], rss: dict[str, dict], largest_shard: int) -> None:
    cp, cp_median = gbs(runs["cp"]), median_s(runs["cp"])
    print(f"\n{'method':14s} {'best s':>7s} {'median s':>8s} {'GB/s':>6s} {'vs cp':>6s} {'vs cp (med)':>11s} "
          f"{'imports MiB':>11s} {'peak MiB':>8s} {'peak-imp':>8s}")  # fmt: skip
    for label, rs in runs.items():
        mib = [v / 2**20 for v in rss[label].values()] if label in rss else []
        mem = f"{mib[0]:11.0f} {mib[1]:8.0f} {mib[1] - mib[0]:8.0f}" if mib else ""
        print(f"{label:14s} {min(s for s, _ in rs):7.2f} {median_s(rs):8.2f} "
              f"{gbs(rs):6.2f} {gbs(rs) / cp:5.2f}x {cp_median / median_s(rs):10.2f}x {mem}")  # fmt: skip
    print("sorted runs, s: " + "; ".join(
        f"{label} " + " ".join(f"{s:.2f}" for s in sorted(s for s, _ in rs)) for label, rs in runs.items()
    ))  # fmt: skip
    budget = largest_shard + (256 << 20)
    print(
        f"\nlargest shard {largest_shard / 2**20:.0f} MiB; budget (shard + 256 MiB) {budget / 2**20:.0f} MiB"
    )
    for label in ("taia", "taia-ref"):
        ratio, m = gbs(runs[label]) / cp, rss[label]
        print(f"verdict {label}: speed {ratio:.3f}x cp -> {'PASS' if ratio >= 0.8 else 'MISS'} (>= 0.8x); "
              f"peak-imports {'PASS' if m['peak'] - m['imports'] <= budget else 'MISS'}; "
              f"raw peak {'PASS' if m['peak'] <= budget else 'MISS'}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=1.2, help="size of each checkpoint (bf16)")
    ap.add_argument("--shard-mb", type=int, default=300, help="target shard size")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per method; the best is reported")
    ap.add_argument("--workdir", type=Path, help="where to build the data (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic checkpoints")
    ap.add_argument("--no-half", action="store_true", help="skip the fractional (fp32) spec")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="taia-bench-", dir=args.workdir))
    try:
        bench(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


def bench(work: Path, args: argparse.Namespace) -> None:
    cfg = llama_config(args.size_gb)
    shards = split_shards(param_shapes(cfg), args.shard_mb)
    base, ft = work / "base", work / "finetuned"
    t0 = time.perf_counter()
    build_checkpoint(base, cfg, shards, seed=0)
    build_checkpoint(ft, cfg, shards, seed=1)
    largest = max(p.stat().st_size for p in ft.glob("*.safetensors"))
    print(f"built 2 x {dir_bytes(ft) / GB:.2f} GB ({cfg.num_hidden_layers} layers, {len(shards)} shards) "
          f"in {time.perf_counter() - t0:.1f} s; builder peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)  # fmt: skip
    warm(base, ft)
    apply_checkpoint(base, ft, work / "out-warmup", load_spec("taia"))  # first-call imports, not timed
    shutil.rmtree(work / "out-warmup")
    runs = run_timings(["cp", "taia", "taia-ref", *TRUST], args.repeat, work, base, ft)
    # The fp32 path churns memory that slows whichever run follows it, so it is timed on its own.
    if not args.no_half:
        runs |= run_timings(["half"], args.repeat, work, base, ft)
    rss = {label: child_rss(label, work, base, ft) for label in ("taia", "taia-ref", "half") if label in runs}
    report(runs, rss, largest)


if __name__ == "__main__":
    main()
