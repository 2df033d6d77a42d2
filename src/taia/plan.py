"""The plan: one decision (group, layer, λ) per tensor and per LoRA module, checked before any output.

`make_plan` is the one way to get it, for every consumer: the three `taia apply` writers, `apply_model`,
the eval `Variants` and `taia search`. So every one refuses the same things with the same one-line error:
unclassified tensors, an override that matches nothing, a spec that keeps nothing it asked for. Pure
functions over names, a ModelMap and a TaiaSpec. Exercised by every `taia apply`, `taia eval` and
`taia search`, and by tests/test_spec.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True, eq=False)
class Plan(Mapping[str, Decision]):
    """One spec's decisions on one model. As a mapping: tensor name → Decision (what a checkpoint writer
    or an in-memory full fine-tune rewrites); `modules`: LoRA module path → Decision (what an adapter
    writer, a PEFT model or a MoLoRA model scales, keeps or drops as a whole)."""

    spec: TaiaSpec
    tensors: dict[str, Decision] = field(default_factory=dict)
    modules: dict[str, Decision] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Decision:
        return self.tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def lam(self, module: str) -> float:
        """λ of the LoRA module at `module` (a path the plan was made with)."""
        return self.modules[module].lam


def module_tensor(path: str) -> str:
    """The tensor a LoRA module is decided by: its weight, the tensor a LoRA update `B·A` changes. Spec
    overrides match this name, so `q_proj\\.weight$` selects the same module in an adapter and in a
    checkpoint."""
    return f"{path}.weight"


def make_plan(
    names: Iterable[str],
    mm: ModelMap,
    spec: TaiaSpec,
    modules: Iterable[str] = (),
    *,
    empty_ok: bool = False,
) -> Plan:
    """Decide every tensor of `names` and every LoRA module of `modules`; raise one clear error for
    anything the spec cannot decide. `empty_ok`: a spec that keeps nothing here is no error (a search
    grid point may be the base model; a spec the user wrote that selects nothing is a typo)."""
    check_layers(spec, mm)
    tensors = list(names)
    by_module = {path: module_tensor(path) for path in modules}
    decided = _decide([*tensors, *by_module.values()], mm, spec)
    _check_overrides(decided, spec)
    if not empty_ok and spec.keeps_anything() and all(d.lam == 0.0 for d in decided.values()):
        asked = sorted(g for g, r in spec.groups.items() if r.lam != 0)
        raise TaiaError(
            f"spec {spec.name!r} selects nothing here: the groups it keeps ({', '.join(asked) or 'none'}) "
            "match no updated tensor (use --spec base if the base model is what you want)"
        )
    return Plan(spec, {n: decided[n] for n in tensors}, {p: decided[n] for p, n in by_module.items()})


def _decide(names: list[str], mm: ModelMap, spec: TaiaSpec) -> dict[str, Decision]:
    """Each name's group and λ; every name no group (or override) claims is listed in one error."""
    decided: dict[str, Decision] = {}
    unassigned: list[str] = []
    for name in names:
        info, lam = spec.decide(name, mm.lookup(name))
        if lam is None:
            unassigned.append(name)
        else:
            decided[name] = Decision(info, lam)
    if unassigned:
        raise TaiaError(
            f"{len(unassigned)} tensor(s) not in any known block of this {mm.model_type} model: "
            f"{_few(unassigned)}; assign them with a spec override (pattern + lambda or group)"
        )
    return decided


def check_layers(spec: TaiaSpec, mm: ModelMap) -> None:
    """A layer range must lie inside the model: [0, 40] on a 30-layer model is a typo, not a no-op."""
    for group, rule in spec.groups.items():
        if rule.layers is not None and mm.num_layers and rule.layers[1] >= mm.num_layers:
            raise TaiaError(
                f"spec {spec.name!r}: {group} layers {list(rule.layers)} go beyond this {mm.model_type} "
                f"model's {mm.num_layers} layers (0-{mm.num_layers - 1})"
            )


def _check_overrides(decided: Mapping[str, Decision], spec: TaiaSpec) -> None:
    for override in spec.overrides:
        if not any(override.matches(n) for n in decided):
            raise TaiaError(f"spec override pattern {override.pattern!r} matches no tensor")


def _few(names: list[str], n: int = 5) -> str:
    more = f" … and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def summarize(
    plan: Mapping[str, Decision], numels: Mapping[str, int]
) -> dict[str, dict[str, dict[str, int]]]:
    """Per group and action: how many tensors (or modules) and parameters (the core of taia_report.json).
    `plan`: a Plan (its tensors) or its `modules`, and `numels` keyed the same way."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for name, d in plan.items():
        cell = out.setdefault(d.info.group, {}).setdefault(d.action, {"tensors": 0, "params": 0})
        cell["tensors"] += 1
        cell["params"] += numels[name]
    return {g: out[g] for g in GROUPS if g in out}
