"""Benchmark `taia train` (taia.train.train) against a plain TRL SFTTrainer + PEFT script, same process.

Both sides train the same LoRA (r=16, α=32, dropout 0.05 on q/k/v/o/gate/up/down of every layer) on the
same checkpoint (SmolLM2-135M-Instruct, fp32 on CPU), the same prompt/completion rows built from the
same shuffled alpaca subset, with the same SFTConfig values (lr, cosine schedule, warmup, micro batch,
accumulation, max_length, seed, logging every step, no bf16, no pinned memory, no activation
checkpointing, no checkpoint saving). Throughput = TRL's `num_tokens` (non-pad input tokens seen) /
seconds of `trainer.train()`; the end-to-end wall time of the whole call / script body is a second,
informational ratio. After one untimed warm-up run of each side, rounds alternate the order (taia, plain,
then plain, taia, ...) and the ratio taia/plain is reported per round and as the median. Both sides must
log the same tokens per step and the same loss at every step (same rows, same seeds): else it warns.

A shared 2-core VM is noisy (another job taking one core can triple a 2-thread run's time), so the same
clock, wrapped around both sides' `trainer.train()` and every optimizer step, also records the CPU time
other processes used meanwhile; each round first waits (up to --quiet-wait s) for a quiet machine; and a
"best steps" ratio takes each step's fastest time over a side's runs (every run sees the same rows).
`--lockstep` runs each round's two trainings in two threads of this process that take turns one
optimizer step at a time (each side keeps its own RNG state), so the paired steps are seconds apart
rather than minutes; throughput is then tokens / the sum of a side's own step times.

    python benchmarks/train_throughput.py [--steps 8] [--batch 8] [--micro-batch 4] [--max-length 512]
        [--limit 256] [--rounds 2] [--lockstep] [--quiet-wait 300] [--checkpoint] [--json PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import itertools
import json
import os
import platform
import random
import resource
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import peft
import torch
import transformers
import trl
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
from trl import SFTConfig, SFTTrainer

from taia.data.mixing import mix
from taia.io.rows import data_root
from taia.models import materialize
from taia.train import TrainConfig, train
from taia.train.chat import prepare

MODEL = "smollm2-135m-instruct"
DATA = "alpaca_gpt4/alpaca_en_demo.json"
TARGET = 0.95
SIDES = ("taia", "plain")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_TICK = os.sysconf("SC_CLK_TCK")
_M_ARENA_MAX = -8  # glibc mallopt parameter
_CTX = threading.local()  # per training thread: .lockstep (Lockstep | None), .side, .result


def cpu_snapshot() -> tuple[float, float, float, float]:
    """(wall, this process's CPU s, the whole machine's busy CPU s, steal s) now."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]  # user nice system irq softirq
    own = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), own.ru_utime + own.ru_stime, busy / _TICK, fields[7] / _TICK


def _delta(before: tuple[float, ...], after: tuple[float, ...]) -> dict[str, float]:
    wall, own, busy, steal = (b - a for a, b in zip(before, after, strict=True))
    return {"seconds": wall, "own_cpu": own, "others_cpu": busy - own, "steal": steal}


class Lockstep:
    """Two trainings in two threads of this process, taking turns one optimizer step at a time.

    Only the thread holding the turn runs, so each has both cores, as when alone. Dropout draws from the
    process-global RNGs; each side's state is put aside when it gives the turn and restored when it gets
    it back, so both see the random numbers (and losses) of a run on its own.
    """

    def __init__(self, first: str, second: str) -> None:
        self._cond = threading.Condition()
        self._turn = first
        self._other = {first: second, second: first}
        self._done: set[str] = set()
        self._rng: dict[str, tuple[Any, Any, Any]] = {}
        self.waited = dict.fromkeys((first, second), 0.0)

    def take(self, side: str) -> None:
        start = time.perf_counter()
        with self._cond:
            self._cond.wait_for(lambda: self._turn == side or self._other[side] in self._done)
        self.waited[side] += time.perf_counter() - start
        if side in self._rng:
            torch_state, py_state, np_state = self._rng.pop(side)
            torch.set_rng_state(torch_state)
            random.setstate(py_state)
            np.random.set_state(np_state)

    def give(self, side: str) -> None:
        self._rng[side] = (torch.get_rng_state(), random.getstate(), np.random.get_state())
        with self._cond:
            self._turn = self._other[side]
            self._cond.notify_all()

    def finish(self, side: str) -> None:
        with self._cond:
            self._done.add(side)
            self._turn = self._other[side]
            self._cond.notify_all()


