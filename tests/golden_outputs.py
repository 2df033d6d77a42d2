"""Golden outputs for a behaviour-preserving refactor (issue 15): every file `taia apply` (adapter, merged,
full checkpoint), `taia eval` and `taia search` write for tiny seeded models, compared byte for byte.

    python tests/golden_outputs.py make /tmp/before      # on the old commit
    python tests/golden_outputs.py make /tmp/after       # on the new one
    python tests/golden_outputs.py compare /tmp/before /tmp/after

`compare` reads JSON / JSONL / YAML files as data and drops only what legitimately differs between two runs
(wall times, dates, package versions, the output's own path); every other file must be equal byte for byte.
Not a pytest module: it needs two commits. Runs in about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).parent))

from conftest import chat_tokenizer, lora_adapter, perturbed, tiny_model

# Keys whose values differ between two runs of the same code: times, dates, versions, hosts.
VOLATILE = {
    "seconds", "wall_seconds", "wall_s", "started", "finished", "created", "date", "time", "timestamp",
    "versions", "version", "taia_version", "commit", "host", "elapsed", "tokens_per_second", "when", "at",
    "git_sha",
}  # fmt: skip
# Keys added since the golden baseline (issue 19: each sample row's `identity`, what produced the answer):
# dropped too, so that a tree from before compares; the identities themselves are tested by
# tests/test_eval_resume.py (content-based, so two fresh runs write the same ones).
ADDED = {"identity"}
MC_ROWS = [
    {"q": f"Which is number {i}?", "choices": [f"n{i}", f"m{i}", f"k{i}"], "label": i % 3, "uid": f"u{i}"}
    for i in range(12)
]
NUM_ROWS = [{"q": f"What is {i} plus {i}?", "a": str(2 * i), "uid": f"v{i}"} for i in range(6)]


def build(root: Path) -> dict[str, Path]:
    """Tiny llama base (with a ChatML tokenizer), a full fine-tune of it, a LoRA adapter, two task files."""
    paths = {k: root / k for k in ("base", "finetuned", "adapter")}
    tiny_model("llama").save_pretrained(paths["base"])
    chat_tokenizer().save_pretrained(paths["base"])
    perturbed(tiny_model("llama")).save_pretrained(paths["finetuned"])
    lora_adapter(tiny_model("llama")).save_pretrained(paths["adapter"])
    for name, kind, rows, fields in (
        ("pick", "mc", MC_ROWS, {"question": "q", "options": "choices", "answer": "label", "id": "uid"}),
        ("sums", "number", NUM_ROWS, {"question": "q", "answer": "a", "id": "uid"}),
    ):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        task = {"kind": kind, "data": f"{name}.jsonl", "fields": fields, "max_new_tokens": 6}
        (root / f"{name}.yaml").write_text(yaml.safe_dump(task))
        paths[name] = root / f"{name}.yaml"
    spec = {"groups": {"attn": {"lambda": 0.5}, "ffn": {"lambda": 1.0, "layers": [0, 0]}}}
    (root / "half.yaml").write_text(yaml.safe_dump(spec))
    paths["half"] = root / "half.yaml"
    return paths


def make(out: Path) -> None:
    from taia.cli import main

    m = build(out / "inputs")
    base = ["--base", str(m["base"])]
    runs = {
        "apply-adapter": [*base, "--adapter", str(m["adapter"]), "--spec", "taia"],
        "apply-adapter-half": [*base, "--adapter", str(m["adapter"]), "--spec", str(m["half"])],
        "apply-merged": [*base, "--adapter", str(m["adapter"]), "--spec", "taif", "--format", "merged"],
        "apply-full": [*base, "--finetuned", str(m["finetuned"]), "--spec", "taia"],
        "apply-full-half": [*base, "--finetuned", str(m["finetuned"]), "--spec", str(m["half"])],
    }
    for name, args in runs.items():
        assert main(["apply", *args, "--out", str(out / name)]) == 0, name
    tasks = f"{m['pick']},{m['sums']}"
    for name, src in (("eval-adapter", "--adapter"), ("eval-full", "--finetuned")):
        source = str(m["adapter"] if src == "--adapter" else m["finetuned"])
        args = ["--model", str(m["base"]), src, source, "--tasks", tasks,
                "--variants", "base,vanilla,taia,taif", "--batch-size", "4"]  # fmt: skip
        assert main(["eval", *args, "--out", str(out / name)]) == 0, name
    grid = ["grid.attn=[0,1]", "grid.ffn=[0,0.5]", "grid.ffn_depth=[1.0]"]
    args = [*base, "--adapter", str(m["adapter"]), "--dev-task", str(m["pick"]), "--dev-limit", "6",
            "--test-tasks", f"{m['pick']},{m['sums']}", "--batch-size", "4", *grid]  # fmt: skip
    assert main(["search", *args, "--out", str(out / "search")]) == 0


def _scrub(value: Any, roots: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, roots) for k, v in value.items() if k not in VOLATILE and k not in ADDED}
    if isinstance(value, list):
        return [_scrub(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:  # the two trees live in different dirs
            value = value.replace(root, "<ROOT>")
        value = re.sub(r"(git sha: `)[0-9a-f]{7,40}", r"\1<SHA>", value)  # reports print the commit
    return value


def _load(path: Path, root: Path) -> Any:
    roots = (str(root.resolve()), str(root))
    if path.suffix not in (".json", ".jsonl", ".yaml", ".yml", ".md", ".csv", ".txt", ".html"):
        return path.read_bytes()
    text = path.read_text()
    if path.suffix == ".json":
        return _scrub(json.loads(text), roots)
    if path.suffix == ".jsonl":
        return [_scrub(json.loads(line), roots) for line in text.splitlines() if line.strip()]
    if path.suffix in (".yaml", ".yml"):
        return _scrub(yaml.safe_load(text), roots)
    return _scrub(text, roots)


def compare(a: Path, b: Path) -> int:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    bad = [f"only in {a}: {p}" for p in sorted(files_a - files_b)]
    bad += [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    for rel in sorted(files_a & files_b):
        if _load(a / rel, a) != _load(b / rel, b):
            bad.append(f"differs: {rel}")
    print("\n".join(bad) or f"identical: {len(files_a)} files")
    return 1 if bad else 0


if __name__ == "__main__":
    # PEFT writes target_modules from a set: fix its order. One thread: the sum order of a matmul depends on
    # the thread count, and log-likelihoods (so choices and margins) differ in the last bits across counts.
    fixed = {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    if any(os.environ.get(k) != v for k, v in fixed.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **fixed})
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
