"""GPU check: what a one-GPU day should measure, in one script printed as one table (meant to take under
8 min on one GPU; it took 114 s on an H200, see benchmarks/README.md).

1. **Model.** A random-init Llama of TinyLlama-1.1B's shape (22 layers, hidden 2048, GQA 32/4, untied
   head, vocab 32000) built directly on the device in bf16 (fp32 on CPU), saved with a character-level
   ChatML tokenizer: no download. `--tiny`: 2 layers, hidden 64, vocab 128.
2. **Train.** `taia.train` (= `taia train`): LoRA on every linear layer, `--steps` steps of batch 8 on
   synthetic instruction rows packed into 512-token sequences (64 with `--tiny`); tokens/s is TRL's
   token count over the seconds of `trainer.train()`.
3. **Generation.** `taia eval`'s HF backend (`HFBackend.generate`: length-sorted, left-padded batches)
   on the trained adapter's vanilla variant: the same prompts at batch 1 and batched, greedy; the ratio
   of their times and the share of identical texts.
4. **Variants.** base / vanilla / TAIA / TAIF on one short generation workload: one `load_variants` and a
   `switch` per variant, against a fresh model + adapter load and `apply_model` per variant; the outputs
   must match variant by variant.
5. **Merged apply.** `taia.apply` (= `taia apply --format merged`) of the adapter onto the base.
6. **Image** (checked first, so a missing package fails in seconds): every requirement of taia and of
   the wheels in `benchmarks/gpu-wheels.txt` is listed there or in the GPU image (`IMAGE_HAS`, from the
   device docs), and every installed version satisfies every such requirement.

The GPU image lacks some of taia's packages; they travel as the wheels in `benchmarks/gpu-wheels.txt`
(how to fetch, carry and install them: there and in benchmarks/README.md).

    PYTHONPATH=/tmp/site:src python3 benchmarks/gpu_check.py [--json PATH]   # on the GPU: cuda, ~1.1B
    python benchmarks/gpu_check.py --device cpu --tiny               # the same path in seconds (slow test)
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

WHEELS = Path(__file__).with_name("gpu-wheels.txt")
WHEEL_LIMIT = 64 * 2**20  # bytes a device call carries
# What the GPU image holds of taia's (transitive) needs: docs of the device (KINDS.md, "Python packages
# already there", read 2026-11-17; its transformers is 5.17.0, older than taia's >= 5.23).
IMAGE_HAS = (
    "torch", "transformers", "peft", "accelerate", "numpy", "packaging", "pandas", "pyarrow", "psutil",
    "pyyaml", "jinja2", "huggingface-hub", "filelock", "fsspec", "tqdm", "xxhash", "safetensors",
    "tokenizers", "regex", "typer", "typing-extensions", "python-dateutil", "six", "requests", "matplotlib",
)  # fmt: skip
NOT_ON_THIS_PATH = {"gguf"}  # taia's GGUF import of the embedded model: not used by this script
VARIANTS = ("base", "vanilla", "taia", "taif")
SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=128, max_position_embeddings=512),
}  # fmt: skip
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def listed_wheels(path: Path = WHEELS) -> list[str]:
    """The `name==version` lines of gpu-wheels.txt."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def wheel_bytes(directory: Path) -> int:
    """Total size of the .whl files in `directory`; exits when over the carry limit."""
    total = sum(p.stat().st_size for p in directory.glob("*.whl"))
    if total > WHEEL_LIMIT:
        sys.exit(f"gpu_check: wheels in {directory} total {total / 2**20:.1f} MiB > 64 MiB")
    return total


def fetch_wheels(dest: Path, python_version: str) -> int:
    """pip download --no-deps every listed wheel (CPython `python_version`, manylinux x86_64)."""
    platforms = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    cmd += ["--python-version", python_version, "--implementation", "cp"]
    cmd += [a for p in platforms for a in ("--platform", p)]
    subprocess.run([*cmd, *listed_wheels()], check=True)
    return wheel_bytes(dest)


def recorded_bytes(path: Path = WHEELS) -> int:
    """The sizes recorded in gpu-wheels.txt's comments (`# 948,205`), summed."""
    lines = "\n".join(line for line in path.read_text().splitlines() if "==" in line)
    return sum(int(size.replace(",", "")) for size in re.findall(r"#\s*([\d,]+)\b", lines))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(name: str, requires: Callable[[str], list[str] | None] = md.requires) -> list[Any]:
    """`name`'s declared requirements that apply here (markers evaluated, extras left out)."""
    from packaging.requirements import Requirement

    try:
        reqs = [Requirement(r) for r in requires(name) or []]
    except md.PackageNotFoundError:
        return []
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def taia_requirements() -> list[Any]:
    """taia's own dependencies, from pyproject.toml (taia runs from src/ there, not installed)."""
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ImportError:  # Python 3.10: no TOML reader in the standard library; skip this part
        return []
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def image_check(
    requires: Callable[[str], list[str] | None] = md.requires,
    installed: Callable[[str], str | None] | None = None,
) -> dict[str, Any]:
    """Is the wheel list complete, and do the installed versions fit? Every requirement of taia (those it
    uses on this path) and of a listed wheel must be listed or in the GPU image; every installed version
    must satisfy every such requirement's specifier. `requires` / `installed` read package metadata
    (this environment's by default; a test passes its own, so the verdict never depends on what the
    package index served the day the venv was made)."""
    version = installed or _installed
    listed = {_norm(w.split("==")[0]) for w in listed_wheels()}
    have = listed | {_norm(n) for n in IMAGE_HAS}
    needs = [r for r in taia_requirements() if _norm(r.name) not in NOT_ON_THIS_PATH]
    needs += [r for name in sorted(listed) for r in _requirements(name, requires)]
    missing = sorted({_norm(r.name) for r in needs} - have)
    unmet = sorted(
        f"{r.name} {version(r.name)} (needs {r.specifier})"
        for r in needs
        if (v := version(r.name)) is None or not r.specifier.contains(v, prereleases=True)
    )
    return {"wheels_missing_a_requirement": ", ".join(missing) or "none",
            "versions_unmet": "; ".join(sorted(set(unmet))) or "none"}  # fmt: skip