class StepClock(TrainerCallback):
    """Each optimizer step's clock: from the end of the previous one (or the start of training) to its
    own end, so it holds data loading and logging too; with a Lockstep, the turn changes hands here."""

    def __init__(self, lockstep: Lockstep | None, side: str) -> None:
        self.lockstep, self.side = lockstep, side
        self.steps: list[dict[str, float]] = []
        self._start = cpu_snapshot()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = cpu_snapshot()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.append(_delta(self._start, cpu_snapshot()))
        if self.lockstep is not None:
            self.lockstep.give(self.side)
            self.lockstep.take(self.side)
        self._start = cpu_snapshot()


def install_probe() -> None:
    """Wrap SFTTrainer.train, for both sides alike: whole-run and per-step clocks, and what else ran.

    taia builds its SFTTrainer inside `train(cfg)`; a class-level wrapper is the one way to put the same
    clocks around both sides' `trainer.train()` (and to add the same StepClock callback to both).
    "others" = the machine's busy CPU time minus this process's: another job on this 2-core VM slows
    2-thread training far more than its share, so every run and step says how much of it there was.
    """
    original = SFTTrainer.train

    @functools.wraps(original)
    def timed(trainer: Any, *args: Any, **kwargs: Any) -> Any:
        clock = StepClock(getattr(_CTX, "lockstep", None), getattr(_CTX, "side", ""))
        trainer.add_callback(clock)
        before = cpu_snapshot()
        try:
            return original(trainer, *args, **kwargs)
        finally:
            seen = [0] + [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e]
            _CTX.result = {
                "probe": _delta(before, cpu_snapshot()),
                "step_clock": clock.steps,
                "step_tokens": [b - a for a, b in itertools.pairwise(seen)],
                "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
            }

    SFTTrainer.train = timed  # type: ignore[method-assign]


def wait_for_quiet(limit_s: float, window_s: float = 3.0) -> float:
    """Wait (at most `limit_s`) until other processes use < 0.1 core over a window; the seconds waited."""
    start = time.perf_counter()
    while True:
        before = cpu_snapshot()
        time.sleep(window_s)
        d = _delta(before, cpu_snapshot())
        waited = time.perf_counter() - start
        if d["others_cpu"] < 0.1 * d["seconds"] or waited >= limit_s:
            return waited


@dataclass(frozen=True)
class Setup:
    """The hyper-parameters both sides share (taia's defaults where the run does not need smaller ones)."""

    steps: int = 8
    batch: int = 8
    micro_batch: int = 4
    max_length: int = 512
    limit: int = 256
    seed: int = 42
    lr: float = 2e-4
    warmup: float = 0.03
    scheduler: str = "cosine"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    checkpoint: bool = False  # True: both sides save one Trainer checkpoint, at the last step


def alpaca_rows(path: Path, seed: int, limit: int) -> list[dict[str, Any]]:
    """As a hand-written script would: seeded shuffle, first `limit`, user turn = instruction\\ninput."""
    records = json.loads(path.read_text())
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    rows = []
    for i in order[:limit]:
        rec = records[i]
        user = "\n".join(p for p in (rec["instruction"], rec.get("input") or "") if p)
        rows.append(
            {
                "prompt": [{"role": "user", "content": user}],
                "completion": [{"role": "assistant", "content": rec["output"]}],
            }
        )
    return rows


