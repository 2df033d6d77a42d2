"""Training data: records in a known format → validated conversations, and a seeded mix of sources.

Exercised by `taia train cfg.yaml` and tests/test_data.py. Every record of every source is converted and
validated up front, so a bad record stops the run before training with `file:line: what is wrong`.
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
  auto (default)     detected once, from the first record's keys (after columns), checked in the order
                     messages, conversations, prompt + completion, instruction + output.

Mixing (how to write the paper's Fig. 1 "20k in-domain + x % out-of-distribution"):

    data:
      - {path: alpaca_gpt4/alpaca_en_demo.json, count: 20000}   # exactly 20k rows, sampled
      - {path: ood.jsonl, ratio: 0.2}                           # 20 % of the final mix (here 5k rows)
      - extra.jsonl                                             # no count/ratio: every row

A local file may name its copy on the Hugging Face Hub (`hub: owner/name`, with `subset:` / `split:`) or on
the web (`hub: https://…/file.jsonl`), read when the file is found neither as given nor under the data root.

A source without count or ratio contributes all its rows; `count: n` samples n rows without replacement.
Ratio sources share the final mix: with `fixed` rows from the other sources, the mix has
total = fixed / (1 - sum(ratios)) rows and each ratio source gives round_half_up(ratio × total). If every
source has a ratio they must sum to 1 and the total is the largest one no source would oversample for.
Asking a source for more rows than it has is an error (never silent oversampling).
Each source is sampled with its own RNG, seeded by (seed, path, how many earlier sources share the path),
as a prefix of a seeded permutation: adding or reordering other sources never changes its sample, and a
larger count only adds rows. The mix is then shuffled with `random.Random(seed)`; `limit` keeps its first
`limit` conversations (a quick-run knob). The manifest records, per source, the resolved file and sha256,
the resolved format and the sorted indices of the rows actually in the (limited) mix.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taia.errors import TaiaError
from taia.io.rows import Row, resolve_rows
from taia.registry import Registry, did_you_mean

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
    "messages", "role", "content", "prompt", "completion",
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


class DataSource(BaseModel):
    """One entry of `data:` in a train config (see the module docstring for count/ratio semantics)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1)  # local file (as given, or under the data root) or a hub dataset id
    hub: str | None = Field(None, pattern=r"^([\w.-]+/[\w.-]+|https://\S+)$")  # `path`'s copy, if absent
    format: str = "auto"
    columns: dict[str, str] = Field(default_factory=dict)  # canonical field -> field name in the file
    count: int | None = Field(None, gt=0)
    ratio: float | None = Field(None, gt=0, lt=1)
    system: str | None = None  # prepended to every conversation that has no system turn
    split: str = "train"  # of the hub dataset (`path` as a hub id, or `hub`)
    subset: str | None = None  # of the hub dataset (its config name)

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in FORMATS:
            raise ValueError(str(did_you_mean(v, FORMATS.names(), "data format")))
        return v

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name not in CANONICAL_FIELDS:
                raise ValueError(str(did_you_mean(name, list(CANONICAL_FIELDS), "column")))
        return v

    @model_validator(mode="after")
    def _one_size(self) -> DataSource:
        if self.count is not None and self.ratio is not None:
            raise ValueError(f"source {self.path!r}: give count or ratio, not both")
        return self


@dataclass
class Mixture:
    """The shuffled conversations to train on, and a JSON-serialisable record of how they were drawn."""

    conversations: list[Conversation]
    manifest: dict[str, Any]


@dataclass
class _Loaded:
    source: DataSource
    where: str
    sha256: str | None
    format: str
    convs: list[Conversation]


def _load(source: DataSource, root: Path | None) -> _Loaded:
    hub = (source.hub, source.split, source.subset) if source.hub else None
    rows, where = resolve_rows(source.path, root, source.split, source.subset, hub)
    fmt, convs = convert(rows, where, source.format, source.columns)
    if source.system:
        turn = {"role": "system", "content": source.system}
        convs = [c if c[0]["role"] == "system" else [dict(turn), *c] for c in convs]  # no shared dicts
    local = Path(where)
    return _Loaded(source, where, _sha256(local) if local.is_file() else None, fmt, convs)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _half_up(x: float) -> int:
    return math.floor(x + 0.5 + 1e-9)  # 1e-9: 0.2 * 25 may come out as 4.999…


