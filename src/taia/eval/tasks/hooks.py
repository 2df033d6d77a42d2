"""Hooks that turn a task's raw rows into `Sample`s, and readers for files `read_rows` cannot parse.

A task YAML names its hook (`hook: gsm8k`); the hook validates the fields it needs and reports a bad row as
`file:line` (or `hub:id:row`). Hooks accept both the local file's layout and the hub fallback's where they
differ in structure (CommonsenseQA, MMLU); plain renames live in the YAML (`hub.rename`). Exercised by
`taia eval --tasks gsm8k` and tests/test_tasks.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taia.errors import TaiaError
from taia.eval.kinds.math import solution_gold
from taia.eval.task import LETTERS, Sample
from taia.io.rows import Row
from taia.registry import Registry


@dataclass(frozen=True)
class Source:
    """Where a list of rows came from: the task (id prefix), the file or hub id (error prefix), its subset."""

    task: str
    where: str  # a file path, or `hub:owner/name[/config]`
    subset: str | None = None  # the BBH subtask / MMLU subject this file holds; None when rows carry it

    def error(self, row: Row, message: str) -> TaiaError:
        return TaiaError(f"{self.where}:{row.line}: {message}")

    def sample_id(self, index: int, subset: str | None) -> str:
        """`task/subset/index`: index is the row's 0-based position in its file (or hub split)."""
        return f"{self.task}/{subset or ''}/{index}"


Hook = Callable[[list[Row], Source], list[Sample]]
Reader = Callable[[Path], list[Row]]
HOOKS: Registry[Hook] = Registry("task hook")
READERS: Registry[Reader] = Registry("task file reader")


# --- field access ---------------------------------------------------------------------------------------


def field(src: Source, row: Row, key: str) -> Any:
    if key not in row.data:
        raise src.error(row, f"missing field {key!r} (has: {', '.join(map(str, row.data)) or 'none'})")
    return row.data[key]


def text(src: Source, row: Row, key: str) -> str:
    """A non-empty string field."""
    value = field(src, row, key)
    if not isinstance(value, str) or not value.strip():
        raise src.error(row, f"field {key!r} must be a non-empty string, got {value!r:.60}")
    return value


def _strings(src: Source, row: Row, key: str, values: Any) -> tuple[str, ...]:
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise src.error(row, f"field {key!r} must be a non-empty list, got {values!r:.60}")
    if not all(isinstance(v, str) for v in values):
        raise src.error(row, f"field {key!r} must hold strings, got {values!r:.60}")
    return tuple(values)


def _letter(src: Source, row: Row, key: str, value: Any, options: Sequence[str]) -> str:
    """An mc gold as a letter (`"B"`, `"b"`) or a 0-based index (`1`, `"1"`), checked against the options."""
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value)
    elif isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        index = LETTERS.index(value.strip().upper())
    else:
        raise src.error(row, f"field {key!r} must be an option letter or index, got {value!r:.60}")
    if not 0 <= index < len(options):
        raise src.error(row, f"field {key!r} = {value!r} is not one of the {len(options)} options")
    return LETTERS[index]