def run_taia(s: Setup, data_file: Path, out: Path) -> dict[str, Any]:
    """`taia train` through its Python entry point; `seconds` is its own timing of `trainer.train()`."""
    cfg = TrainConfig(
        model=MODEL,
        data=[str(data_file)],
        out=str(out),
        method="lora",
        lora={"r": s.r, "alpha": s.alpha, "dropout": s.dropout},
        lr=s.lr,
        max_steps=s.steps,
        batch_size=s.batch,
        micro_batch_size=s.micro_batch,
        max_length=s.max_length,
        warmup=s.warmup,
        scheduler=s.scheduler,
        seed=s.seed,
        limit=s.limit,
        logging_steps=1,
        # save_steps > max_steps alone is not enough: Transformers saves at the last step whenever
        # save_strategy is "steps", so switch saving off as the baseline does (or save at the end on both).
        save_steps=float(s.steps),
        trainer_args={} if s.checkpoint else {"save_strategy": "no"},
        activation_checkpointing=False,
    )
    start = time.perf_counter()
    report = train(cfg)
    wall = time.perf_counter() - start
    return {
        "tokens": report["tokens"],
        "seconds": report["seconds"],
        "wall": wall,
        "steps": report["steps"],
        "trainable": sum(report["trained"]["trainable"].values()),
    }


