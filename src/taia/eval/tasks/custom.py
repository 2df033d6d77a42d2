"""Your own task, no code: a task YAML beside your data, with a field map instead of a Python hook.

    # my_task.yaml                          taia eval --tasks my_task.yaml,csqa --out runs/ev
    name: capitals
    kind: mc                                # any taia.eval.task.Kind: mc, number, math, exact, refusal, …
    data: capitals.jsonl                    # relative to this file; or {files: [...], hub: {id, split}}
    fields: {question: q, options: choices, answer: label, id: uid}

Same schema as the built-in task YAMLs (`TaskSpec`), but `name` defaults to the file's stem, `description`
and `max_new_tokens` have defaults, data files are relative to the YAML (a relative path that leaves
the YAML's folder, by `..` or a symlink, is refused; an absolute path is taken as given), and `fields:`
(or a built-in `hook:`) turns rows into samples. `prompt:` optionally builds the question text from any
row fields (`"{passage}\\n\\n{q}"`); the protocol still adds the options and the answer instruction that
strict scoring relies on. Exercised by `taia eval --tasks my_task.yaml` and tests/test_custom_tasks.py.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator, model_validator

from taia.config import one_line, safe_yaml
from taia.errors import TaiaError
from taia.eval.extract import last_boxed
from taia.eval.kinds import kind_of
from taia.eval.task import LETTERS, Kind, Sample
from taia.eval.tasks.hooks import HOOKS, READERS, Source, number_text
from taia.eval.tasks.schema import TaskSpec
from taia.io.rows import Row
from taia.registry import did_you_mean

__all__ = ["CustomTaskSpec", "FieldMap", "is_task_file", "load_task_file"]

SUFFIXES = (".yaml", ".yml")
_NAME_CHARS = set(string.ascii_letters + string.digits + "_.-")


class FieldMap(BaseModel):
    """`fields:` sample field → the row's field name (`options` may list one field per option)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    question: str | None = None
    options: str | list[str] | None = None
    answer: str | None = None
    id: str | None = None
    subset: str | None = None


