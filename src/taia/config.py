"""Typed command configs (pydantic v2): YAML file + CLI flags + `key=value` overrides; unknown keys
are errors.

Every output directory gets the resolved config next to it. Also the YAML-mapping reader and the
one-line form of pydantic errors that every config and spec uses; this module must not import torch, so
that `taia VERB --help` stays instant. Exercised by `taia apply cfg.yaml spec=taif overwrite=true` and
tests/test_config.py.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from taia.errors import TaiaError

C = TypeVar("C", bound=BaseModel)


class OneFineTune(BaseModel):
    """The rule for configs with an `adapter` / `finetuned` pair: one of them (`FINE_TUNE_REQUIRED`), or
    at most one (a base model alone is fine: `taia eval` of base). No fields of its own, so each config
    keeps its own field order (and so its resolved config file's)."""

    FINE_TUNE_REQUIRED: ClassVar[bool] = True

    @model_validator(mode="after")
    def _one_fine_tune(self) -> Any:
        given = [k for k in ("adapter", "finetuned") if getattr(self, k) is not None]
        if len(given) > 1 or (self.FINE_TUNE_REQUIRED and not given):
            which = "exactly" if self.FINE_TUNE_REQUIRED else "at most"
            pair = "adapter (a PEFT LoRA dir) or finetuned (a full checkpoint)"
            raise ValueError(f"give {which} one of {pair}")
        return self


class ApplyConfig(OneFineTune):
    """`taia apply`: base + (LoRA adapter | full fine-tune) + spec → a TAIA model."""

    model_config = ConfigDict(extra="forbid")
    base: str = Field(description="base model dir or hub id")
    adapter: str | None = None
    finetuned: str | None = None
    out: str = Field(description="output dir (written atomically)")
    spec: str | dict[str, Any] = Field(
        "taia", description="preset (taia, taia-ref, taif, vanilla, base) or a YAML file"
    )
    format: Literal["adapter", "merged"] | None = Field(
        None, description="output for adapters (default: adapter)"
    )
    overwrite: bool = Field(False, description="replace an existing output dir")
    allow_pickle: bool = False
    trust_remote_code: bool = False
    max_shard_size: str = Field("5GB", description="merged output shard size, e.g. 5GB")
    # Full checkpoints: every float tensor written is scanned for NaN/Inf (fp16 overflow in training
    # leaves such checkpoints); true skips the scan for inputs the user trusts.
    skip_finite_check: bool = Field(
        False, description="full checkpoints: do not scan the written tensors for NaN/Inf (inputs you trust)"
    )

    @field_validator("max_shard_size")
    @classmethod
    def _size(cls, v: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|B)?", v.strip(), flags=re.I):
            raise ValueError(f"expected a size such as 500MB or 5GB, got {v!r}")
        return v

    @model_validator(mode="after")
    def _format(self) -> ApplyConfig:
        if self.finetuned is not None and self.format == "adapter":
            raise ValueError(
                "format=adapter needs a LoRA adapter; a full fine-tune always gives a checkpoint"
            )
        return self

    @property
    def resolved_format(self) -> str:
        return self.format or ("adapter" if self.adapter is not None else "merged")


class InspectConfig(BaseModel):
    """`taia inspect`: a model alone, or base + (adapter | fine-tune) with update norms; with
    `hidden_states`, also each variant's hidden states against the base's on task prompts
    (`taia.analysis.hidden`)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="a model alone: parameter counts per group and layer")
    base: str | None = Field(None, description="base model of the fine-tune (with --adapter or --finetuned)")
    adapter: str | None = None
    finetuned: str | None = None
    json_output: bool = Field(False, description="print JSON instead of a table")
    allow_pickle: bool = False
    trust_remote_code: bool = False
    hidden_states: bool = Field(
        False,
        description="per-layer cosine to base and rank ratio after attention, per variant, on task prompts",
    )
    tasks: list[str] | None = Field(None, description="comma-separated tasks whose prompts are the inputs")
    limit: int | None = Field(None, gt=0, description="a seeded subset of at most N prompts per task")
    variants: list[str] = Field(
        ["vanilla", "taia", "taif"], description="presets or spec files (base is always the reference)"
    )
    protocol: Literal["paper", "standard"] = Field("standard", description="prompt protocol")
    data_dir: str | None = None
    chat_template: str | None = None  # as in `taia eval`: prompts are built the same way
    out: str | None = Field(
        None, description="dir for hidden_states.json / .csv and plots (created; other files kept)"
    )
    batch_size: int = Field(8, gt=0, description="prompts per forward pass")
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return comma_lists(data, ("tasks", "variants"))

    @field_validator("tasks", "variants")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        return distinct_items(v)

    @model_validator(mode="after")
    def _sources(self) -> InspectConfig:
        alone = (
            self.model is not None and self.base is None and self.adapter is None and self.finetuned is None
        )
        pair = (
            self.model is None
            and self.base is not None
            and (self.adapter is None) != (self.finetuned is None)
        )
        if not (alone or pair):
            raise ValueError("give --model M, or --base B with exactly one of --adapter A / --finetuned F")
        if self.hidden_states and not pair:
            raise ValueError(
                "hidden_states compares variants with base: give --base B and --adapter A or --finetuned F"
            )
        if self.hidden_states and not self.tasks:
            raise ValueError("hidden_states needs tasks (--tasks csqa,mmlu): their prompts are the inputs")
        # Compare with the defaults (not with fields_set) so a saved resolved config reads back.
        stray = [k for k in _HIDDEN_ONLY if getattr(self, k) != type(self).model_fields[k].default]
        if stray and not self.hidden_states:
            raise ValueError(f"{', '.join(stray)} only apply with hidden_states (--hidden-states)")
        return self


_HIDDEN_ONLY = (
    "tasks", "limit", "variants", "protocol", "data_dir", "chat_template", "out", "batch_size", "seed",
)  # fmt: skip


class ReportConfig(BaseModel):
    """`taia report RUN_DIR`: re-render a run's report from what its dir holds (`taia.run.render`)."""

    model_config = ConfigDict(extra="forbid")
    run_dir: str = Field(description="a run dir (RUN/eval/results.json) or a `taia eval --out` dir")
    html: bool = Field(True, description="write report.html (--no-html: skip it)")


def comma_lists(data: Any, keys: tuple[str, ...]) -> Any:
    """`tasks: gsm8k,csqa` as a list: flags and key=value overrides give comma-separated strings."""
    if isinstance(data, dict):
        data = dict(data)
        for key in keys:
            if isinstance(data.get(key), str):
                data[key] = [x.strip() for x in data[key].split(",") if x.strip()]
    return data


def distinct_items(v: list[str] | None) -> list[str] | None:
    """A non-empty list without repeats (None passes: the field is optional)."""
    if v is not None and not v:
        raise ValueError("give at least one")
    if v is not None and len(set(v)) != len(v):
        raise ValueError(f"listed twice: {sorted({x for x in v if v.count(x) > 1})}")
    return v


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs (values parsed as YAML scalars; dotted keys make nested mappings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TaiaError(f"expected key=value, got {item!r}")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise TaiaError(f"override {item!r} conflicts with an earlier value for {p!r}")
        node[leaf] = _scalar(value, item)
    return out


def _scalar(value: str, item: str) -> Any:
    try:
        return safe_yaml(value) if value else ""
    except yaml.YAMLError:
        raise TaiaError(f"cannot parse the value of override {item!r}") from None


def build_config(
    cls: type[C], file: str | None, flags: dict[str, Any], overrides: list[str] | None = None
) -> C:
    """Merge a YAML file, explicit flags and key=value overrides (later wins), then validate."""
    data: dict[str, Any] = {}
    if file:
        data.update(load_mapping(Path(file), "config file"))
    data.update({k: v for k, v in flags.items() if _given(cls, k, v)})
    _deep_update(data, parse_overrides(overrides or []))
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise TaiaError(f"invalid {cls.__name__}: {one_line(e, cls)}") from None


def _given(cls: type[BaseModel], key: str, value: Any) -> bool:
    """A flag the user gave: None is one left out, and so is False, a switch not thrown — except for a
    field whose default is true, where False can only be its `--no-…` flag."""
    field = cls.model_fields.get(key)
    return value is not None and (value is not False or (field is not None and field.default is True))


def _deep_update(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        elif isinstance(v, dict) and isinstance(dst.get(k), list) and all(i.isdigit() for i in v):
            _update_items(dst[k], v, k)  # `data.0.count=500` edits one element of a list
        else:
            dst[k] = v


def _update_items(items: list[Any], src: dict[str, Any], key: str) -> None:
    for i, v in src.items():
        if int(i) >= len(items):
            raise TaiaError(f"override {key}.{i}: {key} has only {len(items)} entries")
        if isinstance(v, dict) and isinstance(items[int(i)], dict):
            _deep_update(items[int(i)], v)
        else:
            items[int(i)] = v


def changed_keys(old: dict[str, Any], cfg: BaseModel, ignore: tuple[str, ...] = ()) -> list[str]:
    """Top-level keys whose value in a saved resolved config (`old`, as read back) differs from `cfg`'s,
    sorted: what keeps an output from being resumed with `cfg` (`ignore`: keys that may differ, such as
    overwrite)."""
    new = cfg.model_dump(mode="json")
    return sorted(k for k in new.keys() | old.keys() if k not in ignore and old.get(k) != new.get(k))


def config_yaml(cfg: BaseModel) -> str:
    """A resolved config as YAML that `build_config` reads back unchanged."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


MAX_ALIAS_NODES = 100_000  # what aliases may add to a document; a billion-laughs bomb adds 10**9


class YamlLimitError(yaml.YAMLError):
    """A YAML document that would expand beyond what taia reads (aliases, nesting): a YAML error."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with the document's alias expansion bounded before it is constructed: an
    alias shares one node, so a 758-byte document can stand for 10**9 of them, and whatever walks the
    result (validation, dumping the resolved config) hangs and exhausts memory."""

    def compose_document(self) -> Any:
        node = super().compose_document()
        unique, expanded = _node_counts(node) if node is not None else (0, 0)
        if expanded - unique > MAX_ALIAS_NODES:
            raise YamlLimitError(
                f"aliases expand the document by {expanded - unique:,} nodes (the most is "
                f"{MAX_ALIAS_NODES:,}); write the repeated values out"
            )
        return node


# YAML 1.2 reads `1e-5` and `1.0e39` as the floats they are; PyYAML's YAML 1.1 rules want a dot and a
# signed exponent, so they were strings, and `lr: 1e-5` a confusing "must be a number" further on.
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _node_counts(root: yaml.Node) -> tuple[int, int]:
    """(distinct nodes, nodes once every alias is expanded); iterative, so a deep document cannot end in a
    RecursionError here; a recursive alias (`&a [*a]`) is refused."""
    sizes: dict[int, int] = {}
    path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        kids = [x for kv in node.value for x in kv] if isinstance(node, yaml.MappingNode) else node.value
        kids = kids if isinstance(node, yaml.CollectionNode) else []
        if done:
            path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(k)] for k in kids)
        elif id(node) in path:
            raise YamlLimitError("a recursive alias (an anchor used inside itself)")
        elif id(node) not in sizes:
            path.add(id(node))
            stack += [(node, True), *((k, False) for k in kids)]
    return len(sizes), sizes[id(root)]


def safe_yaml(text: str) -> Any:
    """`yaml.safe_load` with alias expansion and nesting bounded: the one YAML reader of taia. Every limit
    is a `yaml.YAMLError`, so each caller's one-line message for bad YAML covers it too."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass: no arbitrary tags
    except RecursionError:
        raise YamlLimitError("nested too deeply") from None


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping; a missing file, bad syntax or another shape is a one-line TaiaError."""
    if not path.is_file():
        raise TaiaError(f"{what} {path} not found")
    try:
        data = safe_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise TaiaError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise TaiaError(f"{what} {path} must hold a mapping")
    return data


def one_line(e: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Pydantic errors as one line: `key.path: message; …`, unknown keys with a "did you mean"."""
    known = _field_names(model) if model else set()
    hints: dict[str, str] = getattr(model, "KEY_HINTS", {})
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            top = sorted(model.model_fields) if model and len(err["loc"]) == 1 else []
            msg = "unknown key" + _suggest(str(err["loc"][-1]), known, hints, top)
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _suggest(key: str, known: set[str], hints: dict[str, str], top: list[str]) -> str:
    """ " (did you mean 'x'?)" from the close names and from other tools' names for the same thing
    (`hints`: TRL's learning_rate is taia's lr); else the keys there are, so that no guess is needed."""
    close = difflib.get_close_matches(key, sorted(known | set(hints)), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {hints.get(close[0], close[0])!r}?)"
    return f" (known: {', '.join(top)})" if top else ""


def _field_names(model: type[BaseModel]) -> set[str]:
    """Every key a model (and the models nested in it) accepts, aliases included."""
    names: set[str] = set()
    for name, f in model.model_fields.items():
        names.update({name, f.alias or name})
        for sub in _nested_models(f.annotation):
            names |= _field_names(sub)
    return names


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _nested_models(arg)]