def listed_not_installed() -> list[str]:
    """Listed wheels whose installed version differs (`transformers 5.25.0 installed, 5.24.0 listed`):
    there the installed metadata says nothing about the listed wheel's requirements."""
    out = []
    for wheel in listed_wheels():
        name, want = wheel.split("==")
        if (have := _installed(name)) != want:
            out.append(f"{name} {have} installed, {want} listed")
    return out


def _installed(name: str) -> str | None:
    return next((d.version for d in md.distributions(name=name)), None)


def tokenizer(vocab_size: int) -> Any:
    """Character-level ChatML tokenizer; every model id decodes (fillers past the characters)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"] + [chr(i) for i in range(32, 127)] + ["\n"]
    tokens += [f"<x{i}>" for i in range(vocab_size - len(tokens))]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"],
    )  # fmt: skip
    out.chat_template = CHATML
    return out


def build_model(directory: Path, shape: str, device: str) -> dict[str, Any]:
    """Random-init Llama built on `device` (bf16 on a GPU, fp32 on CPU), saved with its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = torch.bfloat16 if device != "cpu" else torch.float32
    config = LlamaConfig(**SHAPES[shape], tie_word_embeddings=False, dtype=dtype)
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(directory)
    tokenizer(config.vocab_size).save_pretrained(directory)
    del model
    return {"parameters": params, "dtype": str(dtype).removeprefix("torch."), "seconds": _since(start)}


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Synthetic alpaca rows: sums, reversals, repeats."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b, word = rng.randint(1, 999), rng.randint(1, 999), "".join(rng.sample("abcdefghij", 5))
        out.append(
            [
                {"instruction": f"Add {a} and {b}.", "input": "", "output": f"{a} + {b} = {a + b}"},
                {"instruction": "Reverse the word.", "input": word, "output": word[::-1]},
                {"instruction": f"Repeat {word} twice.", "input": "", "output": f"{word} {word}"},
            ][i % 3]
        )  # fmt: skip
    return out


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 2)


def train_lora(model_dir: Path, work: Path, steps: int, max_length: int) -> tuple[Path, dict[str, Any]]:
    from taia.train import TrainConfig, train

    data = work / "train.jsonl"
    per_sequence = max(1, max_length // 24)  # rows are ~25-50 tokens: enough to fill every packed sequence
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(steps * 8 * per_sequence)))
    cfg = TrainConfig(
        model=str(model_dir), data=[{"path": str(data)}], out=str(work / "lora"), max_steps=steps,
        batch_size=8, micro_batch_size=8, max_length=max_length, packing=True, logging_steps=1,
        warmup=0.0, save_steps=10 * steps,  # no checkpoint inside the timed run
    )  # fmt: skip
    report = train(cfg)
    keys = ("steps", "tokens", "seconds", "tokens_per_second", "first_loss", "last_loss")
    return Path(cfg.out), {k: report[k] for k in keys}


def prompts(tok: Any, n: int) -> list[str]:
    """Chat-templated questions of varied length (so batches need padding)."""
    qs = [f"Add {i * 37 % 900} and {i * 11 % 90}." + " Explain." * (i % 4) for i in range(n)]
    return [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in qs
    ]


def _timed(fn: Callable[[], Any], device: str) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _load_in_place(model_dir: Path, adapter: Path, device: str) -> Any:
    from taia.eval.variants import load_variants, resolve_specs

    variants = load_variants(model_dir, adapter, None, resolve_specs(list(VARIANTS)), _dtype(device))
    variants.model.to(device)
    return variants


def _dtype(device: str) -> Any:
    return "auto" if device != "cpu" else torch.float32  # as `taia eval` loads: checkpoint dtype on a GPU


