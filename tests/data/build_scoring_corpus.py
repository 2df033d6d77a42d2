"""Build tests/data/scoring_corpus.jsonl: model-style responses to real rows, with the reference's verdicts.

Each case is a response written in the formats the paper's prompts ask for ("Please format the final answer
at the end of the response as: The answer is {answer}.", "answer with option letter directly", chain of
thought) and the ways models stray from them, to a real row of /work/shared/data; its `gold` is exactly the
`Sample.gold` taia's loader gives that row (MATH rows also carry the `solution` the reference reads).

The verdicts come from the TAIA reference code itself (github pixas/TAIA_LLM, taia/eval/eval_em.py and
eval_advbench.py), run untouched OUTSIDE this project by a command you give: it reads one JSON object a line
on stdin, {"dataset": the reference's data set name, "line": {"text": …, "additional_info": {…}}} (the
row as the reference's generator stores it), calls that data set's scoring function, and writes one
{"verdict": bool, "crashed": bool, "error": str | null} a line. No reference code is in this file.

    PYTHONPATH=src python tests/data/build_scoring_corpus.py /work/shared/data \\
        "python /tmp/refenv/run_ref.py" > tests/data/scoring_corpus.jsonl

Rows: task, id, response, gold, solution (MATH only), reference_verdict (false where it crashed),
reference_crashed, reference_error (the exception it raised, else null).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from taia.eval.tasks import load_samples

sys.path.insert(0, str(Path(__file__).parent))
from scoring_responses import RESPONSES

# taia task → the reference's data set name (its scoring table's key)
DATASETS = {
    "gsm8k": "gsm8k", "svamp": "svamp", "math": "math", "math500": "math_500",
    "commonsenseqa": "commonsense_qa", "logiqa": "logiqa_en", "bbh": "bbh", "mmlu": "mmlu",
    "medqa": "mmedbench_en", "advbench": "advbench",
}  # fmt: skip


def raw_rows(root: Path) -> dict[str, list]:
    """The raw fields the reference reads that taia's gold rewrites: GSM8K's whole answer, SVAMP's float."""
    gsm8k = [json.loads(line) for line in (root / "gsm8k/test.jsonl").read_text().splitlines()]
    svamp = json.loads((root / "svamp/SVAMP.json").read_text())
    return {"gsm8k": gsm8k, "svamp": svamp}


def additional_info(task: str, sample, raw: dict[str, list]) -> dict:
    """The row's `additional_info` as the reference's data holds it (letters as taia's golds)."""
    index = int(sample.id.rsplit("/", 1)[1])
    if task == "gsm8k":
        return {"answer": raw["gsm8k"][index]["answer"]}
    if task == "svamp":
        return {"answer": raw["svamp"][index]["Answer"]}
    if task in ("math", "math500"):
        return {"solution": sample.meta["solution"]}
    if task == "bbh":
        return {"target": sample.gold}
    if task == "medqa":
        return {"answer_idx": sample.gold}
    return {"answer": sample.gold}


def cases(root: Path) -> list[dict]:
    raw = raw_rows(root)
    out = []
    for task, picks in RESPONSES.items():
        by_id = {s.id: s for s in load_samples(task, root)}
        for sample_id, responses in picks:
            sample = by_id[sample_id]
            for response in responses:
                info = additional_info(task, sample, raw)
                line = {"text": response.strip(), "additional_info": info}
                out.append(
                    {"task": task, "id": sample_id, "response": response, "sample": sample, "line": line}
                )
    return out


def main(root: Path, command: str) -> None:
    todo = cases(root)
    stdin = "".join(json.dumps({"dataset": DATASETS[c["task"]], "line": c["line"]}) + "\n" for c in todo)
    done = subprocess.run(shlex.split(command), input=stdin, capture_output=True, text=True, check=True)
    verdicts = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(verdicts) == len(todo), done.stderr
    for case, v in zip(todo, verdicts, strict=True):
        sample = case["sample"]
        row = {"task": case["task"], "id": case["id"], "response": case["response"], "gold": sample.gold}
        if case["task"] in ("math", "math500"):
            row["solution"] = sample.meta["solution"]
        row |= {
            "reference_verdict": v["verdict"],
            "reference_crashed": v["crashed"],
            "reference_error": v["error"],
        }
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