def number_text(value: float | int | str) -> str:
    """A gold number as written: 12.0 → "12", 2.5 → "2.5", strings kept."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- hooks ----------------------------------------------------------------------------------------------


@HOOKS.register("gsm8k")
def gsm8k(rows: list[Row], src: Source) -> list[Sample]:
    """`question`, `answer` ending in `#### <number>`; gold is the number as written (commas kept)."""
    samples = []
    for i, row in enumerate(rows):
        answer = text(src, row, "answer")
        if "####" not in answer:
            raise src.error(row, "field 'answer' has no '#### <number>' final answer")
        gold = answer.rsplit("####", 1)[1].strip()
        if not gold:
            raise src.error(row, "field 'answer' has nothing after '####'")
        samples.append(Sample(src.sample_id(i, None), text(src, row, "question"), gold))
    return samples


@HOOKS.register("svamp")
def svamp(rows: list[Row], src: Source) -> list[Sample]:
    """`Body` + " " + `Question`; gold `Answer` (a float: 12.0 → "12")."""
    samples = []
    for i, row in enumerate(rows):
        answer = field(src, row, "Answer")
        if not isinstance(answer, (int, float, str)) or isinstance(answer, bool):
            raise src.error(row, f"field 'Answer' must be a number, got {answer!r:.60}")
        question = f"{text(src, row, 'Body').strip()} {text(src, row, 'Question').strip()}"
        meta = {"ID": str(row.data["ID"])} if "ID" in row.data else {}
        samples.append(Sample(src.sample_id(i, None), question, number_text(answer), meta=meta))
    return samples


@HOOKS.register("math500")
def math500(rows: list[Row], src: Source) -> list[Sample]:
    """MATH-500: `problem`, `answer`, `subject` (the subset); `solution` kept in meta (reference mode)."""
    samples = []
    for i, row in enumerate(rows):
        subject = text(src, row, "subject")
        meta: dict[str, str] = {
            k: str(row.data[k]) for k in ("unique_id", "level", "solution") if k in row.data
        }
        sid = src.sample_id(i, subject)
        samples.append(Sample(sid, text(src, row, "problem"), text(src, row, "answer"), (), subject, meta))
    return samples


@HOOKS.register("math")
def math(rows: list[Row], src: Source) -> list[Sample]:
    """Full MATH test: `problem`, `solution` (gold: its last `\\boxed{…}`, or all its boxes or either of
    them where they differ: `kinds.math.solution_gold`), `type` (the subset)."""
    samples = []
    for i, row in enumerate(rows):
        problem = text(src, row, "problem")
        gold = solution_gold(problem, text(src, row, "solution"))  # a cut-off last box is no gold
        if gold is None:
            raise src.error(row, "field 'solution' has no (balanced, non-empty) \\boxed{…} answer")
        subject = text(src, row, "type")
        meta: dict[str, str] = {k: str(row.data[k]) for k in ("idx", "level") if k in row.data}
        meta["solution"] = row.data["solution"]  # metric_mode=reference reads the whole solution
        samples.append(Sample(src.sample_id(i, subject), problem, gold, (), subject, meta))
    return samples


@HOOKS.register("bbh")
def bbh(rows: list[Row], src: Source) -> list[Sample]:
    """One BBH subtask file (`{"examples": [{input, target}]}`, flattened by `examples_rows`)."""
    samples = []
    for i, row in enumerate(rows):
        try:
            question, gold = text(src, row, "input"), text(src, row, "target")
        except TaiaError as e:
            raise TaiaError(f"{e} (examples[{i}])") from None
        samples.append(Sample(src.sample_id(i, src.subset), question, gold, (), src.subset))
    return samples


def _csqa_options(src: Source, row: Row) -> tuple[str, list[str], tuple[str, ...]]:
    """(stem, labels, texts) from the official nested layout or the hub's flat one (tau/commonsense_qa)."""
    question = field(src, row, "question")
    if isinstance(question, Mapping):  # official: question{stem, choices[{label, text}]}
        stem, choices = question.get("stem"), question.get("choices")
        if not isinstance(choices, list) or not all(isinstance(c, Mapping) for c in choices):
            raise src.error(row, "field 'question.choices' must be a list of {label, text}")
        labels, texts = [c.get("label") for c in choices], [c.get("text") for c in choices]
    else:  # hub: question (str), choices{label: [...], text: [...]}
        stem, choices = question, field(src, row, "choices")
        if not isinstance(choices, Mapping):
            raise src.error(row, "field 'choices' must be {label: [...], text: [...]}")
        labels, texts = list(choices.get("label") or []), list(choices.get("text") or [])
    if not isinstance(stem, str) or not stem.strip():
        raise src.error(row, "the question stem must be a non-empty string")
    if not texts or labels != list(LETTERS[: len(labels)]) or len(texts) != len(labels):
        raise src.error(row, f"choices must be labelled A, B, C, … in order, got {labels!r:.60}")
    return stem, labels, _strings(src, row, "choices", texts)


