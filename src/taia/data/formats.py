"""Training data formats: one record of a known layout → one validated conversation.

Exercised by `taia train cfg.yaml` (through `taia.data.mixing.mix`), tests/test_data.py and
tests/test_data_choice.py.
A conversation is a list of `{"role": "system"|"user"|"assistant", "content": str}`: an optional system
turn first, then user/assistant turns alternating, ending with a non-empty assistant turn.

Formats (`format:`; `columns:` maps a canonical field name to the file's, e.g. Dolly's
`{input: context, output: response}`):
  alpaca             instruction, output; optional input, system, history ([[user, assistant], ...], turns
                     placed before the final one). The user turn is instruction + "\\n" + input when input
                     is non-empty — LLaMA-Factory's alpaca converter (which the paper trained with) joins
                     them with a single newline.
  sharegpt           conversations: [{from, value}] (human/user, gpt/assistant/chatgpt/bard/model, system);
                     optional top-level system.
  messages           messages: [{role, content}] with roles system/user/assistant.
  prompt_completion  prompt, completion: strings (one user + one assistant turn) or lists of messages.
  multiple_choice    question, choices, answer: a multiple-choice row (CommonsenseQA, ARC, MMLU, …) as one
                     exchange. The user turn is the question and its options lettered A, B, … (built by
                     taia.eval.protocol.options_block, as `taia eval` shows them); the assistant
                     turn is the gold option as "B. text": the letter the paper protocol scores, then the
                     text the standard (cloze) protocol scores. `question` is a string, or an object whose
                     `stem` is the question and whose `choices` are the options when the row has none at the
                     top (CommonsenseQA's and ARC's files). `choices`: a list of strings, a list of
                     {label, text} (labels optional: A, B, … when no option has one), or
                     {label: [...], text: [...]} (the hub's flattened layout). `answer`: a
                     choice label, a 0-based index or the option's text. CommonsenseQA's files:
                     `{format: multiple_choice, columns: {answer: answerKey}}`. Never auto-detected.
  auto (default)     detected once, from the first record's keys (after columns), checked in the order
                     messages, conversations, prompt + completion, instruction + output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from taia.errors import TaiaError
from taia.eval.protocol import options_block  # the options exactly as `taia eval` shows them
from taia.eval.task import LETTERS
from taia.io.rows import Row
from taia.registry import Registry

Conversation = list[dict[str, str]]
Format = Callable[[dict[str, Any], dict[str, str]], Conversation]
FORMATS: Registry[Format] = Registry("data format")

ALPACA_INPUT_SEP = "\n"  # LLaMA-Factory: "\n".join([instruction, input]) (data/converter.py)
_SHAREGPT_ROLES = {"human": "user", "user": "user", "system": "system"} | dict.fromkeys(
    ("gpt", "assistant", "chatgpt", "bard", "model"), "assistant"
)
_MESSAGE_ROLES = {r: r for r in ("system", "user", "assistant")}
# Canonical field names `columns` may rename (a typo there would otherwise surface as "missing field").
CANONICAL_FIELDS = (
    "instruction", "input", "output", "system", "history", "conversations", "from", "value",
    "messages", "role", "content", "prompt", "completion", "question", "choices", "answer",
)  # fmt: skip
_DETECT = (
    ("messages", ("messages",)),
    ("sharegpt", ("conversations",)),
    ("prompt_completion", ("prompt", "completion")),
    ("alpaca", ("instruction", "output")),
)


class RowError(ValueError):
    """A problem with one record; the caller prefixes it with `file:line`."""


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RowError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _turn(role: str, content: Any, what: str) -> dict[str, str]:
    return {"role": role, "content": _str(content, what)}


def _field(data: dict[str, Any], columns: dict[str, str], name: str, fmt: str, needs: Sequence[str]) -> Any:
    """The value under a (possibly renamed) field; None when absent and optional (JSON null = absent)."""
    key = columns.get(name, name)
    value = data.get(key)
    if value is None and name in needs:
        wanted = ", ".join(columns.get(n, n) for n in needs)
        raise RowError(f"missing field {key!r} (format {fmt} needs {wanted})")
    return value


def _text(data: dict[str, Any], columns: dict[str, str], name: str, needs: Sequence[str] = ()) -> str:
    """A string field of an alpaca record ('' when absent and optional)."""
    value = _field(data, columns, name, "alpaca", needs)
    return "" if value is None else _str(value, f"field {columns.get(name, name)!r}")


@FORMATS.register("alpaca")
def alpaca(data: dict[str, Any], columns: dict[str, str]) -> Conversation:
    needs = ("instruction", "output")
    instruction, output = _text(data, columns, "instruction", needs), _text(data, columns, "output", needs)
    system, extra = _text(data, columns, "system"), _text(data, columns, "input")
    conv = [_turn("system", system, "system")] if system else []
    history = _field(data, columns, "history", "alpaca", needs) or []
    if not isinstance(history, list):
        raise RowError(
            f"field {columns.get('history', 'history')!r} must be a list of [user, assistant] pairs"
        )
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RowError(f"history[{i}] must be a [user, assistant] pair")
        conv += [_turn("user", pair[0], f"history[{i}][0]"), _turn("assistant", pair[1], f"history[{i}][1]")]
    conv.append({"role": "user", "content": ALPACA_INPUT_SEP.join(p for p in (instruction, extra) if p)})
    conv.append({"role": "assistant", "content": output})
    return conv


def _message_list(
    items: Any, name: str, columns: dict[str, str], keys: tuple[str, str], roles: dict[str, str]
) -> Conversation:
    """A list of {role-key, content-key} objects → turns, mapping the role names through `roles`."""
    role_key, content_key = (columns.get(k, k) for k in keys)
    if not isinstance(items, list):
        raise RowError(f"field {name!r} must be a list of {{{role_key}, {content_key}}} objects")
    conv = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RowError(f"{name}[{i}] must be an object with {role_key!r} and {content_key!r}")
        tag = item.get(role_key)
        role = roles.get(tag.lower()) if isinstance(tag, str) else None
        if role is None:
            raise RowError(f"{name}[{i}]: unknown role {tag!r} (known: {', '.join(roles)})")
        conv.append(_turn(role, item.get(content_key), f"{name}[{i}].{content_key}"))
    return conv


@FORMATS.register("sharegpt")
def sharegpt(data: dict[str, Any], columns: dict[str, str]) -> Conversation:
    system = _field(data, columns, "system", "sharegpt", ())
    conv = [_turn("system", system, "field 'system'")] if system else []
    items = _field(data, columns, "conversations", "sharegpt", ("conversations",))
    name = columns.get("conversations", "conversations")
    return conv + _message_list(items, name, columns, ("from", "value"), _SHAREGPT_ROLES)


@FORMATS.register("messages")
def messages(data: dict[str, Any], columns: dict[str, str]) -> Conversation:
    items = _field(data, columns, "messages", "messages", ("messages",))
    return _message_list(
        items, columns.get("messages", "messages"), columns, ("role", "content"), _MESSAGE_ROLES
    )


@FORMATS.register("prompt_completion")
def prompt_completion(data: dict[str, Any], columns: dict[str, str]) -> Conversation:
    conv: Conversation = []
    for name, role in (("prompt", "user"), ("completion", "assistant")):
        value = _field(data, columns, name, "prompt_completion", ("prompt", "completion"))
        key = columns.get(name, name)
        if isinstance(value, list):
            conv += _message_list(value, key, columns, ("role", "content"), _MESSAGE_ROLES)
        elif isinstance(value, str):
            conv.append({"role": role, "content": value})
        else:
            raise RowError(
                f"field {key!r} must be a string or a list of messages, got {type(value).__name__}"
            )
    return conv


def _choices(value: Any, name: str) -> tuple[list[str], list[str]]:
    """(labels, texts) from a list of strings, a list of {label, text} or {label: [...], text: [...]}."""
    if isinstance(value, dict) and isinstance(value.get("text"), list):
        labels, texts = value.get("label") or [], value["text"]
    elif isinstance(value, list) and all(isinstance(c, dict) for c in value):
        labels, texts = [c.get("label") for c in value], [c.get("text") for c in value]
        if any(x is None for x in labels):  # no label on any option: lettered A, B, … below
            if not all(x is None for x in labels):
                raise RowError(f"field {name!r}: some options have a label and some do not")
            labels = []
    elif isinstance(value, list):
        labels, texts = [], value
    else:
        raise RowError(f"field {name!r} must be a list of options or {{label: [...], text: [...]}}")
    if len(texts) < 2 or not all(isinstance(t, str) and t.strip() for t in texts):
        raise RowError(f"field {name!r} must hold at least two non-empty option texts")
    # The prompt letters the options A, B, …, whatever the file's labels are; they only resolve `answer`.
    labels = [str(x) for x in labels] if labels else list(LETTERS[: len(texts)])
    if len(labels) != len(texts) or len(texts) > len(LETTERS):
        raise RowError(f"field {name!r}: {len(labels)} labels for {len(texts)} options")
    return labels, [t.strip() for t in texts]


def _gold(answer: Any, labels: list[str], texts: list[str], name: str) -> int:
    """The gold option's index from a label, a 0-based index or the option's text."""
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(texts):
        return answer
    if isinstance(answer, str):
        for pool in (labels, texts):  # a label first: an option's text may look like a label ("A")
            if answer.strip() in pool:
                return pool.index(answer.strip())
    raise RowError(f"field {name!r} = {answer!r:.40} is none of the labels {labels} nor an option's text")


@FORMATS.register("multiple_choice")
def multiple_choice(data: dict[str, Any], columns: dict[str, str]) -> Conversation:
    needs = ("question", "answer")
    question = _field(data, columns, "question", "multiple_choice", needs)
    choices = _field(data, columns, "choices", "multiple_choice", ())
    name = columns.get("choices", "choices")
    if isinstance(question, dict):  # {stem, choices}: CommonsenseQA's and ARC's own files
        choices, name = (question.get("choices"), "question.choices") if choices is None else (choices, name)
        question = question.get("stem")
    stem = _str(question, f"field {columns.get('question', 'question')!r} (or its stem)").strip()
    if not stem or choices is None:
        raise RowError(f"a multiple-choice row needs a question and its options ({name!r})")
    labels, texts = _choices(choices, name)
    gold = _gold(
        _field(data, columns, "answer", "multiple_choice", needs),
        labels,
        texts,
        columns.get("answer", "answer"),
    )
    return [
        {"role": "user", "content": f"{stem}\n{options_block(tuple(texts))}"},
        {"role": "assistant", "content": f"{LETTERS[gold]}. {texts[gold]}"},
    ]


def detect_format(data: dict[str, Any], columns: dict[str, str]) -> str:
    """The format whose required fields (after `columns` renaming) the record has."""
    for fmt, keys in _DETECT:
        if all(columns.get(k, k) in data for k in keys):
            return fmt
    known = ", ".join(f for f in FORMATS.names() if f != "auto")
    raise RowError(
        f"cannot detect the data format from the keys {sorted(data)}; set format: to one of {known} "
        "(and columns: to rename fields)"
    )


@FORMATS.register("auto")
def auto(data: dict[str, Any], columns: dict[str, str]) -> Conversation:
    """Per-record detection; `convert` instead detects once, from the first record, for the whole file."""
    return FORMATS.get(detect_format(data, columns))(data, columns)


def validate_conversation(conv: Any) -> None:
    """Optional system first, then user/assistant alternating, ending with a non-empty assistant turn."""
    if not isinstance(conv, list) or not conv:
        raise RowError("empty conversation")
    offset = 1 if isinstance(conv[0], dict) and conv[0].get("role") == "system" else 0
    for i, turn in enumerate(conv):
        if not (isinstance(turn, dict) and isinstance(turn.get("content"), str)):
            raise RowError(f"turn {i + 1} must be a {{role, content: str}} object")
        role = turn.get("role")
        expected = "system" if i < offset else ("user", "assistant")[(i - offset) % 2]
        if role != expected:
            why = "a system turn may only come first" if role == "system" else "roles must alternate"
            raise RowError(f"turn {i + 1} is {role!r}, expected {expected!r} ({why}: user, assistant, ...)")
        if role == "assistant" and not turn["content"].strip():
            raise RowError(f"turn {i + 1}: empty assistant content")
    if conv[-1]["role"] != "assistant":
        raise RowError("the last turn must be the assistant's (there is nothing to learn from otherwise)")


def convert(rows: list[Row], where: str, fmt: str, columns: dict[str, str]) -> tuple[str, list[Conversation]]:
    """Every row → a validated conversation; returns the resolved format name too (never "auto")."""
    fn, convs = None, []
    for row in rows:
        try:
            if fn is None:
                fmt = detect_format(row.data, columns) if fmt == "auto" else fmt
                fn = FORMATS.get(fmt)
            conv = fn(row.data, columns)
            validate_conversation(conv)
        except ValueError as e:  # RowError, or a ValueError from a user-registered format
            raise TaiaError(f"{where}:{row.line}: {e}") from None
        convs.append(conv)
    return fmt, convs