def run_plain(s: Setup, model_dir: Path, data_file: Path, out: Path) -> dict[str, Any]:
    """The baseline: what one writes by hand with TRL + PEFT for the same run."""
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    dataset = Dataset.from_list(alpaca_rows(data_file, s.seed, s.limit))
    set_seed(s.seed)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    peft_config = LoraConfig(
        r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    save: dict[str, Any] = {"save_strategy": "no"}
    if s.checkpoint:
        save = {"save_strategy": "steps", "save_steps": s.steps, "save_total_limit": 2}
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        learning_rate=s.lr,
        num_train_epochs=1.0,
        max_steps=s.steps,
        lr_scheduler_type=s.scheduler,
        warmup_steps=s.warmup,
        per_device_train_batch_size=s.micro_batch,
        gradient_accumulation_steps=s.batch // s.micro_batch,
        max_length=s.max_length,
        packing=False,
        seed=s.seed,
        data_seed=s.seed,
        completion_only_loss=True,
        weight_decay=0.0,
        logging_steps=1,
        report_to="none",
        bf16=False,
        dataloader_pin_memory=False,
        activation_checkpointing=False,
        **save,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    trainer.save_model(str(out))
    wall = time.perf_counter() - start
    return {
        "tokens": next(e["num_tokens"] for e in reversed(trainer.state.log_history) if "num_tokens" in e),
        "seconds": seconds,
        "wall": wall,
        "steps": trainer.state.global_step,
        "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }


def check_same_rows(s: Setup, data_file: Path, model_dir: Path) -> None:
    """The baseline's hand-written rows must be exactly the prompt/completion rows taia trains on."""
    mixture = mix(TrainConfig(data=[str(data_file)], out="-").data, data_root(), s.seed, s.limit)
    prepared = prepare(mixture.conversations, AutoTokenizer.from_pretrained(str(model_dir)))
    if prepared.rows != alpaca_rows(data_file, s.seed, s.limit) or not prepared.completion_only_loss:
        raise SystemExit("the baseline's rows differ from taia's: the comparison would not be fair")


@dataclass(frozen=True)
class Paths:
    model_dir: Path
    data_file: Path
    tmp: Path


def run_one(side: str, s: Setup, paths: Paths, tag: str, lockstep: Lockstep | None = None) -> dict[str, Any]:
    """One training of one side; with a Lockstep, in the calling thread while the other side's runs."""
    _CTX.lockstep, _CTX.side = lockstep, side
    out = paths.tmp / f"{side}-{tag.replace(' ', '-')}"
    print(f"\n=== {side} ({tag}) ===", flush=True)
    if side == "taia":
        res = run_taia(s, paths.data_file, out)
    else:
        res = run_plain(s, paths.model_dir, paths.data_file, out)
    res.update(_CTX.result, torch_threads=torch.get_num_threads())
    if lockstep is not None:  # its own steps only: train() and the wall clock also ran the other side
        res["seconds"] = sum(c["seconds"] for c in res["step_clock"])
        res["wall"] -= lockstep.waited[side]
    res["tokens_per_second"] = res["tokens"] / res["seconds"]
    gc.collect()
    return res


def run_round(s: Setup, paths: Paths, tag: str, order: tuple[str, str], lockstep: bool) -> dict[str, Any]:
    if not lockstep:
        return {side: run_one(side, s, paths, tag) for side in order}
    turns = Lockstep(*order)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def worker(side: str) -> None:
        turns.take(side)
        turns.waited[side] = 0.0  # waiting for the first turn is not part of this side's run
        try:
            results[side] = run_one(side, s, paths, tag, turns)
        except BaseException as e:  # noqa: BLE001 — re-raised in the main thread below
            errors.append(e)
        finally:
            turns.finish(side)

    threads = [threading.Thread(target=worker, args=(side,), name=side) for side in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return {side: results[side] for side in order}


def best_steps(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each step's fastest time over one side's runs (same rows, same tokens in every run): the
    throughput that side reaches when the machine leaves it alone; noise only ever adds time."""
    steps = min(len(r["step_clock"]) for r in runs)
    best = [min(r["step_clock"][k]["seconds"] for r in runs) for k in range(steps)]
    tokens = sum(runs[0]["step_tokens"][:steps])
    quiet = [c["others_cpu"] < 0.1 * c["seconds"] for r in runs for c in r["step_clock"]]
    return {
        "tokens": tokens,
        "seconds": sum(best),
        "tokens_per_second": tokens / sum(best),
        "quiet_steps": f"{sum(quiet)}/{len(quiet)}",
    }


def fmt_row(rnd: str, side: str, r: dict[str, Any]) -> str:
    steps = r["step_clock"]
    own, others = sum(c["own_cpu"] for c in steps), sum(c["others_cpu"] for c in steps)
    return (
        f"| {rnd} | {side} | {r['tokens']:.0f} | {r['seconds']:.2f} | {r['tokens_per_second']:.1f} | "
        f"{own:.0f} | {others:.0f} | {r['wall']:.2f} | {r['losses'][0]:.4f} | {r['losses'][-1]:.4f} |"
    )


def report(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the tables; return the ratios."""
    ratios = [r["taia"]["tokens_per_second"] / r["plain"]["tokens_per_second"] for r in rounds]
    wall_ratios = [r["plain"]["wall"] / r["taia"]["wall"] for r in rounds]  # > 1: taia is faster end to end
    median, wall_median = statistics.median(ratios), statistics.median(wall_ratios)
    best = {side: best_steps([r[side] for r in rounds]) for side in SIDES}
    best_ratio = best["taia"]["tokens_per_second"] / best["plain"]["tokens_per_second"]
    print(
        "\n| round | side | tokens | train s | tokens/s | own CPU s | others' CPU s | end-to-end s "
        "| first loss | last loss |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(rounds, 1):
        for side in r:
            print(fmt_row(str(i), side, r[side]))
    print("\n| round | tokens/s ratio taia/plain | end-to-end ratio plain/taia (time) |")
    print("|---|---:|---:|")
    for i, (x, w) in enumerate(zip(ratios, wall_ratios, strict=True), 1):
        print(f"| {i} | {x:.3f} | {w:.3f} |")
    print(f"| median | **{median:.3f}** | {wall_median:.3f} |")
    print(
        "\n| best step of each side's runs | tokens | seconds | tokens/s | quiet steps (others < 0.1 core) |"
    )
    print("|---|---:|---:|---:|---:|")
    for side, b in best.items():
        speed = f"{b['tokens']:.0f} | {b['seconds']:.2f} | {b['tokens_per_second']:.1f}"
        print(f"| {side} | {speed} | {b['quiet_steps']} |")
    print(f"| ratio taia/plain | | | **{best_ratio:.3f}** | |")
    for i, r in enumerate(rounds, 1):
        for key in ("tokens", "steps", "trainable", "step_tokens", "losses"):
            if r["taia"][key] != r["plain"][key]:
                print(f"WARNING round {i}: {key} differ: taia {r['taia'][key]} vs plain {r['plain'][key]}")
    print(f"\ntokens/s ratio taia/plain, median of {len(ratios)} rounds: {median:.3f}; best steps: "
          f"{best_ratio:.3f} — target ≥ {TARGET}: {'met' if median >= TARGET else 'NOT met'}")  # fmt: skip
    return {
        "ratios": ratios,
        "median_ratio": median,
        "end_to_end_ratios": wall_ratios,
        "median_end_to_end_ratio": wall_median,
        "best_steps": best,
        "best_steps_ratio": best_ratio,
        "target": TARGET,
        "met": median >= TARGET,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    ap.add_argument("--batch", type=int, default=8, help="global batch (rows per optimizer step)")
    ap.add_argument("--micro-batch", type=int, default=4, help="rows per forward/backward")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--limit", type=int, default=256, help="rows of the shuffled alpaca demo set")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lockstep", action="store_true", help="the two sides of a round take turns per step")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=300,
        help="before each round, wait up to this many seconds for other processes to use < 0.1 core (0: off)",
    )
    ap.add_argument("--checkpoint", action="store_true", help="both sides save a checkpoint at the end")
    ap.add_argument("--json", type=Path, help="write the results here")
    a = ap.parse_args()
    if a.batch % a.micro_batch:
        ap.error("--batch must be a multiple of --micro-batch")
    s = Setup(a.steps, a.batch, a.micro_batch, a.max_length, a.limit, checkpoint=a.checkpoint)
    root = data_root()
    if root is None or not (root / DATA).is_file():
        raise SystemExit(f"{DATA} not found under the data root ({root}); set TAIA_DATA_DIR")
    model_dir = materialize(MODEL)
    check_same_rows(s, root / DATA, model_dir)
    install_probe()
    if a.lockstep:  # one malloc arena for both threads, else each keeps its own freed GBs resident (20 GB)
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, 1)

    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="taia-train-bench-") as tmp:
        paths = Paths(model_dir, root / DATA, Path(tmp))
        warm = replace(s, steps=1, limit=s.batch)  # imports, first allocations, kernel selection: untimed
        run_round(warm, paths, "warm-up", SIDES, a.lockstep)
        for i in range(a.rounds):
            waited = wait_for_quiet(a.quiet_wait) if a.quiet_wait > 0 else 0.0
            print(f"\n--- round {i + 1}: waited {waited:.0f} s for a quiet machine", flush=True)
            order = SIDES if i % 2 == 0 else SIDES[::-1]
            rounds.append(run_round(s, paths, f"round {i + 1}", order, a.lockstep))
            rounds[-1]["waited_for_quiet"] = waited

    summary = report([{side: r[side] for side in r if side in SIDES} for r in rounds])
    if a.json:
        result = {
            "setup": asdict(s),
            "lockstep": a.lockstep,
            "rounds": rounds,
            **summary,
            "machine": {"nproc": os.cpu_count(), "torch_threads": torch.get_num_threads()},
            "versions": {
                "python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "trl": trl.__version__, "peft": peft.__version__,
                "datasets": datasets.__version__,
            },
        }  # fmt: skip
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