def generation(model_dir: Path, adapter: Path, device: str, n: int, new_tokens: int) -> dict[str, Any]:
    """HFBackend on the vanilla variant: batch 1 vs one batch of all `n` prompts."""
    from transformers import AutoTokenizer

    from taia.eval.backends.hf import HFBackend

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = _load_in_place(model_dir, adapter, device).switch("vanilla")
    ps = prompts(tok, n)
    single, batched = HFBackend(model, tok, batch_size=1), HFBackend(model, tok, batch_size=n)
    batched.generate(ps[:2], 4)  # warm-up (kernels, allocator)
    one, t1 = _timed(lambda: single.generate(ps, new_tokens), device)
    many, tn = _timed(lambda: batched.generate(ps, new_tokens), device)
    same = sum(a == b for a, b in zip(one, many, strict=True))
    return {"prompts": n, "new_tokens": new_tokens, "batch1_s": round(t1, 2), "batched_s": round(tn, 2),
            "speedup": round(t1 / tn, 2), "identical": f"{same}/{n}"}  # fmt: skip


def _workload(model_dir: Path, device: str) -> Callable[[Any], list[str]]:
    from transformers import AutoTokenizer

    from taia.eval.backends.hf import HFBackend

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ps = prompts(tok, 8)
    return lambda model: HFBackend(model, tok, batch_size=8).generate(ps, 16)


def variants_in_place(model_dir: Path, adapter: Path, device: str) -> tuple[dict[str, list[str]], float]:
    run = _workload(model_dir, device)
    start = time.perf_counter()
    variants = _load_in_place(model_dir, adapter, device)
    out = {name: run(variants.switch(name)) for name in VARIANTS}
    _sync(device)
    seconds = time.perf_counter() - start
    del variants
    _free(device)
    return out, seconds


def variants_reloaded(model_dir: Path, adapter: Path, device: str) -> tuple[dict[str, list[str]], float]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from taia.apply.model import apply_model

    run = _workload(model_dir, device)
    out, start = {}, time.perf_counter()
    for name in VARIANTS:
        base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=_dtype(device))
        model = PeftModel.from_pretrained(base, str(adapter)).eval().to(device)
        apply_model(model, name)
        out[name] = run(model)
        del base, model
        _free(device)
    _sync(device)
    return out, time.perf_counter() - start


def variant_switching(model_dir: Path, adapter: Path, device: str) -> dict[str, Any]:
    a, t_in = variants_in_place(model_dir, adapter, device)
    b, t_re = variants_reloaded(model_dir, adapter, device)
    same = [v for v in VARIANTS if a[v] == b[v]]
    return {"in_place_s": round(t_in, 2), "reloads_s": round(t_re, 2), "reload_over_in_place":
            round(t_re / t_in, 2), "same_outputs": f"{len(same)}/{len(VARIANTS)}"}  # fmt: skip


def merged_apply(model_dir: Path, adapter: Path, work: Path) -> dict[str, Any]:
    from taia.apply import apply
    from taia.config import ApplyConfig

    out = work / "merged"
    start = time.perf_counter()
    report = apply(ApplyConfig(base=str(model_dir), adapter=str(adapter), out=str(out), format="merged"))
    seconds = _since(start)
    size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    kept = report["groups"]["attn"]["kept"]["tensors"]
    return {"seconds": seconds, "gb_written": round(size / 1e9, 3), "attn_tensors_kept": kept}


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def environment(device: str) -> dict[str, Any]:
    import transformers

    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    return {"device": name, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}  # fmt: skip


def run(device: str, tiny: bool, steps: int, work: Path) -> dict[str, Any]:
    start = time.perf_counter()
    model_dir = work / "base"
    results: dict[str, Any] = {"env": environment(device)}
    results["model"] = build_model(model_dir, "tiny" if tiny else "1b", device)
    adapter, results["train"] = train_lora(model_dir, work, steps, 64 if tiny else 512)
    n, new = (4, 8) if tiny else (32, 64)
    results["generation"] = generation(model_dir, adapter, device, n, new)
    _free(device)
    results["variants"] = variant_switching(model_dir, adapter, device)
    results["apply_merged"] = merged_apply(model_dir, adapter, work)
    results["image"] = image_check()
    results["total_s"] = _since(start)
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| part | metric | value |", "|---|---|---|"]
    for part, values in results.items():
        for key, value in values.items() if isinstance(values, dict) else [("seconds", values)]:
            lines.append(f"| {part} | {key} | {value} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="2-layer model: the same path in seconds")
    ap.add_argument("--steps", type=int, default=20, help="LoRA training steps (batch 8)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--fetch-wheels", type=Path, metavar="DIR", help="only download gpu-wheels.txt to DIR")
    ap.add_argument("--python-version", default="3.12", help="the GPU image's Python, for --fetch-wheels")
    args = ap.parse_args(argv)
    if args.fetch_wheels:
        total = fetch_wheels(args.fetch_wheels, args.python_version)
        print(f"{len(listed_wheels())} wheels, {total / 2**20:.1f} MiB (limit 64 MiB) in {args.fetch_wheels}")
        return None
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; use --device cpu --tiny for the CPU run")
    problems = {k: v for k, v in image_check().items() if v != "none"}
    if problems:  # fail in seconds, not after building a 1B model
        sys.exit(f"gpu_check: {problems}")
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        results = run(args.device, args.tiny, args.steps, Path(tmp))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