def _sizes(loaded: list[_Loaded]) -> list[int]:
    """How many rows each source contributes (count, all, or its share of the total)."""
    takes, fixed = [0] * len(loaded), 0
    for i, item in enumerate(loaded):
        if item.source.ratio is None:
            takes[i] = len(item.convs) if item.source.count is None else item.source.count
            if takes[i] > len(item.convs):
                raise TaiaError(
                    f"data {item.source.path!r}: count {takes[i]} but it has only {len(item.convs)} rows"
                )
            fixed += takes[i]
    ratios = {i: item.source.ratio for i, item in enumerate(loaded) if item.source.ratio is not None}
    if ratios:
        total = _ratio_total(loaded, ratios, fixed)
        for i, ratio in ratios.items():
            takes[i] = _half_up(ratio * total)
            if takes[i] > len(loaded[i].convs):
                raise TaiaError(
                    f"data {loaded[i].source.path!r}: ratio {ratio:g} of a total of {total:g} needs "
                    f"{takes[i]} rows but it has only {len(loaded[i].convs)} (lower the ratio or the counts)"
                )
    return takes


def _ratio_total(loaded: list[_Loaded], ratios: dict[int, float], fixed: int) -> float:
    """The size of the final mix that the ratios are shares of."""
    share = sum(ratios.values())
    if len(ratios) < len(loaded):
        if share >= 1:
            raise TaiaError(
                f"the ratios sum to {share:g}, but they are shares of a mix that also holds {fixed} rows "
                "from sources with a count (or all their rows); they must sum to less than 1"
            )
        return fixed / (1 - share)
    if abs(share - 1) > 1e-6:
        raise TaiaError(f"every source has a ratio, so the ratios must sum to 1 (they sum to {share:g})")
    # The largest total for which no source is asked for more rows than it has.
    return min(math.floor(len(loaded[i].convs) / r + 1e-9) for i, r in ratios.items())


def _sample(item: _Loaded, take: int, seed: int, occurrence: int) -> list[int]:
    """`take` row indices: a prefix of a permutation seeded by this source alone."""
    if take == len(item.convs) and item.source.count is None and item.source.ratio is None:
        return list(range(take))
    order = list(range(len(item.convs)))
    random.Random(f"{seed}:{item.source.path}:{occurrence}").shuffle(order)
    return order[:take]


def mix(sources: list[DataSource], root: Path | None, seed: int, limit: int | None = None) -> Mixture:
    """Load, convert and validate every source, then draw and shuffle the seeded mix."""
    if not sources:
        raise TaiaError("no data sources given")
    loaded = [_load(s, root) for s in sources]
    seen: dict[str, int] = {}
    picked = []
    for item, take in zip(loaded, _sizes(loaded), strict=True):
        occurrence = seen[item.source.path] = seen.get(item.source.path, -1) + 1
        picked.append(_sample(item, take, seed, occurrence))
    items = [(i, j) for i, indices in enumerate(picked) for j in indices]
    random.Random(seed).shuffle(items)
    items = items[:limit] if limit is not None else items
    if not items:
        raise TaiaError("the data mix is empty (every source contributes 0 rows)")
    manifest = _manifest(loaded, items, seed, limit)
    return Mixture([loaded[i].convs[j] for i, j in items], manifest)


def _manifest(
    loaded: list[_Loaded], items: list[tuple[int, int]], seed: int, limit: int | None
) -> dict[str, Any]:
    """What was drawn (after `limit`): enough to rebuild the mix and to check the files are unchanged."""
    chosen: list[list[int]] = [[] for _ in loaded]
    for i, j in items:
        chosen[i].append(j)
    sources = [
        {
            "path": item.source.path, "where": item.where, "sha256": item.sha256, "format": item.format,
            "available": len(item.convs), "taken": len(chosen[i]), "indices": sorted(chosen[i]),
        }
        for i, item in enumerate(loaded)
    ]  # fmt: skip
    return {"seed": seed, "total": len(items), "limit": limit, "sources": sources}