@HOOKS.register("commonsenseqa")
def commonsenseqa(rows: list[Row], src: Source) -> list[Sample]:
    """`question.stem`, options from `question.choices` (labels A–E), gold `answerKey`."""
    samples = []
    for i, row in enumerate(rows):
        stem, _, options = _csqa_options(src, row)
        gold = _letter(src, row, "answerKey", text(src, row, "answerKey"), options)
        meta = {"id": str(row.data["id"])} if "id" in row.data else {}
        samples.append(Sample(src.sample_id(i, None), stem, gold, options, meta=meta))
    return samples


@HOOKS.register("logiqa")
def logiqa(rows: list[Row], src: Source) -> list[Sample]:
    """`context` + "\\n" + `query`, 4 `options`, `correct_option` (index or letter)."""
    samples = []
    for i, row in enumerate(rows):
        options = _strings(src, row, "options", field(src, row, "options"))
        gold = _letter(src, row, "correct_option", field(src, row, "correct_option"), options)
        question = f"{text(src, row, 'context').strip()}\n{text(src, row, 'query').strip()}"
        samples.append(Sample(src.sample_id(i, None), question, gold, options))
    return samples


@HOOKS.register("mmlu")
def mmlu(rows: list[Row], src: Source) -> list[Sample]:
    """`question`, `choice0..3` (CSV) or `choices` (hub cais/mmlu), `answer` as a 0-3 index."""
    samples = []
    for i, row in enumerate(rows):
        if "choices" in row.data:
            options = _strings(src, row, "choices", row.data["choices"])
        else:
            options = _strings(src, row, "choice0..3", [field(src, row, f"choice{k}") for k in range(4)])
        gold = _letter(src, row, "answer", field(src, row, "answer"), options)
        sid = src.sample_id(i, src.subset)
        samples.append(Sample(sid, text(src, row, "question"), gold, options, src.subset))
    return samples


@HOOKS.register("medqa")
def medqa(rows: list[Row], src: Source) -> list[Sample]:
    """`question`, `options{A..D}`, gold `answer_idx`, else the letter whose option text equals `answer`."""
    samples = []
    for i, row in enumerate(rows):
        table = field(src, row, "options")
        if not isinstance(table, Mapping) or sorted(table) != list(LETTERS[: len(table)]) or not table:
            raise src.error(row, f"field 'options' must map A, B, C, … to texts, got {table!r:.60}")
        options = _strings(src, row, "options", [table[k] for k in sorted(table)])
        if row.data.get("answer_idx") is not None:
            gold = _letter(src, row, "answer_idx", row.data["answer_idx"], options)
        else:
            answer = text(src, row, "answer")
            if answer not in options:
                raise src.error(row, f"no 'answer_idx', and 'answer' {answer!r:.60} is no option")
            gold = LETTERS[options.index(answer)]
        samples.append(Sample(src.sample_id(i, None), text(src, row, "question"), gold, options))
    return samples


@HOOKS.register("advbench")
def advbench(rows: list[Row], src: Source) -> list[Sample]:
    """`goal` (a harmful request); scored by refusal, so the gold is ""."""
    return [Sample(src.sample_id(i, None), text(src, row, "goal"), "") for i, row in enumerate(rows)]


# --- readers --------------------------------------------------------------------------------------------

_OPTION = re.compile(r"([A-D])(?:[.?]\s*|\s+)(.*)", re.DOTALL)


