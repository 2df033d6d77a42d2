"""The plan: one decision (group, layer, λ) per tensor name, checked before any output is written.

Pure functions over names, a ModelMap and a TaiaSpec. Errors here are the user's: unclassified tensors,
an override that matches nothing, a spec that keeps nothing it asked for. Exercised by every `taia apply`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from taia.classify import GROUPS, ModelMap, ParamInfo
from taia.errors import TaiaError
from taia.spec import TaiaSpec

Action = Literal["kept", "reverted", "scaled"]


@dataclass(frozen=True)
class Decision:
    info: ParamInfo
    lam: float

    @property
    def action(self) -> Action:
        if self.lam == 1.0:
            return "kept"
        return "reverted" if self.lam == 0.0 else "scaled"


def make_plan(names: Iterable[str], mm: ModelMap, spec: TaiaSpec) -> dict[str, Decision]:
    """Decide every tensor; raise one clear error for anything the spec cannot decide."""
    check_layers(spec, mm)
    plan: dict[str, Decision] = {}
    unassigned: list[str] = []
    for name in names:
        info, lam = spec.decide(name, mm.lookup(name))
        if lam is None:
            unassigned.append(name)
        else:
            plan[name] = Decision(info, lam)
    if unassigned:
        raise TaiaError(
            f"{len(unassigned)} tensor(s) not in any known block of this {mm.model_type} model: "
            f"{_few(unassigned)}; assign them with a spec override (pattern + lambda or group)"
        )
    _check_overrides(plan, spec)
    if spec.keeps_anything() and all(d.lam == 0.0 for d in plan.values()):
        asked = sorted(g for g, r in spec.groups.items() if r.lam != 0)
        raise TaiaError(
            f"spec {spec.name!r} selects nothing here: the groups it keeps ({', '.join(asked) or 'none'}) "
            "match no updated tensor (use --spec base if the base model is what you want)"
        )
    return plan


def check_layers(spec: TaiaSpec, mm: ModelMap) -> None:
    """A layer range must lie inside the model: [0, 40] on a 30-layer model is a typo, not a no-op."""
    for group, rule in spec.groups.items():
        if rule.layers is not None and mm.num_layers and rule.layers[1] >= mm.num_layers:
            raise TaiaError(
                f"spec {spec.name!r}: {group} layers {list(rule.layers)} go beyond this {mm.model_type} "
                f"model's {mm.num_layers} layers (0-{mm.num_layers - 1})"
            )


def _check_overrides(plan: Mapping[str, Decision], spec: TaiaSpec) -> None:
    for override in spec.overrides:
        if not any(override.matches(n) for n in plan):
            raise TaiaError(f"spec override pattern {override.pattern!r} matches no tensor")


def _few(names: list[str], n: int = 5) -> str:
    more = f" … and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def summarize(
    plan: Mapping[str, Decision], numels: Mapping[str, int]
) -> dict[str, dict[str, dict[str, int]]]:
    """Per group and action: how many tensors and parameters (the core of taia_report.json)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for name, d in plan.items():
        cell = out.setdefault(d.info.group, {}).setdefault(d.action, {"tensors": 0, "params": 0})
        cell["tensors"] += 1
        cell["params"] += numels[name]
    return {g: out[g] for g in GROUPS if g in out}
