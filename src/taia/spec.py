"""TaiaSpec: which fine-tuned updates to keep, as a coefficient λ per parameter group.

λ = 0 keeps the base weight, λ = 1 the fine-tuned one, anything else gives base + λ·Δ. A group may be
limited to a layer range (inclusive; tensors outside it, and tensors outside the layer stack, get 0), and
regex overrides on tensor names come first (first match wins): either a λ, or a group to reassign the
tensor to. Groups a spec does not name get 0, except `other`: unclassified tensors must be assigned.
Exercised by `taia apply --spec taia|taia-ref|taif|vanilla|base|FILE.yaml` and tests/test_spec.py.

    name: taia-ffn-early
    groups:
      attn: 1.0
      ffn: {lambda: 1.0, layers: [0, 7]}
    overrides:
      - {pattern: 'lm_head\\.weight$', lambda: 0.5}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from taia.classify import GROUPS, Group, ParamInfo
from taia.config import load_mapping, one_line
from taia.errors import TaiaError
from taia.io.stage import path_name
from taia.registry import Registry, did_you_mean


class GroupRule(BaseModel):
    """λ for one group, optionally only on an inclusive range of decoder layers."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
    lam: float = Field(alias="lambda", allow_inf_nan=False)
    layers: tuple[int, int] | None = None

    @field_validator("layers")
    @classmethod
    def _ordered(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 0 <= v[0] <= v[1]:
            raise ValueError(f"layer range must be [start, end] with 0 <= start <= end, got {list(v)}")
        return v

    def coefficient(self, layer: int | None) -> float:
        if self.layers is None:
            return self.lam
        inside = layer is not None and self.layers[0] <= layer <= self.layers[1]
        return self.lam if inside else 0.0


class Override(BaseModel):
    """A regex on tensor names that sets λ directly or moves the tensor to another group."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
    pattern: str
    lam: float | None = Field(default=None, alias="lambda", allow_inf_nan=False)
    group: Group | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regex {v!r}: {e}") from None
        return v

    @model_validator(mode="after")
    def _one_of(self) -> Override:
        if (self.lam is None) == (self.group is None):
            raise ValueError(f"override {self.pattern!r} needs exactly one of 'lambda' or 'group'")
        return self

    def matches(self, name: str) -> bool:
        return re.search(self.pattern, name) is not None


class TaiaSpec(BaseModel):
    """A full selection: λ per group, optional layer ranges, regex overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "custom"
    description: str = ""
    groups: dict[Group, GroupRule] = Field(default_factory=dict)
    overrides: tuple[Override, ...] = ()

    @field_validator("name")
    @classmethod
    def _path_name(cls, v: str) -> str:
        return path_name(v)  # a variant's answers and `taia search`'s specs are files named after it

    @field_validator("groups", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        # `attn: 1.0` is shorthand for `attn: {lambda: 1.0}`; unknown group names get a suggestion.
        if not isinstance(v, dict):
            return v
        for key, rule in v.items():
            if key not in GROUPS:
                raise ValueError(str(did_you_mean(str(key), list(GROUPS), "group")))
            if not isinstance(rule, (int, float, dict, GroupRule)) or isinstance(rule, bool):
                raise ValueError(
                    f"{key}: λ must be a number (0 = base, 1 = fine-tune, 0.5 = halfway) or "
                    f"{{lambda: …, layers: [start, end]}}, got {rule!r}"
                )
        return {k: {"lambda": r} if isinstance(r, (int, float)) else r for k, r in v.items()}

    def resolve(self, name: str, info: ParamInfo) -> float | None:
        """λ for one tensor; None when it is unclassified and nothing assigns it."""
        return self.decide(name, info)[1]

    def decide(self, name: str, info: ParamInfo) -> tuple[ParamInfo, float | None]:
        """The tensor's group after overrides, and its λ (None: unclassified and unassigned)."""
        for override in self.overrides:
            if override.matches(name):
                if override.lam is not None:
                    return info, override.lam
                info = ParamInfo(override.group or info.group, info.layer)
                break
        rule = self.groups.get(info.group)
        if rule is None:
            return info, None if info.group == "other" else 0.0
        return info, rule.coefficient(info.layer)

    def extrapolated(self) -> dict[str, float]:
        """Groups and override patterns whose λ lies outside [0, 1]: legitimate (extrapolating the update,
        or reversing it), but not what TAIA does, so every report says so."""
        out: dict[str, float] = {g: r.lam for g, r in self.groups.items() if not 0.0 <= r.lam <= 1.0}
        out |= {o.pattern: o.lam for o in self.overrides if o.lam is not None and not 0.0 <= o.lam <= 1.0}
        return out

    def keeps_anything(self) -> bool:
        """Whether this spec asks for any fine-tuned update at all (`base` does not)."""
        return any(r.lam != 0 for r in self.groups.values()) or any(o.lam for o in self.overrides)


def _preset(name: str, description: str, keep: tuple[Group, ...]) -> TaiaSpec:
    # Presets name every classified group, so that "reverted" is explicit in the resolved spec.
    groups = {g: GroupRule(lam=1.0 if g in keep else 0.0) for g in GROUPS if g != "other"}
    return TaiaSpec(name=name, description=description, groups=groups)


PRESETS: Registry[TaiaSpec] = Registry("spec preset")
PRESETS.add(
    "taia", _preset("taia", "attention updates only; FFN, norms, embeddings, head from base", ("attn",))
)
PRESETS.add(
    "taia-ref",
    _preset(
        "taia-ref",
        "everything but FFN/experts/router from the fine-tune (the reference code on full checkpoints)",
        ("attn", "norm", "embed", "head"),
    ),
)
PRESETS.add("taif", _preset("taif", "FFN updates only (FFN, experts, router)", ("ffn", "experts", "router")))
PRESETS.add("vanilla", _preset("vanilla", "every update kept", tuple(g for g in GROUPS if g != "other")))
PRESETS.add("base", _preset("base", "no update kept: the base model", ()))


def load_spec(spec: str | Path | TaiaSpec | dict[str, Any]) -> TaiaSpec:
    """A spec from a preset name, a YAML file, a dict, or a TaiaSpec."""
    if isinstance(spec, TaiaSpec):
        return spec
    if isinstance(spec, dict):
        return _validate(spec, "spec")
    text = str(spec)
    if text.endswith((".yaml", ".yml", ".json")) or Path(text).is_file():
        path = Path(text)
        data = load_mapping(path, "spec file")
        data.setdefault("name", path.stem)
        return _validate(data, str(path))
    return PRESETS.get(text)


def _validate(data: dict[str, Any], where: str) -> TaiaSpec:
    try:
        return TaiaSpec.model_validate(data)
    except ValidationError as e:
        raise TaiaError(f"invalid spec {where}: {one_line(e, TaiaSpec)}") from None