class CustomTaskSpec(TaskSpec):
    """A user's task file: `TaskSpec` plus `fields` and `prompt`, with defaults for the rest."""

    name: str = ""  # "" → the file's stem
    description: str = ""
    hook: str = ""  # "" → the generic field-map hook
    max_new_tokens: int = 512
    fields: FieldMap | None = None
    prompt: str | None = None
    _file: Path = PrivateAttr(default=Path("."))

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        """`data: rows.jsonl` or `data: [a.jsonl, b.jsonl]` for `data: {files: [...]}`."""
        if isinstance(data, dict) and isinstance(data.get("data"), (str, list)):
            files = data["data"]
            data = {**data, "data": {"files": [files] if isinstance(files, str) else files}}
        return data

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, v: Any) -> Any:
        kinds = list(get_args(Kind))
        if isinstance(v, str) and v not in kinds:
            raise ValueError(str(did_you_mean(v, kinds, "kind")))
        return v

    @field_validator("prompt")
    @classmethod
    def _plain_template(cls, v: str | None) -> str | None:
        if v is not None:
            template_fields(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CustomTaskSpec:
        if bool(self.hook) == (self.fields is not None):
            raise ValueError("give fields: (a map to your rows' fields) or hook: (a built-in hook), not both")
        if self.hook and self.prompt is not None:
            raise ValueError("prompt: needs fields: (a built-in hook builds its own question)")
        if self.fields is not None:
            _check_fields(self.fields, self.kind, self.prompt is not None)
        if self.aggregate == "macro" and not self.subsets and not (self.fields and self.fields.subset):
            raise ValueError("aggregate: macro needs subsets (fields.subset, or subsets: and {subset} files)")
        return self

    def samples(self, rows: list[Row], src: Source) -> list[Sample]:
        if self.fields is None:
            return super().samples(rows, src)
        return field_samples(self, rows, src)

    def files_root(self, data_root: Path | None) -> Path | None:
        return self._file.parent

    def check_file(self, rel: str, path: Path) -> None:
        """A relative data path stays inside the task file's folder once `..` and symlinks are followed;
        an absolute one is the user's explicit choice (results name the task file, which names it)."""
        if Path(rel).is_absolute():
            return
        folder, real = self._file.parent.resolve(), path.resolve()
        if not real.is_relative_to(folder):
            raise TaiaError(
                f"task file {self._file}: data file {rel} resolves to {real}, outside the task file's folder "
                f"{folder}; move the data beside it or give an absolute path"
            )

    def where(self, root: Path | None) -> str:
        return f"beside the task file {self._file}"


def _check_fields(fields: FieldMap, kind: str, has_prompt: bool) -> None:
    """What the kind needs mapped: options (mc only) and a gold answer (any kind scored against one; the
    others, refusal and adoption, may leave `answer` unmapped: gold "")."""
    if fields.question is None and not has_prompt:
        raise ValueError("fields.question is missing (or give prompt: to build the question)")
    if kind_of(kind).options and fields.options is None:
        raise ValueError(f"kind {kind} needs fields.options (one list field, or a list of option fields)")
    if not kind_of(kind).options and fields.options is not None:
        raise ValueError(f"fields.options is only for kind mc, not {kind}")
    if kind_of(kind).gold and fields.answer is None:
        raise ValueError(f"kind {kind} is scored against a gold answer: map fields.answer")


def template_fields(template: str) -> list[str]:
    """The row fields a `prompt:` template names; only plain `{name}` placeholders are allowed."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"{e} (write a literal brace as {{{{ or }}}})") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or spec or conversion or not set(name) <= _NAME_CHARS:
            raise ValueError(f"{{{name}}} is not a plain {{field}} placeholder")
        names.append(name)
    return names


def is_task_file(ref: str) -> bool:
    """Whether a `--tasks` entry names a task file (`path/to/task.yaml`, or `task.yaml:subset`)."""
    head, colon, _ = ref.rpartition(":")
    return ref.lower().endswith(SUFFIXES) or bool(colon and head.lower().endswith(SUFFIXES))


def load_task_file(path: Path, taken: Collection[str]) -> CustomTaskSpec:
    """A task file, validated; `taken` are the built-in names (and aliases) it may not reuse."""
    if not path.is_file():
        raise TaiaError(f"task file {path} not found")
    try:
        raw = safe_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise TaiaError(f"task file {path}: cannot read: {' '.join(str(e).split())}") from None
    if not isinstance(raw, dict):
        raise TaiaError(f"task file {path}: expected a mapping of keys (name, kind, data, fields, …)")
    try:
        spec = CustomTaskSpec.model_validate({"name": path.stem, **raw})
    except ValidationError as e:
        message = one_line(e, CustomTaskSpec).removeprefix("(root): ")  # a whole-file rule: no key
        raise TaiaError(f"task file {path}: {message}") from None
    _check_name(path, spec, taken)
    if spec.hook:
        _known(path, "hook", spec.hook, HOOKS.names())
    if spec.data.reader:
        _known(path, "data.reader", spec.data.reader, READERS.names())
    spec._file = path.absolute()
    return spec


def _check_name(path: Path, spec: CustomTaskSpec, taken: Collection[str]) -> None:
    if not spec.name or not set(spec.name) <= _NAME_CHARS:
        raise TaiaError(f"task file {path}: name {spec.name!r} must be letters, digits, '_', '.' or '-'")
    if spec.name in taken:
        raise TaiaError(
            f"task file {path}: name {spec.name!r} is a built-in task's; set another name: in the file"
        )
    if spec.aliases:
        raise TaiaError(f"task file {path}: aliases: is only for built-in tasks")


def _known(path: Path, key: str, value: str, known: list[str]) -> None:
    if value not in known:
        raise TaiaError(f"task file {path}: {key}: {did_you_mean(value, known, key.split('.')[-1])}")


# --- the generic hook: rows → samples through `fields` -----------------------------------------------


def field_samples(spec: CustomTaskSpec, rows: list[Row], src: Source) -> list[Sample]:
    """Each row as a sample: question (or `prompt`), options, gold answer, id and subset by `fields`."""
    assert spec.fields is not None
    fields, seen = spec.fields, dict[str, int]()
    samples = []
    for i, row in enumerate(rows):
        question = _question(spec, src, row)
        options = _options(src, row, fields.options) if fields.options is not None else ()
        gold = _gold(spec.kind, src, row, fields.answer, options) if fields.answer else ""
        subset = _scalar(src, row, fields.subset, "subset") if fields.subset else src.subset
        key = _scalar(src, row, fields.id, "id") if fields.id else str(i)
        sid = f"{src.task}/{subset or ''}/{key}"  # as `Source.sample_id`, with the row's own id if mapped
        if sid in seen:
            raise src.error(row, f"duplicate id {key!r} (field {fields.id!r}; also on line {seen[sid]})")
        seen[sid] = row.line
        samples.append(Sample(sid, question, gold, options, subset))
    return samples


def _get(src: Source, row: Row, key: str, role: str) -> Any:
    if key not in row.data or row.data[key] is None:
        has = ", ".join(map(str, row.data)) or "none"
        raise src.error(row, f"missing field {key!r} (mapped by fields.{role}; the row has: {has})")
    return row.data[key]


def _scalar(src: Source, row: Row, key: str, role: str) -> str:
    value = _get(src, row, key, role)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise src.error(row, f"field {key!r} (fields.{role}) must be a non-empty string or number")
    return number_text(value) if isinstance(value, (int, float)) else value.strip()


def _question(spec: CustomTaskSpec, src: Source, row: Row) -> str:
    if spec.prompt is None:
        assert spec.fields is not None and spec.fields.question is not None
        return _scalar(src, row, spec.fields.question, "question")
    values = {name: str(_get(src, row, name, "prompt")) for name in template_fields(spec.prompt)}
    return spec.prompt.format_map(values)


def _options(src: Source, row: Row, keys: str | list[str]) -> tuple[str, ...]:
    if isinstance(keys, list):
        values: Any = [_get(src, row, k, "options") for k in keys]
    else:
        values = _get(src, row, keys, "options")
    if isinstance(values, Mapping):  # {"A": "...", "B": "..."}: taken in letter order
        if sorted(values) != list(LETTERS[: len(values)]):
            raise src.error(row, f"field {keys!r}: option keys must be A, B, C, …, got {sorted(values)}")
        values = [values[k] for k in sorted(values)]
    if not isinstance(values, list) or len(values) < 2:
        raise src.error(row, f"field {keys!r} must hold a list of at least 2 options, got {values!r:.60}")
    if any(isinstance(v, bool) or not isinstance(v, (str, int, float)) or not str(v).strip() for v in values):
        raise src.error(row, f"field {keys!r}: every option must be a non-empty string, got {values!r:.80}")
    return tuple(number_text(v) if isinstance(v, (int, float)) else v for v in values)


def _gold(kind: str, src: Source, row: Row, key: str, options: tuple[str, ...]) -> str:
    value = _get(src, row, key, "answer")
    if kind == "mc":
        return _letter(src, row, key, value, options)
    text = _scalar(src, row, key, "answer")
    if kind == "math" and "\\boxed" in text:
        boxed = last_boxed(text, skip_unclosed=False)  # the answer is the last box: cut off, it is none
        if not boxed or not boxed.strip():
            raise src.error(row, f"field {key!r} has an unbalanced or empty \\boxed{{…}}")
        return boxed
    return text


def _letter(src: Source, row: Row, key: str, value: Any, options: tuple[str, ...]) -> str:
    """An mc gold: a 0-based index (`1`, `"1"`), a letter (`"B"`, `"b"`), or an option's exact text."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is not None and text.isdigit():
        index = int(text)
    elif text is not None and len(text) == 1 and text.upper() in LETTERS:
        index = LETTERS.index(text.upper())
    elif text in options:
        index = options.index(text)
    else:
        raise src.error(row, f"field {key!r} must be an option index, letter or text, got {value!r:.60}")
    if not 0 <= index < len(options):
        raise src.error(row, f"field {key!r} = {value!r} is not one of the {len(options)} options")
    return LETTERS[index]
