"""The parts of `eval_throughput.py` that compare against outside figures (issue 23).

1. **Cloze job vs lm-eval.** `--cloze-questions` CommonsenseQA dev questions (the seeded subset
   `taia eval --limit` picks), 5 options each, scored as the `standard` protocol's cloze
   ("Question: … Answer:" then " option text", acc_norm), SmolLM2-135M-Instruct fp32, base only, batch
   `--cloze-batch`, each side as its own whole process (imports, model load, scoring, writing results):
   `taia eval --variants base --protocol standard` vs `lm_eval run --model hf` on a task YAML of the same
   questions (written to a temp dir as JSONL: no hub access). The ratio is lm-eval's seconds over taia's.
2. **Matmul limit.** The GFLOP/s a `rows × hidden` by `hidden × intermediate` fp32 matmul (64 × 576 ×
   1536 for SmolLM2-135M at batch 64) reaches in this process, and from it the decode limit in tokens/s:
   GFLOP/s / (2 × parameters / 1e9), every parameter (the tied head counted once) doing one multiply-add
   per token. `eval_throughput.py` reports each generation run's tokens/s as a fraction of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from taia.eval.tasks import load_samples
from taia.io.rows import data_root

LETTERS = "ABCDE"
TASK_YAML = """task: taia_csqa_cloze
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {data}
validation_split: validation
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: " "
metric_list:
  - metric: acc_norm
"""


def matmul_limit(model: Any, rows: int = 64, repeats: int = 50) -> dict[str, float]:
    """GFLOP/s of a `rows × hidden × intermediate` fp32 matmul here, and the decode tokens/s it allows."""
    cfg = model.config
    a = torch.randn(rows, cfg.hidden_size)
    b = torch.randn(cfg.hidden_size, cfg.intermediate_size)
    for _ in range(5):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    seconds = (time.perf_counter() - start) / repeats
    gflops = 2 * rows * cfg.hidden_size * cfg.intermediate_size / seconds / 1e9
    per_token = 2 * sum(p.numel() for p in model.parameters()) / 1e9
    return {
        "rows": rows,
        "gflop_per_s": gflops,
        "gflop_per_token": per_token,
        "tokens_per_s": gflops / per_token,
    }


def write_lmeval_task(folder: Path, questions: int) -> Path:
    """The questions `taia eval --limit` picks, as a JSONL file and an lm-eval task YAML next to it."""
    samples = load_samples("commonsenseqa", data_root(), limit=questions, seed=0)
    rows = [
        {"question": s.question, "choices": list(s.options), "label": LETTERS.index(s.gold)} for s in samples
    ]
    data = folder / "csqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "taia_csqa_cloze.yaml").write_text(TASK_YAML.format(data=data))
    return folder


def _timed(cmd: list[str], clock: Any) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with clock() as c:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} {cmd[1]} failed:\n{proc.stderr[-3000:]}")
    return {"seconds": c.seconds, "others_cores": c.others}


def bench_cloze(model_dir: Path, questions: int, batch: int, rounds: int, clock: Any) -> dict[str, Any]:
    """Whole-process seconds of the cloze job, taia then lm-eval, `rounds` times (after one warm-up each)."""
    bindir = Path(sys.executable).parent
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="taia-bench-cloze-") as tmp:
        folder = write_lmeval_task(Path(tmp), questions)
        taia = [str(bindir / "taia"), "eval", "--model", str(model_dir), "--variants", "base"]
        taia += ["--tasks", "commonsenseqa", "--protocol", "standard", "--limit", str(questions)]
        taia += ["--batch-size", str(batch), "--overwrite", "--out"]
        lmeval = [str(bindir / "lm_eval"), "run", "--model", "hf", "--tasks", "taia_csqa_cloze"]
        lmeval += ["--model_args", f"pretrained={model_dir},dtype=float32", "--include_path", str(folder)]
        lmeval += ["--batch_size", str(batch), "--device", "cpu", "--output_path", f"{tmp}/lmeval"]
        for k in range(rounds + 1):  # round 0: warm-up (page cache, compiled kernels)
            a = _timed([*taia, f"{tmp}/taia"], clock)
            b = _timed(lmeval, clock)
            print(f"[cloze] round {k}: taia {a['seconds']:.1f} s, lm-eval {b['seconds']:.1f} s, "
                  f"others {a['others_cores']:.2f} / {b['others_cores']:.2f} cores", flush=True)  # fmt: skip
            if k:
                runs.append({"taia": a, "lm_eval": b, "ratio": b["seconds"] / a["seconds"]})
    return {"questions": questions, "batch": batch, "runs": runs}