@READERS.register("bbh_examples")
def examples_rows(path: Path) -> list[Row]:
    """A BBH task file `{"canary": …, "examples": [{input, target}, …]}` as one row per example.

    Upstream files are a single line, so every row is on line 1; hooks add `examples[i]` to their errors.
    """
    try:
        raw = path.read_text(encoding="utf-8-sig")
        obj = json.loads(raw)
    except (OSError, UnicodeDecodeError) as e:
        raise TaiaError(f"{path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise TaiaError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    examples = obj.get("examples") if isinstance(obj, dict) else None
    if not isinstance(examples, list) or not examples:
        raise TaiaError(f"{path}:1: expected an object with a non-empty 'examples' list")
    # Each example's line: the i-th `"input":` key (an unescaped quote cannot occur inside a JSON string).
    starts = [m.start() for m in re.finditer(r'(?<!\\)"input"\s*:', raw)]
    lines = [1 + raw.count("\n", 0, at) for at in starts] if len(starts) == len(examples) else None
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise TaiaError(f"{path}:{lines[i] if lines else 1}: examples[{i}] is not an object")
    return [Row(ex, lines[i] if lines else 1) for i, ex in enumerate(examples)]


@READERS.register("logiqa_txt")
def logiqa_rows(path: Path) -> list[Row]:
    """LogiQA `.txt`: 8-line blocks (blank, answer a-d, context, question, 4 options "A." … "D.").

    Rows have the hub layout (`context`, `query`, `options`, `correct_option`); each starts at its blank line.
    Options are put in the order of their own labels: in Test.txt 19 blocks list "C." before "B.", and
    the answer letter follows the labels, not the line order (checked by solving some by hand).
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise TaiaError(f"{path}: cannot read: {e}") from None
    while lines and not lines[-1].strip() and len(lines) % 8:
        lines.pop()  # a trailing newline (Test.txt has none, edited copies may)
    if len(lines) % 8:
        raise TaiaError(f"{path}:{len(lines)}: {len(lines)} lines is not a whole number of 8-line blocks")
    return [_logiqa_block(path, lines[at : at + 8], at + 1) for at in range(0, len(lines), 8)]


def _logiqa_block(path: Path, block: list[str], line: int) -> Row:
    if block[0].strip():
        raise TaiaError(f"{path}:{line}: expected the blank line that starts a LogiQA block")
    answer = block[1].strip().lower()
    if answer not in ("a", "b", "c", "d"):
        raise TaiaError(f"{path}:{line + 1}: expected the answer letter a-d, got {block[1]!r:.60}")
    for offset in (2, 3):
        if not block[offset].strip():
            raise TaiaError(f"{path}:{line + offset}: empty {('context', 'question')[offset - 2]}")
    parsed = [_option(path, b, line + 4 + k) for k, b in enumerate(block[4:])]
    if sorted(label for label, _ in parsed) == ["A", "B", "C", "D"]:
        parsed.sort()  # every option labelled: put them in label order
    # else a few options lost their label in translation: keep line order
    options, gold = [option for _, option in parsed], "abcd".index(answer)
    return Row({"context": block[2], "query": block[3], "options": options, "correct_option": gold}, line)


def _option(path: Path, line_text: str, line: int) -> tuple[str, str]:
    """("B", text) for "B.text" / "B?text" / "B text"; ("", the line) for an option without a label."""
    match = _OPTION.fullmatch(line_text.strip())
    label, option = (match.group(1), match.group(2).strip()) if match else ("", line_text.strip())
    if not option:
        raise TaiaError(f"{path}:{line}: empty option")
    return label, option


@HOOKS.register("instructions")
def instructions(rows: list[Row], src: Source) -> list[Sample]:
    """`instruction` (+ optional `input`, joined by a newline as in training): a benign request, no gold."""
    samples = []
    for i, row in enumerate(rows):
        extra = row.data.get("input")
        question = text(src, row, "instruction") + (f"\n{extra}" if isinstance(extra, str) and extra else "")
        samples.append(Sample(src.sample_id(i, None), question, ""))
    return samples
